"""Forecasters as MLflow pyfunc models, and how the champion is chosen."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import pandas as pd
import polars as pl
from mlflow.pyfunc import PyFuncModel, PythonModel

from demand_assets.forecasting.panel import SERIES, TARGET, future_frame, planned_future

__all__ = [
    "CHAMPION_ALIAS",
    "DAILY_REGISTERED_MODEL",
    "SKU_REGISTERED_MODELS",
    "ForecasterPyfunc",
    "choose_champion",
    "forecast_request",
    "predict_request",
    "split_request",
]

CHAMPION_ALIAS = "champion"
# The registered models: every daily candidate is a version of one model; the per-SKU service
# models have one registered model per frequency. Each has a `champion` alias.
DAILY_REGISTERED_MODEL = "demand_forecast"
SKU_REGISTERED_MODELS = {"weekly": "sku_forecast_weekly", "daily": "sku_forecast_daily"}


def forecast_request(
    dataset: pl.DataFrame, origin: dt.date, horizon: int, *, history_days: int | None = None, planned: bool = False, period_days: int = 1
) -> pl.DataFrame:
    """A scoring request as of `origin`: the dataset's rows up to the origin (the newest
    `history_days` of them, if given) and the `horizon` days after it with what is known then.
    `planned` fills days the dataset does not hold yet with the default plan (`planned_future`;
    a weekly series, `period_days` 7, its week days only)."""
    rows = pl.col("DATE") <= origin
    if history_days is not None:
        rows = rows & (pl.col("DATE") >= origin - dt.timedelta(days=history_days))
    future = planned_future(dataset, origin, horizon, period_days=period_days) if planned else future_frame(dataset, origin, horizon)
    return pl.concat([dataset.filter(rows), future], how="diagonal_relaxed")


def predict_request(model: PyFuncModel, request: pl.DataFrame) -> pl.DataFrame:
    """A loaded pyfunc's forecast of a request: DATE, COUNTRY, PRODUCT, MEAN, P10, P50, P90."""
    return pl.from_pandas(model.predict(request.to_pandas())).with_columns(pl.col("DATE").cast(pl.Date))


def split_request(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A scoring request holds history rows (target known) and future rows (target null)."""
    frame = frame.with_columns(pl.col("DATE").cast(pl.Date))  # pandas hands dates over as datetimes
    history = frame.filter(pl.col(TARGET).is_not_null())
    future = frame.filter(pl.col(TARGET).is_null())
    if history.is_empty() or future.is_empty():
        raise ValueError("a forecast request needs history rows (PRODUCT_DEMAND set) and future rows (PRODUCT_DEMAND null)")
    return history.with_columns(pl.col(TARGET).cast(pl.Int64)), future


class ForecasterPyfunc(PythonModel):
    """Any fitted `Forecaster` behind MLflow's generic interface: the one wrapper for the daily
    models and the per-SKU service models.

    Daily models (`frequency` None): input is a pandas frame in the training-dataset layout,
    history rows with PRODUCT_DEMAND and future rows with PRODUCT_DEMAND null (their known
    covariates filled); output DATE, COUNTRY, PRODUCT, MEAN, P10, P50, P90 for the future rows.

    Per-SKU models (`frequency` daily or weekly): input is COUNTRY, PRODUCT, PERIOD, UNITS
    history; params {"horizon": int}; output COUNTRY, PRODUCT, PERIOD, STEP, P10, P50, P90, MEAN
    for the periods after each series' last one.
    """

    def __init__(self, forecaster, model_name: str, frequency: str | None = None) -> None:
        self.forecaster = forecaster
        self.model_name = model_name
        self.frequency = frequency

    def use_executor(self, executor) -> None:
        """Run the loaded model's batched work (ETS's fits, DeepAR's sample paths, the TCN's
        forward passes) on `executor`, the step's compute backend: a registered model carries
        none, and would otherwise do it in its own process. Per-shard models pass it to each shard's."""
        models = list(getattr(self.forecaster, "models", {}).values()) if hasattr(self.forecaster, "labels") else []
        for model in [self.forecaster, *models]:
            if hasattr(model, "executor") and getattr(model, "train_on", "local") == "local":
                model.executor = executor

    @property
    def max_horizon(self) -> int:
        """Periods ahead the model was trained for (per-SKU models)."""
        return int(self.forecaster.horizon)

    @property
    def min_history(self) -> int:
        """Periods of history the model needs per series (per-SKU models)."""
        return int(self.forecaster.min_history)

    def forecast(self, history: pl.DataFrame, horizon: int) -> pl.DataFrame:
        """A per-SKU model's forecast of the `horizon` periods after each series' last one."""
        from demand_assets.forecasting.sku import next_periods

        if self.frequency is None:
            raise ValueError(f"{self.model_name} is a daily model: send history and future rows to predict()")
        history = history.with_columns(pl.col("PERIOD").cast(pl.Date), pl.col("UNITS").cast(pl.Float64))
        out = self.forecaster.predict(history, next_periods(history, horizon, self.frequency))
        return out.select(*SERIES, "PERIOD", "STEP", "P10", "P50", "P90", "MEAN").sort(*SERIES, "STEP")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pl.from_pandas(model_input)
        if self.frequency is not None:
            return self.forecast(frame, int((params or {}).get("horizon", self.max_horizon))).to_pandas()
        history, future = split_request(frame)
        return self.forecaster.predict(history, future).to_pandas()


def choose_champion(overall: pl.DataFrame, *, baseline: str, regime: str, candidates: Collection[str] | None = None) -> tuple[str | None, str]:
    """The model with the lowest WAPE in `regime` that also beats `baseline`; with the reason.

    Only `candidates` (default: every model) may win: reference models such as LightGBM trained
    as if stockouts were demand are backtested for comparison but never registered, so one that
    scores best must not become the challenger.
    """
    scores = overall.filter(pl.col("REGIME") == regime).select("MODEL", "WAPE").sort("WAPE")
    if candidates is not None:
        scores = scores.filter(pl.col("MODEL").is_in([*candidates, baseline]))
    baseline_wape = scores.filter(pl.col("MODEL") == baseline)["WAPE"]
    if baseline_wape.is_empty():
        return None, f"baseline {baseline} was not backtested; no champion chosen"
    best = scores.filter(pl.col("MODEL") != baseline).head(1)
    if best.is_empty() or best["WAPE"][0] >= baseline_wape[0]:
        return None, f"no model beat {baseline} (WAPE {baseline_wape[0]:.3f} on {regime} days)"
    return best["MODEL"][0], (f"{best['MODEL'][0]} has the lowest WAPE on {regime} days ({best['WAPE'][0]:.3f}), beating {baseline} ({baseline_wape[0]:.3f})")
