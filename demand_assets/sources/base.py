"""The interface every data source implements.

A source yields each domain for a half-open date window [start, end) as an iterator of polars
frames (chunks), so a year at M5 scale streams through validation into one Delta commit without
being held in memory. A source declares which domains it provides: a transaction-log or M5
adapter has product demand but no spend or macro data, and the graph must not invent them.
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import polars as pl

from contracts.cadence import DAILY, Cadence

__all__ = ["Catalog", "DemandSource", "Domain", "DomainNotProvided", "iter_date_chunks", "other_delimiter"]


class Domain(str, enum.Enum):  # noqa: UP042 - StrEnum would change str() of members; kept as is in a no-behaviour-change refactor
    COUNTRY_DEMAND = "country_demand"
    CHANNEL_SPEND_RESPONSE = "channel_spend_response"
    PRODUCT_DEMAND = "product_demand"
    # Views, carts, removals, purchases, sessions and users per product and day (event logs).
    PRODUCT_ENGAGEMENT = "product_engagement"
    # Ground truth only a generator can know: uncensored demand, true response parameters.
    PRODUCT_DEMAND_TRUTH = "product_demand_truth"
    CHANNEL_RESPONSE_TRUTH = "channel_response_truth"


class DomainNotProvided(LookupError):
    """Raised when an asset asks a source for a domain it does not have."""


@dataclass(frozen=True)
class Catalog:
    """The known categories a source's tables may contain (the contracts check against it)."""

    countries: tuple[str, ...]
    channels: tuple[str, ...]
    products: pl.DataFrame  # PRODUCT, CATEGORY, BASE_PRICE (+ DEPARTMENT where the source has one)
    markets: pl.DataFrame | None = None  # COUNTRY, STATE where markets roll up into regions (M5's stores)
    # The values the source declares independently of the rows being checked (a generator's
    # world, M5's series list, a snapshot's product_catalog.csv), per column; None: all of the
    # above are declared. A column missing here is learned from the store (see domains/categories.py).
    declared: Mapping[str, tuple[str, ...]] | None = None

    def declared_values(self) -> dict[str, tuple[str, ...]]:
        if self.declared is not None:
            return dict(self.declared)
        return {"COUNTRY": self.countries, "CHANNEL": self.channels, "PRODUCT": self.product_ids}

    def hierarchy(self) -> pl.DataFrame | None:
        """COUNTRY, PRODUCT, STORE, STATE, ITEM, CATEGORY, DEPARTMENT per series when the source
        knows M5's levels (markets in states, products in departments), else None: the
        aggregation WRMSSE scores over."""
        if self.markets is None or "DEPARTMENT" not in self.products.columns:
            return None
        items = self.products.select("PRODUCT", "CATEGORY", "DEPARTMENT")
        return self.markets.join(items, how="cross").with_columns(pl.col("COUNTRY").alias("STORE"), pl.col("PRODUCT").alias("ITEM"))

    @property
    def product_ids(self) -> tuple[str, ...]:
        return tuple(self.products["PRODUCT"].to_list())

    @property
    def n_series(self) -> int:
        return len(self.countries) * self.products.height


def iter_date_chunks(start: dt.date, end: dt.date, chunk_days: int) -> Iterator[tuple[dt.date, dt.date]]:
    """Split [start, end) into consecutive [a, b) windows of at most `chunk_days` days."""
    if chunk_days < 1:
        raise ValueError("chunk_days must be >= 1")
    cursor = start
    while cursor < end:
        # Compared in days first: a chunk size far beyond the window (a tiny world's rows per
        # chunk) must not overflow the date type.
        stop = end if (end - cursor).days <= chunk_days else cursor + dt.timedelta(days=chunk_days)
        yield cursor, stop
        cursor = stop


class DemandSource(abc.ABC):
    """A provider of the raw domains for any date window."""

    name: str = "abstract"

    @property
    @abc.abstractmethod
    def provides(self) -> frozenset[Domain]: ...

    @abc.abstractmethod
    def catalog(self) -> Catalog: ...

    @property
    def cadence(self) -> Cadence:
        """How often a series has a row: daily for every source but a weekly declared table."""
        return DAILY

    def read(self, domain: Domain, start: dt.date, end: dt.date) -> Iterator[pl.DataFrame]:
        """Chunks of `domain` for [start, end), in date order."""
        if domain not in self.provides:
            raise DomainNotProvided(
                f"source '{self.name}' does not provide '{domain.value}' (it provides: {', '.join(sorted(d.value for d in self.provides))})"
            )
        if end <= start:
            raise ValueError(f"empty window [{start}, {end})")
        return self._read(domain, start, end)

    @abc.abstractmethod
    def _read(self, domain: Domain, start: dt.date, end: dt.date) -> Iterator[pl.DataFrame]: ...


def other_delimiter(header: str) -> str | None:
    """The delimiter a header line seems to use when it is not comma-separated: 'tab', ';' or '|'
    (None when it has commas or none of those). Files from spreadsheets in many locales use ';'."""
    if "," in header:
        return None
    for sep, name in (("\t", "tab"), (";", "';'"), ("|", "'|'")):
        if sep in header:
            return name
    return None
