"""Per-SKU models for the forecast service: a TCN from sales history alone, weekly and daily."""

import datetime as dt
import functools
from collections.abc import Callable

import dagster as dg
import mlflow
import polars as pl
from pydantic import Field, field_validator

from contracts import Cadence, Table
from demand_assets.domains.models import MODEL_TRAINING_POOL
from demand_assets.domains.raw import product_demand
from demand_assets.forecasting.compute import Executor
from demand_assets.forecasting.models.base import Forecaster
from demand_assets.forecasting.models.tcn import TCNForecaster, TCNSettings
from demand_assets.forecasting.registry import SKU_REGISTERED_MODELS, ForecasterPyfunc
from demand_assets.forecasting.sku import MeanOfLastForecaster, period_backtest, to_periods
from demand_assets.reporting import frame_to_markdown
from resources import ComputeResource, DeltaStore, DemandSourceResource, MlflowTracking

__all__ = ["SkuModelConfig", "sku_forecast_models"]


class SkuModelConfig(dg.Config):
    # list[Literal[...]] is not a Dagster config type; the validator below names the rule instead.
    frequencies: list[str] = Field(default=["weekly", "daily"], min_length=1, description="which per-SKU models to train: weekly and/or daily")
    history_days: int = Field(default=730, ge=84, description="days of product_demand the models learn from")
    n_folds: int = Field(default=2, ge=1, description="rolling-origin folds of the per-SKU backtest")
    input_weeks: int = Field(default=8, ge=1, description="weeks of history the weekly TCN reads (8 in, 4 out)")
    horizon_weeks: int = Field(default=4, ge=1, description="weeks the weekly TCN forecasts")
    input_days: int = Field(default=56, ge=7, description="days of history the daily TCN reads")
    horizon_days: int = Field(default=28, ge=1, description="days the daily TCN forecasts")
    weekly_epochs: int = Field(default=40, ge=1, description="training epochs of the weekly TCN")
    daily_epochs: int = Field(default=10, ge=1, description="training epochs of the daily TCN")
    channels: int = Field(default=32, ge=4, description="convolution channels of the TCN")

    @field_validator("frequencies")
    @classmethod
    def _known_frequencies(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in SKU_REGISTERED_MODELS]
        if unknown:
            raise ValueError(f"rule 'frequency is daily or weekly': got {unknown}")
        return value


def _log_progress(context: dg.AssetExecutionContext, frequency: str, message: str) -> None:
    context.log.info(f"{frequency}: {message}")


def _mean_pinball(row: dict) -> float:
    return (row["PINBALL_P10"] + row["PINBALL_P50"] + row["PINBALL_P90"]) / 3


@dg.asset(group_name="models", kinds={"pytorch", "mlflow", "deltalake"}, deps=[product_demand], pool=MODEL_TRAINING_POOL)
def sku_forecast_models(
    context: dg.AssetExecutionContext,
    config: SkuModelConfig,
    source: DemandSourceResource,
    store: DeltaStore,
    mlflow_tracking: MlflowTracking,
    compute: ComputeResource,
):
    """The models behind the forecast service's POST /predict: per frequency (weekly: 8 weeks in,
    4 out, as retail replenishment plans; daily: 56 days in, 28 out), a temporal convolutional network over
    sales history alone with P10/P50/P90, backtested on rolling origins against the mean of the
    last four periods, logged to MLflow and registered; the one with the lower mean pinball loss
    gets the alias `champion` of `sku_forecast_weekly` / `sku_forecast_daily`."""
    end = store.last_date(Table.PRODUCT_DEMAND) + dt.timedelta(days=1)
    daily = store.read_window(Table.PRODUCT_DEMAND, end - dt.timedelta(days=config.history_days), end, columns=["DATE", "COUNTRY", "PRODUCT", "PRODUCT_DEMAND"])
    tables, metadata = [], {}
    cadence = source.open().cadence
    frequencies = config.frequencies
    if cadence.is_weekly:
        # A weekly source's rows are its weeks already (one period each); a daily model of them
        # would need days the source does not have.
        frequencies = [f for f in config.frequencies if f == "weekly"]
        if frequencies != config.frequencies:
            note = f"the source is {cadence.describe()}: the daily per-SKU model is left out"
            context.log.warning(note)
            metadata["left_out_for_weekly"] = note
        if not frequencies:
            raise dg.Failure(description=f"sku_forecast_models: only a weekly per-SKU model can learn from a weekly source; asked for {config.frequencies}")
    # Under the step's thread budget (torch, BLAS), as the backtest units are: beside other training steps it shares the cores.
    metadata["threads"] = compute.threads()
    with compute.training_step(progress=context.log.info) as executor:
        for frequency in frequencies:
            tables.append(_train_frequency(context, config, frequency, daily, cadence, store, mlflow_tracking, metadata, executor))
    table = pl.concat(tables)
    written = store.overwrite(Table.SKU_BACKTEST_METRICS, table)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": written.rows,
            "delta_version": written.version,
            "backtest": dg.MetadataValue.md(frame_to_markdown(table.filter(pl.col("FOLD") == -1), max_rows=10)),
            **metadata,
        }
    )


