"""Reads several assets share, each in one place: the forecast made as of a day, the response
curves, revenue per unit, and whether the source has marketing spend at all."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import polars as pl

from contracts import Table
from demand_assets.forecasting.metrics import Regime
from demand_assets.forecasting.suite import SuiteSettings
from demand_assets.marketing.curves import curves_from_frame
from demand_assets.marketing.roi import unit_revenue
from demand_assets.marketing.summary import Curves
from demand_assets.sources import Domain
from resources import DeltaStore, DemandSourceResource, MissingTableError

__all__ = ["NO_SPEND", "backtest_record", "forecast_as_of", "lacks_spend", "read_curves", "revenue_per_unit", "training_window"]

# What a source without the channel domain (M5, a transaction log) lacks for the marketing assets.
NO_SPEND = "marketing spend, which the marketing assets are built on"


def forecast_as_of(store: DeltaStore, as_of: dt.date | None = None) -> tuple[dt.date, pl.DataFrame]:
    """The demand_forecast made as of `as_of` (default: the newest stored origin), all horizon
    days; fails naming the partition to materialize when that forecast was never made."""
    if as_of is None:
        try:
            as_of = store.last_date(Table.DEMAND_FORECAST)
        except MissingTableError as err:
            raise dg.Failure(description="no demand_forecast yet: materialize demand_forecast for the newest day first") from err
    forecast = store.read_window(Table.DEMAND_FORECAST, as_of, as_of + dt.timedelta(days=1)) if store.exists(Table.DEMAND_FORECAST) else pl.DataFrame()
    if forecast.is_empty():
        raise dg.Failure(description=f"demand_forecast has no forecast made as of {as_of}: materialize that partition first")
    return as_of, forecast


def read_curves(store: DeltaStore) -> Curves:
    """The fitted response curves, (COUNTRY, CHANNEL) -> [point estimate, *bootstrap replicates]."""
    try:
        return curves_from_frame(store.read_all(Table.RESPONSE_CURVES))
    except MissingTableError as err:
        raise dg.Failure(description="no response curves yet: materialize spend_response_model first") from err


def revenue_per_unit(store: DeltaStore, start: dt.date, end: dt.date) -> pl.DataFrame:
    """DATE, COUNTRY, UNIT_REVENUE over [start, end) from product_demand (`roi.unit_revenue`)."""
    window = store.scan(Table.PRODUCT_DEMAND).filter(pl.col("DATE").is_between(start, end, closed="left"))
    return unit_revenue(window.select("DATE", "COUNTRY", "PRICE", "PRODUCT_DEMAND"))


def lacks_spend(source: DemandSourceResource) -> str | None:
    """The source's name when it has no channel spend (the marketing assets then record that), else None."""
    src = source.open()
    return None if Domain.CHANNEL_SPEND_RESPONSE in src.provides else src.name


def training_window(store: DeltaStore, history_days: int) -> tuple[pl.DataFrame, pl.DataFrame | None, dict[str, str]]:
    """The newest `history_days` of the training dataset (and truth), with lineage tags."""
    end = store.last_date(Table.TRAINING_DATASET)
    start = end - dt.timedelta(days=history_days - 1)
    dataset = store.read_window(Table.TRAINING_DATASET, start, end + dt.timedelta(days=1))
    truth = store.read_window(Table.PRODUCT_DEMAND_TRUTH, start, end + dt.timedelta(days=1)) if store.exists(Table.PRODUCT_DEMAND_TRUTH) else None
    tags = {"partition_range": f"{dataset['DATE'].min()}...{end}", "delta_version.training_dataset": str(store.version(Table.TRAINING_DATASET))}
    if truth is not None:
        tags["delta_version.product_demand_truth"] = str(store.version(Table.PRODUCT_DEMAND_TRUTH))
    return dataset, truth, tags


def backtest_record(store: DeltaStore) -> tuple[list[str], int, Regime, SuiteSettings]:
    """(models, history_days, champion regime, model settings) of the newest backtest."""
    if not store.exists(Table.BACKTEST_SETTINGS):
        raise dg.Failure(description="no backtest_settings: materialize model_backtest first (champion_model refits with the settings it backtested)")
    row = store.read_all(Table.BACKTEST_SETTINGS).row(0, named=True)
    return json.loads(row["MODELS"]), int(row["HISTORY_DAYS"]), row["CHAMPION_REGIME"], SuiteSettings.from_json(row["SUITE_JSON"])
