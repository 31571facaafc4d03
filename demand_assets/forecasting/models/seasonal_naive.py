"""Weekly seasonal naive: each future day repeats the same weekday of the last observed week.
For a weekly series (`period_days` 7: one row a week) that is last week's value.

Quantiles come from the series' own in-sample seasonal-naive errors (the last `error_weeks`
weeks), so the interval is as wide as this baseline has recently been wrong.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from demand_assets.forecasting.models.base import quantile_frame
from demand_assets.forecasting.panel import KEYS, SERIES, TARGET

__all__ = ["SeasonalNaive"]


class SeasonalNaive:
    name = "seasonal_naive"

    period_days = 1  # models pickled before weekly sources were daily

    @staticmethod
    def input_columns(available: Sequence[str]) -> list[str]:
        """The training dataset's columns fit and predict read (keys, target, in-stock flag):
        a backtest unit or refit reads no others."""
        return [c for c in available if c in (*KEYS, TARGET, "IN_STOCK")]

    def __init__(self, season: int = 7, error_weeks: int = 8, censoring_aware: bool = False, period_days: int = 1) -> None:
        if season != 7:
            # predict looks each future day up by its weekday in the last `season` days: with 14
            # days every weekday is there twice and every forecast row came out twice.
            raise ValueError(f"SeasonalNaive repeats the same weekday of the last week: season must be 7 days, got {season}")
        self.season = season  # days
        self.period_days = period_days  # days per row: 1, or 7 for a weekly series
        self.error_weeks = error_weeks
        # Censoring-aware: a stockout day's sales are not repeated; the last in-stock value of
        # that weekday is.
        self.censoring_aware = censoring_aware

    def fit(self, train: pl.DataFrame) -> SeasonalNaive:
        return self  # nothing to learn; everything comes from the history at predict time

    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        origin: dt.date = history["DATE"].max()
        m = self.season
        first = origin - dt.timedelta(days=m * (self.error_weeks + 1) - 1)
        recent = history.filter(pl.col("DATE") >= first).select(*KEYS, TARGET, "IN_STOCK")
        value = pl.col(TARGET).cast(pl.Float64)
        if self.censoring_aware:
            value = pl.when(pl.col("IN_STOCK")).then(value)
        recent = recent.sort(KEYS).with_columns(value.alias("Y"))
        if self.censoring_aware:
            recent = recent.with_columns(pl.col("Y").forward_fill().over([*SERIES, pl.col("DATE").dt.weekday()]))
        # The in-sample error of this forecast: a row against the row one season (in rows) before.
        recent = recent.with_columns((pl.col("Y") - pl.col("Y").shift(max(1, m // self.period_days)).over(SERIES)).alias("ERR"))
        errors = recent.group_by(SERIES).agg(pl.col("ERR").drop_nulls().quantile(0.1).alias("E10"), pl.col("ERR").drop_nulls().quantile(0.9).alias("E90"))
        last_week = recent.filter(pl.col("DATE") > origin - dt.timedelta(days=m)).select(*SERIES, pl.col("DATE").dt.weekday().alias("DOW"), "Y")
        out = (
            future.select(KEYS)
            .with_columns(pl.col("DATE").dt.weekday().alias("DOW"))
            .join(last_week, on=[*SERIES, "DOW"], how="left")
            .join(errors, on=SERIES, how="left")
            .with_columns(pl.col("Y").fill_null(0.0), pl.col("E10").fill_null(0.0), pl.col("E90").fill_null(0.0))
        )
        point = out["Y"].to_numpy()
        # The point is the median by definition of this baseline; a trend can put both error
        # quantiles on one side of it, so the band is clamped to contain the point.
        lower = np.minimum(point + out["E10"].to_numpy(), point)
        upper = np.maximum(point + out["E90"].to_numpy(), point)
        return quantile_frame(out, point, lower, point, upper)
