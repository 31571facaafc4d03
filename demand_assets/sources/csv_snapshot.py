"""Daily CSV snapshots (one file per domain: country, channel, product), and their export from any source.

Files (UPPER_SNAKE columns, one row per key and day):

* demand_spend_country_daily.csv: DATE, COUNTRY, ECONOMIC_INDEX, INFLATION_RATE,
  UNEMPLOYMENT_RATE, BASELINE_DEMAND
* demand_spend_by_channel_daily.csv: DATE, COUNTRY, CHANNEL, SPEND, CHANNEL_RESPONSE
* demand_by_product_daily.csv: DATE, COUNTRY, PRODUCT, PRODUCT_DEMAND, PRICE, PROMO, IN_STOCK
* product_catalog.csv (optional): PRODUCT, CATEGORY, BASE_PRICE

A snapshot may omit the country or channel file; the source then does not provide that domain.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from contracts.registry import TABLES
from demand_assets.sources.base import Catalog, DemandSource, Domain

__all__ = ["CSV_FILES", "CATALOG_FILE", "CsvSnapshotSource", "export_snapshot"]

# The file of each raw domain, from the table registry.
CSV_FILES: dict[Domain, str] = {Domain(name): spec.csv_file for name, spec in TABLES.items() if spec.csv_file}
CATALOG_FILE = "product_catalog.csv"
# Declared types for known columns; anything else is read as found and the contract judges it.
_DTYPES: dict[str, pl.DataType] = {
    "DATE": pl.Date(),
    "COUNTRY": pl.String(),
    "CHANNEL": pl.String(),
    "PRODUCT": pl.String(),
    "CATEGORY": pl.String(),
    "PRODUCT_DEMAND": pl.Int64(),
    "PROMO": pl.Boolean(),
    "IN_STOCK": pl.Boolean(),
}
_FLOATS = ("ECONOMIC_INDEX", "INFLATION_RATE", "UNEMPLOYMENT_RATE", "BASELINE_DEMAND", "SPEND", "CHANNEL_RESPONSE", "PRICE", "BASE_PRICE")


class CsvSnapshotSource(DemandSource):
    """Reads a daily CSV snapshot folder, taking each partition's dates."""

    name = "csv"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser().resolve()
        if not (self.directory / CSV_FILES[Domain.PRODUCT_DEMAND]).exists():
            raise FileNotFoundError(
                f"CSV snapshot folder {self.directory} has no {CSV_FILES[Domain.PRODUCT_DEMAND]} (export one with `demand-export-csv --out DIR`)"
            )

    @property
    def provides(self) -> frozenset[Domain]:
        return frozenset(d for d, f in CSV_FILES.items() if (self.directory / f).exists())

    def _scan(self, filename: str) -> pl.LazyFrame:
        path = self.directory / filename
        header = pl.read_csv(path, n_rows=0).columns
        overrides = {c: _DTYPES[c] for c in header if c in _DTYPES} | {c: pl.Float64() for c in header if c in _FLOATS}
        return pl.scan_csv(path, schema_overrides=overrides)

    @functools.cached_property
    def _catalog(self) -> Catalog:
        products = self._scan(CSV_FILES[Domain.PRODUCT_DEMAND]).select("COUNTRY", "PRODUCT")
        countries = tuple(sorted(products.select(pl.col("COUNTRY").unique()).collect()["COUNTRY"].to_list()))
        ids = products.select(pl.col("PRODUCT").unique()).collect().sort("PRODUCT")
        if (self.directory / CATALOG_FILE).exists():
            known = self._scan(CATALOG_FILE).collect()
            catalog = ids.join(known, on="PRODUCT", how="left").with_columns(pl.col("CATEGORY").fill_null("UNKNOWN"))
        else:
            catalog = ids.with_columns(pl.lit("UNKNOWN").alias("CATEGORY"), pl.lit(None, pl.Float64).alias("BASE_PRICE"))
        channels: tuple[str, ...] = ()
        if Domain.CHANNEL_SPEND_RESPONSE in self.provides:
            frame = self._scan(CSV_FILES[Domain.CHANNEL_SPEND_RESPONSE]).select(pl.col("CHANNEL").unique()).collect()
            channels = tuple(sorted(frame["CHANNEL"].to_list()))
        return Catalog(countries=countries, channels=channels, products=catalog.select("PRODUCT", "CATEGORY", "BASE_PRICE"))

    def catalog(self) -> Catalog:
        return self._catalog

    def _read(self, domain: Domain, start: dt.date, end: dt.date) -> Iterator[pl.DataFrame]:
        frame = self._scan(CSV_FILES[domain]).filter(pl.col("DATE").is_between(start, end, closed="left")).collect()
        keys = [c for c in ("DATE", "COUNTRY", "CHANNEL", "PRODUCT") if c in frame.columns]
        yield frame.sort(keys)


def export_snapshot(source: DemandSource, start: dt.date, end: dt.date, directory: str | Path) -> dict[str, int]:
    """Write [start, end) of every domain `source` provides as a CSV snapshot; rows per file."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    for domain, filename in CSV_FILES.items():
        if domain not in source.provides:
            continue
        frame = pl.concat(list(source.read(domain, start, end)))
        frame.write_csv(out / filename)
        written[filename] = frame.height
    catalog = source.catalog().products
    catalog.write_csv(out / CATALOG_FILE)
    written[CATALOG_FILE] = catalog.height
    return written
