"""The data source, chosen by configuration: the synthetic generator, CSV snapshots, a retail
transaction log, the M5 competition files, a declared sales table, or an e-commerce event log."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import dagster as dg
from pydantic import Field

from demand_assets.features.stockouts import MAX_STOCKOUT_DAYS
from demand_assets.sources.base import DemandSource
from demand_assets.sources.csv_snapshot import CsvSnapshotSource
from demand_assets.sources.events import EventLogSource
from demand_assets.sources.m5 import M5Source
from demand_assets.sources.synthetic import RegimeChange, SyntheticConfig, SyntheticDemandSource
from demand_assets.sources.table import TableSource
from demand_assets.sources.transactions import TransactionLogSource

__all__ = ["DemandSourceResource"]


class DemandSourceResource(dg.ConfigurableResource):
    """Where the raw domains come from. `synthetic` has known ground truth; `csv` reads a daily
    CSV snapshot (demand_spend_country_daily.csv, demand_spend_by_channel_daily.csv,
    demand_by_product_daily.csv); `transactions` a retail transaction log (invoice lines);
    `m5` the M5 competition files (calendar.csv, sell_prices.csv, sales_train_*.csv); `table`
    one long sales table declared in a YAML (`table_spec`); `events` an e-commerce event log
    (views, carts, removals, purchases; `events_path`). The last four have product demand
    only: no spend, no macro indicators, stockouts inferred (a table may declare its own)."""

    kind: Literal["synthetic", "csv", "transactions", "m5", "table", "events"] = Field(
        default="synthetic",
        description="where the raw domains come from: synthetic (generated, with ground truth), csv (a daily CSV snapshot), transactions (a retail "
        "transaction log), m5 (the M5 competition files), table (your own sales table, declared in a YAML) or events (an e-commerce event log)",
    )
    csv_dir: str | None = Field(default=None, description="folder of the CSV snapshot (kind csv)")
    transactions_file: str | None = Field(default=None, description="the transaction log, a CSV of invoice lines (kind transactions)")
    transactions_market: str = Field(default="ALL", description="the COUNTRY value given to a transaction log's rows")
    m5_dir: str | None = Field(default=None, description="folder holding calendar.csv, sell_prices.csv and sales_train_*.csv (kind m5)")
    table_spec: str | None = Field(
        default=None,
        description="the YAML declaring a sales table: its file, date, keys, target and covariates; the file's path is relative to the YAML (kind table)",
    )
    events_path: str | None = Field(
        default=None,
        description="the event log: a CSV or CSV.gz file, or a folder of them (one per month), in the public cosmetics-shop layout (kind events)",
    )
    events_level: Literal["product", "brand", "category"] = Field(
        default="product", description="what a series of an event log is: a product, a brand or a category (most products sell rarely)"
    )
    events_timezone: str = Field(default="UTC", description="the shop's time zone (IANA name): an event counts for its date there; the log's times are UTC")
    events_market: str = Field(default="ALL", description="the COUNTRY value given to an event log's rows (the one market the shop serves)")
    stockout_alpha: float | None = Field(
        default=0.001,
        gt=0,
        lt=1,
        description="for sources without stock data (m5, transactions, a table without in_stock), a zero run is a probable "
        "stockout when its probability under the item's sales rate is below this; empty: no inference",
    )
    stockout_max_days: int | None = Field(
        default=MAX_STOCKOUT_DAYS,
        ge=1,
        description="an implausible zero run longer than this many days is a listing gap (LISTED false: the item was "
        "not on offer; no training or evaluation row), not a stockout; empty: every implausible run is a stockout",
    )
    seed: int = Field(default=7, ge=0, description="seed of the synthetic world: the same seed gives the same data for any day")
    n_countries: int = Field(default=3, ge=1, description="countries in the synthetic world")
    n_products: int = Field(default=50, ge=1, description="products per country in the synthetic world")
    n_channels: int = Field(default=5, ge=1, description="marketing channels in the synthetic world")
    origin: str = Field(default="2023-01-01", description="day zero of the synthetic trend (YYYY-MM-DD)")
    chunk_rows: int = Field(default=4_000_000, ge=1, description="product rows generated or read per chunk (bounds memory)")
    response_noise: float = Field(
        default=0.2,
        ge=0,
        lt=2,
        description="coefficient of variation of the measured CHANNEL_RESPONSE around the true response",
    )
    regime_change: str | None = Field(
        default=None,
        description="inject a structural break into the synthetic world, kind@YYYY-MM-DD:magnitude[:channel], "
        "kind one of macro_shock, channel_response, elasticity, product_launch",
    )

    def synthetic_config(self) -> SyntheticConfig:
        return SyntheticConfig(
            seed=self.seed,
            n_countries=self.n_countries,
            n_products=self.n_products,
            n_channels=self.n_channels,
            origin=dt.date.fromisoformat(self.origin),
            chunk_rows=self.chunk_rows,
            regime_change=RegimeChange.parse(self.regime_change) if self.regime_change else None,
            response_noise=self.response_noise,
        )

    def open(self) -> DemandSource:
        if self.kind == "transactions":
            if not self.transactions_file:
                raise ValueError("DEMAND_SOURCE=transactions needs DEMAND_TRANSACTIONS_FILE, the transaction log's path")
            return TransactionLogSource(
                self.transactions_file, country=self.transactions_market, stockout_alpha=self.stockout_alpha, stockout_max_days=self.stockout_max_days
            )
        if self.kind == "events":
            if not self.events_path:
                raise ValueError("DEMAND_SOURCE=events needs DEMAND_EVENTS_PATH, the event log (a CSV or CSV.gz file, or a folder of them)")
            return EventLogSource(
                self.events_path,
                level=self.events_level,
                timezone=self.events_timezone,
                market=self.events_market,
                stockout_alpha=self.stockout_alpha,
                stockout_max_days=self.stockout_max_days,
            )
        if self.kind == "m5":
            if not self.m5_dir:
                raise ValueError("DEMAND_SOURCE=m5 needs DEMAND_M5_DIR, the folder holding calendar.csv, sell_prices.csv and sales_train_*.csv")
            return M5Source(self.m5_dir, stockout_alpha=self.stockout_alpha, stockout_max_days=self.stockout_max_days, chunk_rows=self.chunk_rows)
        if self.kind == "table":
            if not self.table_spec:
                raise ValueError("DEMAND_SOURCE=table needs DEMAND_TABLE_SPEC, the YAML declaring the sales table (see docs/sources.md)")
            return TableSource(self.table_spec, stockout_alpha=self.stockout_alpha, stockout_max_days=self.stockout_max_days)
        if self.kind == "csv":
            if not self.csv_dir:
                raise ValueError("DEMAND_SOURCE=csv needs DEMAND_CSV_DIR, the folder holding the CSV snapshot")
            return CsvSnapshotSource(self.csv_dir)
        return SyntheticDemandSource(self.synthetic_config())
