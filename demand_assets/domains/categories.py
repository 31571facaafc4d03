"""Which countries, channels and products a snapshot may contain: known ones come from a declared
catalogue (the source's) or the store's earlier windows, never from the snapshot being checked.

A value that is in neither is new. With contract_settings.new_categories = "reject" (the default)
the table's contract refuses it by name (rule known_<column>); with "admit" it is stored. Either
way the run reports it. A column nothing declares and the store has never seen (the first load
of a CSV snapshot's countries) is admitted and reported as first seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from contracts import Table
from demand_assets.sources import Catalog
from resources import DeltaStore
from resources.staging import StagedTable

__all__ = ["CATEGORY_TABLES", "KnownCategories", "known_categories"]

# Where the store remembers each category column.
CATEGORY_TABLES: dict[str, tuple[Table, ...]] = {
    "COUNTRY": (Table.COUNTRY_DEMAND, Table.PRODUCT_DEMAND),
    "CHANNEL": (Table.CHANNEL_SPEND_RESPONSE,),
    "PRODUCT": (Table.PRODUCT_DEMAND,),
}


@dataclass(frozen=True)
class KnownCategories:
    values: Mapping[str, frozenset[str]]  # column -> declared or stored values (empty: nothing known yet)

    def allowed(self, mode: str) -> dict[str, tuple[str, ...]]:
        """The values each table contract accepts: the known ones when rejecting new values and
        something is known; no restriction when admitting, or for a column nothing knows yet."""
        if mode == "admit":
            return {}
        return {column: tuple(sorted(known)) for column, known in self.values.items() if known}

    def new_in(self, staged: Mapping[str, StagedTable]) -> dict[str, list[str]]:
        """Values of the staged tables that are not known, per column (sorted)."""
        found: dict[str, set[str]] = {}
        for column, tables in CATEGORY_TABLES.items():
            for table in tables:
                if table.value in staged and staged[table.value].parts:
                    values = pl.scan_parquet(staged[table.value].parts).select(pl.col(column).unique()).collect()[column].to_list()
                    found.setdefault(column, set()).update(v for v in values if v is not None)
        return {
            column: sorted(values - self.values.get(column, frozenset())) for column, values in found.items() if values - self.values.get(column, frozenset())
        }


def known_categories(catalog: Catalog, store: DeltaStore) -> KnownCategories:
    """Declared values (the source's catalogue) plus every value the store already holds."""
    known = {column: set(values) for column, values in catalog.declared_values().items()}
    for table in {t for tables in CATEGORY_TABLES.values() for t in tables}:
        if not store.exists(table):
            continue
        columns = [c for c, tables in CATEGORY_TABLES.items() if table in tables]
        # One scan per table for all its category columns (product_demand is the largest table).
        found = store.scan(table).select(pl.col(c).unique().drop_nulls().implode() for c in columns).collect()
        for column in columns:
            known.setdefault(column, set()).update(found[column][0].to_list())
    return KnownCategories({column: frozenset(known.get(column, ())) for column in CATEGORY_TABLES})