def _train_frequency(
    context: dg.AssetExecutionContext,
    config: SkuModelConfig,
    frequency: str,
    daily: pl.DataFrame,
    cadence: Cadence,
    store: DeltaStore,
    mlflow_tracking: MlflowTracking,
    metadata: dict,
    executor: Executor | None = None,
) -> pl.DataFrame:
    """Backtest, log, register and crown the per-SKU models of one frequency; its metrics."""
    weekly = frequency == "weekly"
    settings = TCNSettings(
        input_len=config.input_weeks if weekly else config.input_days,
        horizon=config.horizon_weeks if weekly else config.horizon_days,
        epochs=config.weekly_epochs if weekly else config.daily_epochs,
        channels=config.channels,
    )
    # A weekly source's rows are whole weeks, each dated on its week's day: they are the periods.
    panel = to_periods(daily, "daily") if cadence.is_weekly else to_periods(daily, frequency)
    factories: dict[str, Callable[[], Forecaster]] = {
        "tcn": functools.partial(TCNForecaster, settings, executor=executor),  # its forward passes on the step's compute backend
        "mean_of_last_4": functools.partial(MeanOfLastForecaster, 4, settings.horizon),
    }
    _, metrics = period_backtest(
        panel,
        factories,
        n_folds=config.n_folds,
        horizon=settings.horizon,
        frequency=frequency,
        progress=functools.partial(_log_progress, context, frequency),
    )
    overall = {r["MODEL"]: r for r in metrics.filter(pl.col("FOLD") == -1).iter_rows(named=True)}
    registry = mlflow_tracking.for_model(SKU_REGISTERED_MODELS[frequency])
    versions = {}
    tags = {
        "frequency": frequency,
        "partition_range": f"{daily['DATE'].min()}...{daily['DATE'].max()}",
        "delta_version.product_demand": str(store.version(Table.PRODUCT_DEMAND)),
    }
    for name, factory in factories.items():
        with registry.run(f"sku/{frequency}/{name}", tags=tags | {"model": name, "stage": "sku"}):
            mlflow.log_params(
                {"frequency": frequency, "input_len": settings.input_len, "horizon": settings.horizon, "epochs": settings.epochs, "n_folds": config.n_folds}
            )
            mlflow.log_metrics({k.lower(): float(v) for k, v in overall[name].items() if k not in ("MODEL", "FOLD", "ROWS")})
            model = factory().fit(panel)
            versions[name] = registry.log_and_register(
                ForecasterPyfunc(model, name, frequency),
                f"sku_{frequency}_{name}",
                tags | {"model": name, "mean_pinball": f"{_mean_pinball(overall[name]):.4f}"},
            )
    best = min(overall, key=lambda m: _mean_pinball(overall[m]))
    registry.set_champion(versions[best])
    context.log.info(f"{frequency}: champion {best} (version {versions[best]}), mean pinball {_mean_pinball(overall[best]):.3f}")
    metadata[f"{frequency}_champion"] = f"{best} v{versions[best]}"
    return metrics.with_columns(pl.lit(frequency).alias("FREQUENCY"))
