"""The forecaster interface and the shape of a forecast.

Every model, daily or per-SKU, is a `Forecaster`: `fit(train)`, then `predict(history, future)`
returns one row per row of `future` with its keys and MEAN, P10, P50, P90. Two panel shapes share
the protocol: the daily training dataset (DATE, covariates, PRODUCT_DEMAND), where future rows
carry the covariates known in advance, and per-SKU period panels (PERIOD, UNITS), where future
rows name the periods to forecast. One MLflow wrapper (`forecasting.registry.ForecasterPyfunc`)
serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import polars as pl

from demand_assets.forecasting.panel import KEYS, SERIES

__all__ = ["Forecaster", "by_steps", "quantile_frame"]


class Forecaster(Protocol):
    """Fit on a panel up to an origin; forecast the rows of a future frame.

    `history` is the panel up to the origin, which recursive and sequence models read to
    continue their inputs; `future` holds the keys (and, for daily models, the covariates) of
    the rows to forecast.
    """

    def fit(self, train: pl.DataFrame) -> Forecaster: ...

    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame: ...


def by_steps(future: pl.DataFrame, time: str, step_forecast: Callable[[int], pl.DataFrame]) -> pl.DataFrame:
    """Adapt a model that forecasts the next H periods of every series to `predict(history, future)`.

    `future`'s periods are numbered 1..H within each series (STEP), `step_forecast(H)` returns
    COUNTRY, PRODUCT, STEP and the forecast columns, and the result carries `future`'s periods.
    """
    numbered = future.select(*SERIES, time).with_columns(pl.col(time).rank("dense").over(SERIES).cast(pl.Int64).alias("STEP"))
    if numbered.is_empty():
        raise ValueError("nothing to forecast: the future frame has no rows")
    return numbered.join(step_forecast(int(numbered["STEP"].max())), on=[*SERIES, "STEP"], how="inner").sort(*SERIES, "STEP")


def quantile_frame(keys: pl.DataFrame, mean, p10, p50, p90) -> pl.DataFrame:
    """Assemble a forecast: clip at zero (demand is non-negative) and sort the quantiles so
    separately fitted quantile models never cross."""
    q = np.sort(np.clip(np.column_stack([p10, p50, p90]).astype(np.float64), 0.0, None), axis=1)
    return keys.select(KEYS).with_columns(
        pl.Series("MEAN", np.clip(np.asarray(mean, dtype=np.float64), 0.0, None)),
        pl.Series("P10", q[:, 0]),
        pl.Series("P50", q[:, 1]),
        pl.Series("P90", q[:, 2]),
    )
