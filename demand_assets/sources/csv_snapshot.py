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
import difflib
import functools
import io
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from contracts import CONTRACTS, SourceFormatError, Table, Violation
from contracts.registry import TABLES
from contracts.validation import MAX_EXAMPLES
from demand_assets.sources.base import Catalog, DemandSource, Domain, other_delimiter
from demand_assets.sources.csv_structure import structure_problem

__all__ = ["CSV_FILES", "CATALOG_FILE", "CsvSnapshotSource", "csv_as_text", "export_snapshot"]

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
        """The optional product catalogue, typed as found (it feeds categories, not a table)."""
        path = self.directory / filename
        header = pl.read_csv(path, n_rows=0).columns
        overrides = {c: _DTYPES[c] for c in header if c in _DTYPES} | {c: pl.Float64() for c in header if c in _FLOATS}
        return pl.scan_csv(path, schema_overrides=overrides)

    def _table(self, domain: Domain) -> pl.DataFrame:
        """A domain's file, read as text and parsed column by column: a value that does not
        parse, a wrong header or an unreadable file raises SourceFormatError naming the rule, the
        column and the rows (by line number), which the writer records as contract violations."""
        path = self.directory / CSV_FILES[domain]
        stat = path.stat()
        return _parsed(str(path), domain.value, stat.st_mtime_ns, stat.st_size)

    @functools.cached_property
    def _catalog(self) -> Catalog:
        # Categories only (text): a snapshot whose values do not parse still has a catalogue, so
        # the read itself reports what is wrong, as a contract violation.
        try:
            products = self._table(Domain.PRODUCT_DEMAND).select("COUNTRY", "PRODUCT")
        except (SourceFormatError, pl.exceptions.ColumnNotFoundError):
            products = pl.DataFrame(schema={"COUNTRY": pl.String, "PRODUCT": pl.String})
        countries = tuple(sorted(products["COUNTRY"].drop_nulls().unique().to_list()))
        ids = products.select(pl.col("PRODUCT").drop_nulls().unique()).sort("PRODUCT")
        # Only product_catalog.csv declares anything: countries and channels of a snapshot are
        # learned from the store's earlier windows, never from the file being checked.
        declared: dict[str, tuple[str, ...]] = {}
        if (self.directory / CATALOG_FILE).exists():
            known = self._scan(CATALOG_FILE).collect()
            declared["PRODUCT"] = tuple(known["PRODUCT"].cast(pl.String).to_list())
            catalog = ids.join(known, on="PRODUCT", how="left").with_columns(pl.col("CATEGORY").fill_null("UNKNOWN"))
        else:
            catalog = ids.with_columns(pl.lit("UNKNOWN").alias("CATEGORY"), pl.lit(None, pl.Float64).alias("BASE_PRICE"))
        channels: tuple[str, ...] = ()
        if Domain.CHANNEL_SPEND_RESPONSE in self.provides:
            try:
                channels = tuple(sorted(self._table(Domain.CHANNEL_SPEND_RESPONSE)["CHANNEL"].drop_nulls().unique().to_list()))
            except (SourceFormatError, pl.exceptions.ColumnNotFoundError):
                channels = ()
        return Catalog(countries=countries, channels=channels, products=catalog.select("PRODUCT", "CATEGORY", "BASE_PRICE"), declared=declared)

    def catalog(self) -> Catalog:
        return self._catalog

    def _read(self, domain: Domain, start: dt.date, end: dt.date) -> Iterator[pl.DataFrame]:
        frame = self._table(domain).filter(pl.col("DATE").is_between(start, end, closed="left"))
        yield frame.sort(list(TABLES[Table(domain.value)].keys))


_PARSE_RULES: dict[type[pl.DataType], str] = {
    pl.Date: "dates are YYYY-MM-DD",
    pl.Int64: "whole numbers",
    pl.Float64: "decimal numbers like 1234.5 (no thousands separators or units)",
    pl.Boolean: "true or false",
}


def _violation(rule: str, column: str, rows: pl.DataFrame | None = None, **example: object) -> Violation:
    if rows is None:
        return Violation(rule, column, 0, (example,) if example else ())
    return Violation(rule, column, rows.height, tuple(rows.head(MAX_EXAMPLES).to_dicts()))


