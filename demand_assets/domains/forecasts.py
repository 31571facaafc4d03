"""The champion's forecasts, as of every day."""

import datetime as dt

import dagster as dg
import polars as pl
from pydantic import Field

from contracts import FORECAST_HORIZON_RULE, ContractContext, Table, check_forecast_horizon_complete
from demand_assets.domains.models import champion_model
from demand_assets.domains.partitions import BACKFILL_POLICY, DAILY_DOWNSTREAM, daily_partitions
from demand_assets.domains.publishing import (
    ChunkCheck,
    blocking_check_spec,
    contract_check,
    partition_dates,
    publish_window,
    require_days,
    rows_by_design_only,
    without_rows_by_design,
)
from demand_assets.domains.training import training_dataset
from demand_assets.forecasting.panel import SERIES
from demand_assets.forecasting.registry import CHAMPION_ALIAS, forecast_request, predict_request
from demand_assets.reporting import figure_to_markdown, forecast_band_figure
from resources import ComputeResource, DeltaStore, DemandSourceResource, MlflowTracking

__all__ = ["DEMAND_FORECAST_CONTRACT", "DemandForecastConfig", "demand_forecast"]

DEMAND_FORECAST_CONTRACT = "demand_forecast_contract"


class DemandForecastConfig(dg.Config):
    horizon: int = Field(default=28, ge=1, le=366, description="days forecast from each origin; at most the champion's trained horizon")
    history_days: int = Field(default=400, ge=28, description="training-dataset days before each origin handed to the model")


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name="forecasts",
    automation_condition=DAILY_DOWNSTREAM,
    kinds={"mlflow", "deltalake", "pandera"},
    deps=[training_dataset, champion_model],
    check_specs=[
        blocking_check_spec(
            DEMAND_FORECAST_CONTRACT,
            "demand_forecast",
            "Pandera contract DemandForecast: non-negative, P10 <= P50 <= P90, TARGET_DATE = DATE + HORIZON_DAY, unique keys.",
        ),
        blocking_check_spec(
            FORECAST_HORIZON_RULE, "demand_forecast", "Every country x product has a forecast for each of the horizon's days (a weekly source: week days)."
        ),
    ],
)
def demand_forecast(
    context: dg.AssetExecutionContext,
    config: DemandForecastConfig,
    source: DemandSourceResource,
    store: DeltaStore,
    mlflow_tracking: MlflowTracking,
    compute: ComputeResource,
):
    """As of each partition day, the MLflow champion's forecast for the next `horizon` days per
    country x product: MEAN and P10/P50/P90, with the model and registry version that made it.
    Covariates of days not yet stored follow the default plan (last price, no promotion, last
    week's spend repeated); stored days use their stored plan. A weekly source is forecast as of
    its week days, for the week days of the horizon (HORIZON_DAY 7, 14, 21, 28); its other days
    hold no forecast by design. The champion's batched work (DeepAR's sample paths, ETS's fits)
    runs where the `compute` resource says."""
    start, end = partition_dates(context)
    cadence = source.open().cadence
    checks = [DEMAND_FORECAST_CONTRACT, FORECAST_HORIZON_RULE]
    if rows_by_design_only(cadence, start, end):
        yield from without_rows_by_design(context, Table.DEMAND_FORECAST, cadence, checks)
        return
    version = mlflow_tracking.champion_version(CHAMPION_ALIAS)
    if version is None:
        raise dg.Failure(description=f"no '{CHAMPION_ALIAS}' version of {mlflow_tracking.registered_model}: materialize champion_model first")
    model = mlflow_tracking.load(version)
    model_name = model.unwrap_python_model().model_name
    dataset = store.read_window(Table.TRAINING_DATASET, start - dt.timedelta(days=config.history_days), end)
    require_days(dataset, start, end, Table.TRAINING_DATASET, cadence)
    series = dataset.select(SERIES).unique()
    ctx = ContractContext(start, end, {"COUNTRY": series["COUNTRY"].unique().to_list(), "PRODUCT": series["PRODUCT"].unique().to_list()})
    origins = cadence.days(start, end)
    context.log.info(f"forecasting with {model_name} (version {version}) as of {len(origins)} day(s)")

    def chunks():
        for origin in origins:
            out = predict_request(model, forecast_request(dataset, origin, config.horizon, planned=True, period_days=cadence.period_days))
            yield out.select(
                pl.lit(origin).alias("DATE"),
                "COUNTRY",
                "PRODUCT",
                (pl.col("DATE") - pl.lit(origin)).dt.total_days().cast(pl.Int64).alias("HORIZON_DAY"),
                pl.col("DATE").alias("TARGET_DATE"),
                "MEAN",
                "P10",
                "P50",
                "P90",
                pl.lit(model_name).alias("MODEL"),
                pl.lit(version).alias("MODEL_VERSION"),
            ).sort("COUNTRY", "PRODUCT", "HORIZON_DAY")

    def summarize(chunk: pl.DataFrame) -> pl.DataFrame:
        return chunk  # small: series x horizon per as-of day

    def describe(summary: pl.DataFrame) -> dict:
        latest = summary.filter(pl.col("DATE") == summary["DATE"].max())
        top = latest.group_by("COUNTRY", "PRODUCT").agg(pl.col("MEAN").sum()).sort("MEAN", descending=True).head(3)
        history = dataset.filter(pl.col("DATE") > latest["DATE"][0] - dt.timedelta(days=28)).select(
            "DATE", "COUNTRY", "PRODUCT", pl.col("PRODUCT_DEMAND").alias("ACTUAL")
        )
        bands = latest.select(pl.col("TARGET_DATE").alias("DATE"), "COUNTRY", "PRODUCT", "P10", "P50", "P90")
        frame = pl.concat([history, bands], how="diagonal_relaxed")
        fig = forecast_band_figure(frame, list(zip(top["COUNTRY"], top["PRODUCT"])), f"{model_name} v{version} as of {latest['DATE'][0]}")
        return {"forecast_bands": dg.MetadataValue.md(figure_to_markdown(fig, "forecast bands")), "model": model_name, "model_version": version}

    with compute.executor(progress=context.log.info) as executor:
        model.unwrap_python_model().use_executor(executor)
        yield from publish_window(
            context,
            store,
            "demand_forecast",
            chunks(),
            [
                contract_check(Table.DEMAND_FORECAST, DEMAND_FORECAST_CONTRACT, ctx),
                ChunkCheck(
                    FORECAST_HORIZON_RULE, lambda chunk: check_forecast_horizon_complete(chunk, series, config.horizon, period_days=cadence.period_days)
                ),
            ],
            summarize=summarize,
            describe=describe,
            cadence=cadence,
        )
