"""Per-SKU forecasting from sales history alone, daily or weekly (seed 002's service).

A panel here is COUNTRY, PRODUCT, PERIOD (a day, or the Monday of a week), UNITS. `to_periods`
builds it from daily product demand; `period_backtest` scores a forecaster with the daily backtest's own
folds and scoring (the last K windows of H periods, each trained on everything before it); `SkuForecasterPyfunc` serves it through MLflow.
The reference is the naive forecast that repeats the mean of the last four periods.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

import mlflow.pyfunc
import pandas as pd
import polars as pl

from demand_assets.forecasting.backtest import rolling_origin_folds, score_forecasts
from demand_assets.forecasting.models.tcn import PANEL_KEYS, TCNForecaster

__all__ = ["Frequency", "MeanOfLastForecaster", "PERIOD_DAYS", "SkuForecasterPyfunc", "period_backtest", "to_periods"]

Frequency = Literal["daily", "weekly"]
PERIOD_DAYS = {"daily": 1, "weekly": 7}


def to_periods(daily: pl.DataFrame, frequency: Frequency, *, value: str = "PRODUCT_DEMAND") -> pl.DataFrame:
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
    """The naive reference: every future period is the mean of the last `window` periods; the
    band is that mean's empirical P10/P90 of past window-to-period ratios."""

    def __init__(self, window: int = 4, horizon: int = 4) -> None:
        self.window, self.horizon = window, horizon

    def fit(self, panel: pl.DataFrame) -> "MeanOfLastForecaster":
        return self

    def predict(self, history: pl.DataFrame, horizon: int | None = None) -> pl.DataFrame:
        horizon = horizon or self.horizon
        last = history.sort(*PANEL_KEYS, "PERIOD").group_by(PANEL_KEYS, maintain_order=True).agg(pl.col("UNITS").tail(self.window).mean().alias("P50"))
        steps = pl.DataFrame({"STEP": list(range(1, horizon + 1))})
        # Poisson-like band around the mean: a transparent reference, not a model.
        return last.join(steps, how="cross").with_columns(
            (pl.col("P50") - 1.2816 * pl.col("P50").sqrt()).clip(lower_bound=0.0).alias("P10"),
            (pl.col("P50") + 1.2816 * pl.col("P50").sqrt()).alias("P90"),
            pl.col("P50").alias("MEAN"),
        ).select(*PANEL_KEYS, "STEP", "P10", "P50", "P90", "MEAN")


def period_backtest(
    panel: pl.DataFrame,
    factories: dict[str, Callable[[], object]],
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
            forecast = model.predict(train, horizon)
            rows.append(forecast.join(actual, on=[*PANEL_KEYS, "STEP"]).with_columns(pl.lit(name).alias("MODEL"), pl.lit(fold.index).alias("FOLD")))
            if progress:
                progress(f"{name} fold {fold.index + 1}/{n_folds} (test from {fold.test_start})")
    forecasts = pl.concat(rows, how="diagonal_relaxed").with_columns(
        pl.col("PERIOD").alias("DATE"), pl.col("UNITS").alias("ACTUAL"), pl.lit(True).alias("IN_STOCK")
    )
    metrics = score_forecasts(forecasts).filter(pl.col("REGIME") == "all").drop("REGIME", "MASE")
    return forecasts, metrics.sort("FOLD", "WAPE")


class SkuForecasterPyfunc(mlflow.pyfunc.PythonModel):
    """A per-SKU forecaster behind MLflow. Input: COUNTRY, PRODUCT, PERIOD, UNITS history rows
    (pandas); params {"horizon": int}. Output: COUNTRY, PRODUCT, PERIOD, STEP, P10, P50, P90, MEAN."""

    def __init__(self, forecaster: TCNForecaster | MeanOfLastForecaster, model_name: str, frequency: Frequency) -> None:
        self.forecaster = forecaster
        self.model_name = model_name
        self.frequency = frequency

    @property
    def max_horizon(self) -> int:
        return self.forecaster.settings.horizon if isinstance(self.forecaster, TCNForecaster) else self.forecaster.horizon

    @property
    def min_history(self) -> int:
        return self.forecaster.settings.input_len if isinstance(self.forecaster, TCNForecaster) else 1

    def forecast(self, history: pl.DataFrame, horizon: int) -> pl.DataFrame:
        history = history.with_columns(pl.col("PERIOD").cast(pl.Date), pl.col("UNITS").cast(pl.Float64))
        out = self.forecaster.predict(history, horizon)
        last = history.group_by(PANEL_KEYS).agg(pl.col("PERIOD").max().alias("LAST"))
        step = PERIOD_DAYS[self.frequency]
        return out.join(last, on=PANEL_KEYS).with_columns(
            (pl.col("LAST") + pl.duration(days=pl.col("STEP") * step)).alias("PERIOD")
        ).select(*PANEL_KEYS, "PERIOD", "STEP", "P10", "P50", "P90", "MEAN").sort(*PANEL_KEYS, "STEP")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        horizon = int((params or {}).get("horizon", self.max_horizon))
        return self.forecast(pl.from_pandas(model_input), horizon).to_pandas()

