"""Reads several assets share, each in one place: the forecast made as of a day, the response
curves, revenue per unit, and whether the source has marketing spend at all."""

from __future__ import annotations

import datetime as dt
from typing import Optional

import dagster as dg
import polars as pl

from contracts import Table
from demand_assets.marketing.curves import curves_from_frame
from demand_assets.marketing.roi import unit_revenue
from demand_assets.marketing.summary import Curves
from demand_assets.sources import Domain
from resources import DeltaStore, DemandSourceResource, MissingTableError

__all__ = ["NO_SPEND", "forecast_as_of", "lacks_spend", "read_curves", "revenue_per_unit"]

# What a source without the channel domain (M5, a transaction log) lacks for the marketing assets.
NO_SPEND = "marketing spend, which the marketing assets are built on"


def forecast_as_of(store: DeltaStore, as_of: Optional[dt.date] = None) -> tuple[dt.date, pl.DataFrame]:
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


def lacks_spend(source: DemandSourceResource) -> Optional[str]:
    """The source's name when it has no channel spend (the marketing assets then record that), else None."""
    src = source.open()
    return None if Domain.CHANNEL_SPEND_RESPONSE in src.provides else src.name
