"""An e-commerce event log as a demand source (`DEMAND_SOURCE=events`, issue 20, point 2).

Demand is PURCHASES per day and series, a series being a product, a brand or a category
(`level`: most products of such a shop sell rarely, so brand or category gives steadier
series). Each series runs from its first event's day to the log's last day, zero-filled, so a
product that stopped selling shows its zeros. PRICE is the mean price of the series' events
that day, carried forward over days without any; PROMO is the documented rule `promo_rule`:
PRICE at least `PROMO_DISCOUNT` below its median over the last 28 days. IN_STOCK and LISTED are
inferred from implausible zero runs, as for the other sources without stock data
(`demand_assets.features.stockouts`). COUNTRY is the one market the shop serves (`market`).

It also provides `product_engagement`: VIEWS, CARTS, REMOVALS, PURCHASES, SESSIONS and USERS
on the same days and series (zeros on days without events).

The log is read once per version of its files (the whole history: stockout inference needs it)
and windows are slices of it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl

from contracts.validation import SourceFormatError
from demand_assets.features.stockouts import MAX_STOCKOUT_DAYS
from demand_assets.sources.base import Catalog, DemandSource, Domain, iter_date_chunks
from demand_assets.sources.events.reader import ALL_TIME, ENGAGEMENT_COUNTS, EventDays, EventLevel, daily_events, event_files

__all__ = ["PROMO_DISCOUNT", "PROMO_WINDOW_DAYS", "EventLogSource", "promo_rule"]

PROMO_DISCOUNT = 0.15
PROMO_WINDOW_DAYS = 28


def promo_rule(frame: pl.DataFrame) -> pl.Expr:
    """PROMO: the day's PRICE is at least PROMO_DISCOUNT below the series' median PRICE over the
    PROMO_WINDOW_DAYS days ending that day (rows sorted by series and date, one per day)."""
    median = pl.col("PRICE").rolling_median(PROMO_WINDOW_DAYS, min_samples=1).over("COUNTRY", "PRODUCT")
    return (pl.col("PRICE") <= (1.0 - PROMO_DISCOUNT) * median).fill_null(False)


class EventLogSource(DemandSource):
    """A log of views, carts, removals and purchases as product demand."""

    name = "events"

    def __init__(
        self,
        path: str | Path,
        *,
        level: EventLevel = "product",
        timezone: str = "UTC",
        market: str = "ALL",
        stockout_alpha: float | None = 0.001,
        stockout_max_days: int | None = MAX_STOCKOUT_DAYS,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.level = level
        self.timezone = timezone
        self.market = market
        self.stockout_alpha = stockout_alpha
        self.stockout_max_days = stockout_max_days
        self.progress = progress
        event_files(self.path)  # a missing file or an empty folder is named when the source opens
        self._cache: dict[tuple, tuple[EventDays, dict[Domain, pl.DataFrame]]] = {}

    @property
    def provides(self) -> frozenset[Domain]:
        return frozenset({Domain.PRODUCT_DEMAND, Domain.PRODUCT_ENGAGEMENT})

    def _versions(self) -> tuple[tuple[str, int, int], ...]:
        return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in event_files(self.path))

    def _load(self) -> tuple[EventDays, dict[Domain, pl.DataFrame]]:
        versions = self._versions()
        if versions not in self._cache:
            counted = daily_events(self.path, *ALL_TIME, level=self.level, timezone=self.timezone, progress=self.progress)
            demand = self._panel(counted.days)
            engagement = (
                demand.select("DATE", "COUNTRY", "PRODUCT")
                .join(counted.days.select("DATE", pl.col("SERIES").alias("PRODUCT"), *ENGAGEMENT_COUNTS), on=["DATE", "PRODUCT"], how="left")
                .with_columns(pl.col(c).fill_null(0) for c in ENGAGEMENT_COUNTS)
            )
            self._cache = {versions: (counted, {Domain.PRODUCT_DEMAND: demand, Domain.PRODUCT_ENGAGEMENT: engagement})}
        return self._cache[versions]

    @property
    def report(self) -> EventDays:
        """The whole log's counts per day and series, with events read and duplicates dropped."""
        return self._load()[0]

    def _panel(self, days: pl.DataFrame) -> pl.DataFrame:
        """product_demand rows: every series from its first day to the log's last, zero-filled."""
        if days.is_empty():
            return pl.DataFrame(
                schema={"DATE": pl.Date, "COUNTRY": pl.String, "PRODUCT": pl.String, "PRODUCT_DEMAND": pl.Int64, "PRICE": pl.Float64, "PROMO": pl.Boolean}
                | {"IN_STOCK": pl.Boolean, "LISTED": pl.Boolean, "CATEGORY": pl.String}
            )
        last = days["DATE"].max()
        rows = days.select(
            "DATE", pl.lit(self.market).alias("COUNTRY"), pl.col("SERIES").alias("PRODUCT"), pl.col("PURCHASES").alias("PRODUCT_DEMAND"), "PRICE"
        )
        grid = (
            rows.group_by("COUNTRY", "PRODUCT")
            .agg(pl.col("DATE").min().alias("FIRST"))
            .with_columns(pl.date_ranges("FIRST", pl.lit(last), interval="1d").alias("DATE"))
            .explode("DATE")
            .drop("FIRST")
        )
        filled = grid.join(rows, on=["COUNTRY", "PRODUCT", "DATE"], how="left").with_columns(pl.col("PRODUCT_DEMAND").fill_null(0))
        filled = filled.sort("COUNTRY", "PRODUCT", "DATE").with_columns(pl.col("PRICE").forward_fill().over("COUNTRY", "PRODUCT"))
        filled = filled.with_columns(promo_rule(filled).alias("PROMO"))
        if self.stockout_alpha is None:
            in_stock, listed = pl.lit(True), pl.lit(True)
        else:
            from demand_assets.features.stockouts import infer_stockouts

            filled = infer_stockouts(filled, alpha=self.stockout_alpha, max_stockout_days=self.stockout_max_days)
            in_stock, listed = ~pl.col("INFERRED_OUT"), ~pl.col("LISTING_GAP")
        categories = days.group_by("SERIES").agg(pl.col("CATEGORY").first()).rename({"SERIES": "PRODUCT"})
        return (
            filled.join(categories, on="PRODUCT", how="left")
            .select("DATE", "COUNTRY", "PRODUCT", "PRODUCT_DEMAND", "PRICE", "PROMO", in_stock.alias("IN_STOCK"), listed.alias("LISTED"), "CATEGORY")
            .sort("DATE", "COUNTRY", "PRODUCT")
        )

    def catalog(self) -> Catalog:
        try:
            rows = self._load()[1][Domain.PRODUCT_DEMAND]
        except SourceFormatError:
            # The read names what is wrong, as a failed contract check; the catalogue stays empty.
            empty = pl.DataFrame(schema={"PRODUCT": pl.String, "CATEGORY": pl.String, "BASE_PRICE": pl.Float64})
            return Catalog(countries=(self.market,), channels=(), products=empty)
        products = rows.group_by("PRODUCT").agg(pl.col("CATEGORY").first(), pl.col("PRICE").median().alias("BASE_PRICE")).sort("PRODUCT")
        return Catalog(countries=(self.market,), channels=(), products=products)

    def _read(self, domain: Domain, start: dt.date, end: dt.date) -> Iterator[pl.DataFrame]:
        rows = self._load()[1][domain]
        for a, b in iter_date_chunks(start, end, 366):
            yield rows.filter(pl.col("DATE").is_between(a, b, closed="left")).drop("CATEGORY", strict=False)