def csv_as_text(raw: bytes, table: str, name: str) -> pl.DataFrame:
    """A CSV file's bytes as all-text columns, or SourceFormatError naming the first broken rule
    of the file itself: not empty, UTF-8 (with the line), comma-separated, well-formed (the line)."""
    if not raw.strip():
        raise SourceFormatError(table, [_violation("file is not empty", "<file>", file=name)])
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SourceFormatError(table, [_violation("UTF-8 text", "<file>", file=name, line=line, bytes=repr(raw[err.start : err.start + 8]))]) from None
    header = raw.split(b"\n", 1)[0].decode("utf-8").strip()
    if sep := other_delimiter(header):
        raise SourceFormatError(table, [_violation("comma-separated", "<header>", file=name, header=header[:120], looks=f"{sep}-separated")])
    try:
        return pl.read_csv(io.BytesIO(raw), infer_schema=False)
    except pl.exceptions.PolarsError as err:
        problem = structure_problem(raw.decode("utf-8"))
        where = {"line": problem[0], "problem": problem[1].split(": ", 1)[-1]} if problem else {"error": str(err).splitlines()[0][:200]}
        raise SourceFormatError(
            table, [_violation("well-formed CSV (same number of fields on every line, quotes closed)", "<file>", file=name, **where)]
        ) from None


@functools.lru_cache(maxsize=8)
def _parsed(path: str, table: str, mtime_ns: int, size: int) -> pl.DataFrame:
    """The file at `path` as the columns of `table` (cached per file version)."""
    name = Path(path).name
    if Path(path).is_dir():
        raise SourceFormatError(table, [_violation("a file, not a folder", "<file>", file=name)])
    text = csv_as_text(Path(path).read_bytes(), table, name)
    if text.is_empty():
        raise SourceFormatError(table, [_violation("rows after the header", "<file>", file=name)])
    columns = CONTRACTS[table].model.to_schema().columns
    violations = _header_violations(text.columns, [c for c, spec in columns.items() if spec.required], list(columns), name)
    if violations:
        raise SourceFormatError(table, violations)

    keys = [k for k in TABLES[Table(table)].keys if k in text.columns]
    text = text.with_row_index("LINE", offset=2).with_columns(pl.col(c).str.strip_chars() for c in text.columns)
    parsed = []
    for column in text.columns:
        dtype = _DTYPES.get(column) or (pl.Float64() if column in _FLOATS else None)
        if column == "LINE" or dtype is None:
            continue
        value = pl.col(column)
        if dtype == pl.Date():
            typed = value.str.to_date("%Y-%m-%d", strict=False)
        elif dtype == pl.Boolean():
            typed = value.str.to_lowercase().replace_strict({"true": True, "false": False}, default=None, return_dtype=pl.Boolean)
        else:
            typed = value.cast(dtype, strict=False)
        parsed.append(typed.alias(column))
        broken = text.filter(typed.is_null() & value.is_not_null() & (value != ""))
        if broken.height:
            shown = broken.select("LINE", *[k for k in keys if k != column], pl.col(column).alias(f"{column} as written"))
            violations.append(_violation(_PARSE_RULES[type(dtype)], column, shown))
    if violations:
        raise SourceFormatError(table, violations)
    return text.with_columns(parsed).drop("LINE")


def _header_violations(found: list[str], required: list[str], allowed: list[str], file: str) -> list[Violation]:
    """Exact names are the contract; a missing column is named with its near miss if the file has one."""
    violations = []
    missing = [c for c in required if c not in found]
    unexpected = [c for c in found if c not in allowed]
    expected = allowed
    for column in missing:
        near = [c for c in unexpected if c.strip().upper() == column] or difflib.get_close_matches(column, unexpected, n=1, cutoff=0.8)
        example = {"file": file, "missing": column} | ({"did you mean": near[0]} if near else {})
        violations.append(Violation("expected columns", column, 0, (example,)))
    for column in unexpected:
        violations.append(Violation("no unexpected columns", column, 0, ({"file": file, "unexpected": column, "expected": ", ".join(expected)},)))
    return violations


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
