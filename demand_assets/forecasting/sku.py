"""Per-SKU forecasting from sales history alone, daily or weekly (the forecast service's POST /predict).

A panel here is COUNTRY, PRODUCT, PERIOD (a day, or the Monday of a week), UNITS. `to_periods`
builds it from daily product demand; `period_backtest` scores a forecaster with the daily backtest's own
folds and scoring (the last K windows of H periods, each trained on everything before it); `forecasting.registry.ForecasterPyfunc` serves it through MLflow.
The reference is the naive forecast that repeats the mean of the last four periods.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

import polars as pl

from demand_assets.forecasting.backtest import rolling_origin_folds, score_forecasts
from demand_assets.forecasting.models.base import Forecaster, by_steps
from demand_assets.forecasting.models.tcn import PANEL_KEYS
from demand_assets.forecasting.panel import TARGET
from demand_assets.forecasting.registry import ForecasterPyfunc

__all__ = ["Frequency", "MeanOfLastForecaster", "PERIOD_DAYS", "SkuForecasterPyfunc", "next_periods", "period_backtest", "to_periods"]

Frequency = Literal["daily", "weekly"]
PERIOD_DAYS = {"daily": 1, "weekly": 7}


def to_periods(daily: pl.DataFrame, frequency: Frequency, *, value: str = TARGET) -> pl.DataFrame:
    """COUNTRY, PRODUCT, PERIOD, UNITS from daily rows (DATE, COUNTRY, PRODUCT, `value`). Weekly
    periods start on Monday; incomplete weeks at either end are dropped."""
    if frequency not in PERIOD_DAYS:
        raise ValueError(f"frequency must be 'daily' or 'weekly', got {frequency!r}")
    if frequency == "daily":
        return daily.select(*PANEL_KEYS, pl.col("DATE").alias("PERIOD"), pl.col(value).cast(pl.Float64).alias("UNITS")).sort(*PANEL_KEYS, "PERIOD")
    weekly = daily.group_by(*PANEL_KEYS, pl.col("DATE").dt.truncate("1w").alias("PERIOD")).agg(
        pl.col(value).sum().cast(pl.Float64).alias("UNITS"), pl.len().alias("DAYS")
    )
    return weekly.filter(pl.col("DAYS") == 7).drop("DAYS").sort(*PANEL_KEYS, "PERIOD")


class MeanOfLastForecaster:
    """The naive reference, a `Forecaster` of period panels: every future period is the mean of
    the last `window` periods, with a Poisson-like band around it."""

    min_history = 1

    def __init__(self, window: int = 4, horizon: int = 4) -> None:
        self.window, self.horizon = window, horizon

    def fit(self, panel: pl.DataFrame) -> MeanOfLastForecaster:
        return self

    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        """The periods of `future` (COUNTRY, PRODUCT, PERIOD), with STEP and the forecast."""
        return by_steps(future, "PERIOD", lambda horizon: self.predict_steps(history, horizon))

    def predict_steps(self, history: pl.DataFrame, horizon: int | None = None) -> pl.DataFrame:
        horizon = horizon or self.horizon
        last = history.sort(*PANEL_KEYS, "PERIOD").group_by(PANEL_KEYS, maintain_order=True).agg(pl.col("UNITS").tail(self.window).mean().alias("P50"))
        steps = pl.DataFrame({"STEP": list(range(1, horizon + 1))})
        # Poisson-like band around the mean: a transparent reference, not a model.
        return (
            last.join(steps, how="cross")
            .with_columns(
                (pl.col("P50") - 1.2816 * pl.col("P50").sqrt()).clip(lower_bound=0.0).alias("P10"),
                (pl.col("P50") + 1.2816 * pl.col("P50").sqrt()).alias("P90"),
                pl.col("P50").alias("MEAN"),
            )
            .select(*PANEL_KEYS, "STEP", "P10", "P50", "P90", "MEAN")
        )


def period_backtest(
    panel: pl.DataFrame,
    factories: dict[str, Callable[[], Forecaster]],
    *,
    n_folds: int = 2,
    horizon: int = 4,
    frequency: Frequency = "weekly",
    progress: Callable[[str], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(forecasts, metrics) on the daily backtest's harness: its folds (`rolling_origin_folds`,
    H periods = H x 7 days for weekly, the newest ending on the last complete period) and its
    scoring (`score_forecasts`, regime `all`: a per-SKU panel carries no stock flag). Each model
    is fitted on the periods before each fold. Metrics per MODEL and FOLD (-1 = all folds):
    ROWS, WAPE, RMSE, BIAS, PINBALL_P10/50/90, COVERAGE_P10_P90."""
    step = PERIOD_DAYS[frequency]
    periods = panel["PERIOD"].unique().sort()
    if len(periods) < n_folds * horizon + 8:
        raise ValueError(f"a backtest of {n_folds} x {horizon} periods needs more history than {len(periods)} periods")
    folds = rolling_origin_folds(periods.max() + dt.timedelta(days=step - 1), n_folds=n_folds, horizon=horizon * step)
    rows = []
    for fold in folds:
        train = panel.filter(pl.col("PERIOD") <= fold.origin)
        actual = panel.filter(pl.col("PERIOD").is_between(fold.test_start, fold.test_end, closed="left")).with_columns(
            pl.col("PERIOD").rank("dense").over(PANEL_KEYS).cast(pl.Int64).alias("STEP")
        )
        for name, factory in factories.items():
            model = factory().fit(train)
            forecast = model.predict(train, actual.select(*PANEL_KEYS, "PERIOD"))
            rows.append(forecast.join(actual, on=[*PANEL_KEYS, "PERIOD", "STEP"]).with_columns(pl.lit(name).alias("MODEL"), pl.lit(fold.index).alias("FOLD")))
            if progress:
                progress(f"{name} fold {fold.index + 1}/{n_folds} (test from {fold.test_start})")
    forecasts = pl.concat(rows, how="diagonal_relaxed").with_columns(
        pl.col("PERIOD").alias("DATE"), pl.col("UNITS").alias("ACTUAL"), pl.lit(True).alias("IN_STOCK")
    )
    metrics = score_forecasts(forecasts).filter(pl.col("REGIME") == "all").drop("REGIME", "MASE")
    return forecasts, metrics.sort("FOLD", "WAPE")


def next_periods(history: pl.DataFrame, horizon: int, frequency: Frequency) -> pl.DataFrame:
    """COUNTRY, PRODUCT, PERIOD: the `horizon` periods after each series' last one in `history`."""
    step = PERIOD_DAYS[frequency]
    last = history.group_by(PANEL_KEYS).agg(pl.col("PERIOD").max().cast(pl.Date).alias("LAST"))
    steps = pl.DataFrame({"_K": list(range(1, horizon + 1))})
    return (
        last.join(steps, how="cross").select(*PANEL_KEYS, (pl.col("LAST") + pl.duration(days=pl.col("_K") * step)).alias("PERIOD")).sort(*PANEL_KEYS, "PERIOD")
    )


# Registered per-SKU models of earlier versions were pickled under this name.
SkuForecasterPyfunc = ForecasterPyfunc
