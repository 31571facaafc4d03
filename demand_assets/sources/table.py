"""Bring your own sales data: one long table (CSV or Parquet, a file or a folder of them) with a
date column, series key columns, a target and optional covariates, declared in a small YAML.

The declaration (`TableSpec`, parsed by `TableSpec.from_yaml`) names the columns; the contract
the rows are checked against is generated from it (`read_table`): the declared columns exist,
dates parse, keys are not empty, the target is a finite whole number >= 0, price > 0, flags are
true/false, covariates are finite numbers, and (date, keys) is unique. A broken rule raises
`SourceFormatError` naming the rule, the column and example rows (file line numbers for CSV,
row numbers for Parquet); the product_demand writer records it as a failed contract check.

Mapping to product_demand: COUNTRY is the `country` column (or the constant `market`), PRODUCT
the `product` columns joined with "/", PRODUCT_DEMAND the target, PRICE the `price` column (1.0
when the table has none: a placeholder that carries no information), PROMO the `promo` column
(false when absent), IN_STOCK the `in_stock` column, or inferred from implausible zero runs as
for M5 (`demand_assets.features.stockouts`). A covariate `name` of kind `known` (price index,
markdown, holiday: known in advance for future days) lands as KNOWN_<NAME>, one of kind
`observed` (CPI, temperature: known only once the day is over) as OBSERVED_<NAME>; the training
dataset uses known covariates on the same day and observed ones lagged (`COVARIATE_LAGS` of
`demand_assets.features.training_dataset`).

Frequency: `daily` or `weekly`. A weekly row is the week's total, dated on the day the week
ends (`week_ending`, a weekday name; without it the rows' most common weekday, stated in the
error and the metadata); every row must fall on that weekday. The partitions stay days: a week
lands on its day's partition and the other six days hold no rows by design (`TableSource.cadence`,
`contracts.cadence`). Nothing is spread over days: that would invent daily sales.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from contracts import SourceFormatError, Table, Violation
from contracts.cadence import DAILY, WEEKDAYS, Cadence
from contracts.validation import MAX_EXAMPLES
from demand_assets.features.stockouts import MAX_STOCKOUT_DAYS
from demand_assets.sources.base import Catalog, DemandSource, Domain, iter_date_chunks
from demand_assets.sources.csv_snapshot import csv_as_text

__all__ = [
    "Covariate",
    "TableSource",
    "TableSpec",
    "TableSpecError",
    "covariate_column",
    "read_table",
    "write_table_example",
]

PRODUCT_SEPARATOR = "/"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


class TableSpecError(ValueError):
    """The YAML declaration itself is wrong (a missing key, an unknown kind): nothing was read."""


@dataclass(frozen=True)
class Covariate:
    name: str  # upper snake: the column lands as KNOWN_<NAME> or OBSERVED_<NAME>
    column: str
    kind: Literal["known", "observed"]

    @property
    def stored_as(self) -> str:
        return covariate_column(self.name, self.kind)


def covariate_column(name: str, kind: str) -> str:
    return f"{kind.upper()}_{name.upper()}"


@dataclass(frozen=True)
class TableSpec:
    """The declaration of a table (see docs/sources.md, "Bring your own table")."""

    path: Path  # a .csv or .parquet file, or a folder of them
    date: str
    target: str
    product: tuple[str, ...]
    date_format: str = "%Y-%m-%d"
    frequency: Literal["daily", "weekly"] = "daily"
    week_ending: int | None = None  # weekly: the ISO weekday each week ends on (its rows' day); None: inferred
    country: str | None = None  # the market column; None: every row is in `market`
    market: str = "ALL"
    price: str | None = None
    promo: str | None = None
    in_stock: str | None = None
    category: str | None = None
    covariates: tuple[Covariate, ...] = field(default_factory=tuple)

    @staticmethod
    def from_yaml(path: str | Path) -> TableSpec:
        """Parse the YAML at `path`; the data path inside it is relative to the YAML's folder."""
        import yaml

        where = Path(path).expanduser().resolve()
        if not where.is_file():
            raise TableSpecError(f"table declaration {where} does not exist (DEMAND_TABLE_SPEC)")
        try:
            raw = yaml.safe_load(where.read_text())
        except yaml.YAMLError as err:
            raise TableSpecError(f"rule 'readable YAML' on {where.name}: {str(err)[:300]}") from None
        return TableSpec.from_mapping(raw, base=where.parent)

    @staticmethod
    def from_mapping(raw: Any, *, base: Path = Path(".")) -> TableSpec:
        if not isinstance(raw, Mapping):
            raise TableSpecError("rule 'a mapping of keys': the table declaration must be a YAML mapping (path, date, product, target, ...)")
        known_keys = {
            "path",
            "date",
            "date_format",
            "frequency",
            "week_ending",
            "country",
            "market",
            "product",
            "target",
            "price",
            "promo",
            "in_stock",
            "category",
            "covariates",
        }
        if unknown := sorted(set(raw) - known_keys):
            raise TableSpecError(f"rule 'known keys': unknown key(s) {unknown}; the keys are {sorted(known_keys)}")
        for key in ("path", "date", "product", "target"):
            if not raw.get(key):
                raise TableSpecError(f"rule 'required keys': '{key}' is missing; a declaration names path, date, product and target")
        product = raw["product"]
        products = (product,) if isinstance(product, str) else tuple(product) if isinstance(product, list) else ()
        if not products or not all(isinstance(p, str) and p for p in products):
            raise TableSpecError(f"rule 'product is a column or a list of columns': got {product!r}")
        frequency = raw.get("frequency", "daily")
        if frequency not in ("daily", "weekly"):
            raise TableSpecError(f"rule 'frequency is daily or weekly': got {frequency!r}")
        week_ending = raw.get("week_ending")
        if week_ending is not None:
            names = {name.lower(): day for day, name in WEEKDAYS.items()} | {name[:3].lower(): day for day, name in WEEKDAYS.items()}
            if frequency != "weekly":
                raise TableSpecError(f"rule 'week_ending only for a weekly table': week_ending is {week_ending!r} but frequency is {frequency}")
            if str(week_ending).strip().lower() not in names:
                raise TableSpecError(f"rule 'week_ending is a weekday name': got {week_ending!r}; one of {', '.join(WEEKDAYS.values())}")
            week_ending = names[str(week_ending).strip().lower()]
        covariates = []
        for name, entry in (raw.get("covariates") or {}).items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise TableSpecError(f"rule 'covariate names are letters, digits and _': got {name!r}")
            entry = {"column": entry} if isinstance(entry, str) else entry
            if not isinstance(entry, Mapping) or entry.get("kind") not in ("known", "observed"):
                raise TableSpecError(f"rule 'covariate kind is known or observed' on covariate '{name}': got {entry!r}")
            covariates.append(Covariate(name.upper(), str(entry.get("column", name)), entry["kind"]))
        if len({c.name for c in covariates}) != len(covariates):
            raise TableSpecError(f"rule 'covariate names are unique (case-insensitive)': {[c.name for c in covariates]}")
        data = Path(str(raw["path"])).expanduser()
        spec = TableSpec(
            path=(data if data.is_absolute() else base / data).resolve(),
            date=str(raw["date"]),
            date_format=str(raw.get("date_format", "%Y-%m-%d")),
            frequency=frequency,
            week_ending=week_ending,
            country=raw.get("country"),
            market=str(raw.get("market", "ALL")),
            product=products,
            target=str(raw["target"]),
            price=raw.get("price"),
            promo=raw.get("promo"),
            in_stock=raw.get("in_stock"),
            category=raw.get("category"),
            covariates=tuple(covariates),
        )
        # The category may also be a product key (a product is a category and a sku); any other
        # column has one role.
        roles = {role: column for role, column in spec.columns().items() if role != "category"}
        if len(set(roles.values())) != len(roles):
            seen: dict[str, str] = {}
            for role, column in roles.items():
                if column in seen:
                    raise TableSpecError(f"rule 'one role per column': column '{column}' is declared as both {seen[column]} and {role}")
                seen[column] = role
        return spec

    def columns(self) -> dict[str, str]:
        """Role -> the file's column, for every declared column."""
        roles = {"date": self.date, "target": self.target, **{f"product[{i}]": c for i, c in enumerate(self.product)}}
        for role in ("country", "price", "promo", "in_stock", "category"):
            if (column := getattr(self, role)) is not None:
                roles[role] = column
        roles |= {f"covariate {c.name.lower()}": c.column for c in self.covariates}
        return roles

    @property
    def files(self) -> list[Path]:
        if self.path.is_dir():
            found = sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".csv", ".parquet"))
            if not found:
                raise FileNotFoundError(f"table folder {self.path} has no .csv or .parquet file")
            return found
        if not self.path.is_file():
            raise FileNotFoundError(f"table file {self.path} does not exist (the 'path' of the table declaration)")
        return [self.path]


# --- reading and the generated contract -------------------------------------------------------


def _violation(rule: str, column: str, rows: pl.DataFrame | None = None, **example: object) -> Violation:
    if rows is None:
        return Violation(rule, column, 0, (example,) if example else ())
    return Violation(rule, column, rows.height, tuple(rows.head(MAX_EXAMPLES).to_dicts()))


def _raw_file(path: Path, spec: TableSpec, many: bool) -> pl.DataFrame:
    """One file's declared columns (text for CSV, as typed for Parquet) with WHERE columns: LINE
    (CSV: the file's line) or ROW (Parquet: 1-based row), and FILE when the table is a folder."""
    name = path.name
    wanted = list(dict.fromkeys(spec.columns().values()))
    table = Table.PRODUCT_DEMAND.value
    if path.suffix.lower() == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - any reader failure is a format problem of the file
            raise SourceFormatError(table, [_violation("readable Parquet", "<file>", file=name, error=str(err).splitlines()[0][:200])]) from None
        where = "ROW"
        offset = 1
    else:
        frame = csv_as_text(path.read_bytes(), table, name)
        where = "LINE"
        offset = 2  # line 1 is the header
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        role_of = {column: role for role, column in spec.columns().items()}
        raise SourceFormatError(
            table,
            [_violation("declared columns exist", c, file=name, role=role_of[c], found=", ".join(frame.columns[:12])) for c in missing],
        )
    frame = frame.select(wanted).with_row_index(where, offset=offset).with_columns(pl.col(where).cast(pl.Int64))
    if many:
        frame = frame.with_columns(pl.lit(name).alias("FILE"))
    return frame


def _as_text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String).str.strip_chars()


def _number(frame: pl.DataFrame, column: str) -> pl.Expr:
    if frame.schema[column].is_numeric():
        return pl.col(column).cast(pl.Float64)
    if frame.schema[column] == pl.Boolean:
        return pl.col(column).cast(pl.Float64)
    text = _as_text(column).str.to_lowercase()
    return pl.when(text.is_in(list(_TRUE - {"1"}))).then(1.0).when(text.is_in(list(_FALSE - {"0"}))).then(0.0).otherwise(text.cast(pl.Float64, strict=False))


def _flag(frame: pl.DataFrame, column: str) -> pl.Expr:
    if frame.schema[column] == pl.Boolean:
        return pl.col(column)
    if frame.schema[column].is_numeric():
        value = pl.col(column).cast(pl.Float64)
        return pl.when(value == 1).then(True).when(value == 0).then(False).otherwise(None)
    text = _as_text(column).str.to_lowercase()
    return pl.when(text.is_in(list(_TRUE))).then(True).when(text.is_in(list(_FALSE))).then(False).otherwise(None)


def _date(frame: pl.DataFrame, column: str, fmt: str) -> pl.Expr:
    if frame.schema[column].is_temporal():
        return pl.col(column).cast(pl.Date)
    return _as_text(column).str.to_date(fmt, strict=False)


def read_table(spec: TableSpec) -> pl.DataFrame:
    """Every file of the table, checked by the contract generated from `spec`, as product_demand
    columns: DATE, COUNTRY, PRODUCT, PRODUCT_DEMAND, PRICE, PROMO, [IN_STOCK], CATEGORY, and
    KNOWN_* / OBSERVED_* covariates (Float64). Raises SourceFormatError naming every broken
    rule, its column and example rows."""
    files = spec.files
    parts = [_raw_file(p, spec, len(files) > 1) for p in files]
    frame = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
    table = Table.PRODUCT_DEMAND.value
    where = [c for c in ("FILE", "LINE", "ROW") if c in frame.columns]
    violations: list[Violation] = []

    def refuse(rule: str, column: str, holds: pl.Expr, *extra: str) -> None:
        """Name the rows where the rule does not hold (null counts as broken)."""
        rows = frame.filter(~holds.fill_null(False))
        if rows.height:
            shown = rows.select(*where, *dict.fromkeys([*extra, column]).keys())
            violations.append(_violation(rule, column, shown.rename({column: f"{column} as written"})))

    def text_of(column: str) -> pl.Expr:
        return pl.col(column).cast(pl.String).str.strip_chars()

    given = {c: text_of(c).is_not_null() & (text_of(c) != "") for c in spec.columns().values()}
    date = _date(frame, spec.date, spec.date_format)
    refuse(f"dates parse as {spec.date_format}", spec.date, date.is_not_null())
    for column in (*spec.product, *([spec.country] if spec.country else [])):
        refuse("keys are not empty", column, given[column])
    target = _number(frame, spec.target)
    refuse("target is a number", spec.target, target.is_not_null())
    refuse("target is finite and >= 0", spec.target, target.is_null() | (target.is_finite() & (target >= 0)))
    refuse("target is a whole number", spec.target, target.is_null() | ~target.is_finite() | (target == target.round(0)))
    if spec.price:
        price = _number(frame, spec.price)
        refuse("price is a number", spec.price, price.is_not_null())
        refuse("price is finite and > 0", spec.price, price.is_null() | (price.is_finite() & (price > 0)))
    for column in (spec.promo, spec.in_stock):
        if column:
            refuse("true or false (or 1 or 0)", column, _flag(frame, column).is_not_null())
    for cov in spec.covariates:
        value = _number(frame, cov.column)
        refuse("covariate is given", cov.column, given[cov.column])
        refuse("covariate is a number (or true/false)", cov.column, ~given[cov.column] | value.is_not_null())
        refuse("covariate is finite", cov.column, value.is_null() | value.is_finite())
    if violations:
        raise SourceFormatError(table, violations)

    country = pl.col(spec.country).cast(pl.String).str.strip_chars() if spec.country else pl.lit(spec.market)
    product = pl.concat_str([text_of(c) for c in spec.product], separator=PRODUCT_SEPARATOR)
    out = frame.select(
        *where,
        date.alias("DATE"),
        country.alias("COUNTRY"),
        product.alias("PRODUCT"),
        target.cast(pl.Int64).alias("PRODUCT_DEMAND"),
        (_number(frame, spec.price) if spec.price else pl.lit(1.0)).alias("PRICE"),
        (_flag(frame, spec.promo) if spec.promo else pl.lit(False)).alias("PROMO"),
        *([_flag(frame, spec.in_stock).alias("IN_STOCK")] if spec.in_stock else []),
        (text_of(spec.category).fill_null("UNKNOWN") if spec.category else pl.lit("UNKNOWN")).alias("CATEGORY"),
        *(_number(frame, c.column).alias(c.stored_as) for c in spec.covariates),
    )
    duplicated = out.filter(pl.struct("DATE", "COUNTRY", "PRODUCT").is_duplicated())
    if duplicated.height:
        shown = duplicated.sort("DATE", "COUNTRY", "PRODUCT").select(*where, "DATE", "COUNTRY", "PRODUCT")
        violations.append(_violation("one row per date and series", spec.date, shown))
    if spec.frequency == "weekly" and out.height:
        usual = spec.week_ending or int(out["DATE"].dt.weekday().mode().sort()[0])
        off = out.filter(pl.col("DATE").dt.weekday() != usual)
        if off.height:
            how = "declared week_ending" if spec.week_ending else "the rows' most common weekday"
            shown = off.select(*where, "DATE", pl.col("DATE").dt.strftime("%A").alias("WEEKDAY"), "COUNTRY", "PRODUCT")
            violations.append(_violation(f"weekly rows fall on one weekday (the week's day: {WEEKDAYS[usual]}, {how})", spec.date, shown))
    if violations:
        raise SourceFormatError(table, violations)
    return out.drop(where).sort("DATE", "COUNTRY", "PRODUCT")


@functools.lru_cache(maxsize=4)
def _read_cached(spec: TableSpec, versions: tuple[tuple[str, int, int], ...]) -> pl.DataFrame:
    return read_table(spec)


class TableSource(DemandSource):
    """A declared sales table as product demand (`DEMAND_SOURCE=table`, `DEMAND_TABLE_SPEC`).
    Only product demand: no spend, macro data or ground truth; stockouts inferred (as for M5)
    unless the table declares an `in_stock` column."""

    name = "table"

    def __init__(self, spec: TableSpec | str | Path, *, stockout_alpha: float | None = 0.001, stockout_max_days: int | None = MAX_STOCKOUT_DAYS) -> None:
        self.spec = spec if isinstance(spec, TableSpec) else TableSpec.from_yaml(spec)
        self.spec.files  # noqa: B018 - a missing file is named when the source opens
        self.stockout_alpha = stockout_alpha
        self.stockout_max_days = stockout_max_days
        self._cache: dict[tuple, pl.DataFrame] = {}

    @property
    def provides(self) -> frozenset[Domain]:
        return frozenset({Domain.PRODUCT_DEMAND})

    @property
    def cadence(self) -> Cadence:
        """Daily, or weekly on the declared `week_ending` (else the rows' weekday)."""
        if self.spec.frequency == "daily":
            return DAILY
        if self.spec.week_ending is not None:
            return Cadence.weekly(self.spec.week_ending)
        try:
            rows = self._rows()
        except SourceFormatError:
            # The read itself is refused (its violations are what a run reports), so no check
            # ever gets to the cadence; the weekday cannot be inferred from a table that is not read.
            return Cadence.weekly(5)
        return Cadence.weekly(int(rows["DATE"].dt.weekday().mode().sort()[0])) if rows.height else Cadence.weekly(5)

    def _rows(self) -> pl.DataFrame:
        """The checked rows with IN_STOCK and LISTED (cached per version of the files)."""
        versions = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in self.spec.files)
        if versions not in self._cache:
            # A weekly row is one period: zero runs are counted in weeks, so the longest stockout
            # is as many whole weeks as `stockout_max_days` covers (28 days: 4 weeks).
            max_runs = self.stockout_max_days
            if self.spec.frequency == "weekly" and max_runs is not None:
                max_runs = max(1, max_runs // 7)
            rows = _with_stock(_read_cached(self.spec, versions), self.spec.in_stock is not None, self.stockout_alpha, max_runs)
            self._cache = {versions: rows}
        return self._cache[versions]

    def catalog(self) -> Catalog:
        try:
            rows = self._rows()
        except SourceFormatError:
            # The read names what is wrong, as a failed contract check; the catalogue stays empty.
            empty = pl.DataFrame(schema={"PRODUCT": pl.String, "CATEGORY": pl.String, "BASE_PRICE": pl.Float64})
            return Catalog(countries=(), channels=(), products=empty)
        products = rows.group_by("PRODUCT").agg(pl.col("CATEGORY").first(), pl.col("PRICE").median().alias("BASE_PRICE")).sort("PRODUCT")
        countries = tuple(sorted(rows["COUNTRY"].unique().to_list()))
        return Catalog(countries=countries, channels=(), products=products)

    def _read(self, domain: Domain, start: dt.date, end: dt.date) -> Iterator[pl.DataFrame]:
        rows = self._rows()
        for a, b in iter_date_chunks(start, end, 366):
            yield rows.filter(pl.col("DATE").is_between(a, b, closed="left")).drop("CATEGORY")


def _with_stock(rows: pl.DataFrame, declared: bool, alpha: float | None, max_days: int | None) -> pl.DataFrame:
    """IN_STOCK and LISTED: the declared column (every day listed), or inferred from implausible
    zero runs (`demand_assets.features.stockouts`), or true everywhere when alpha is None."""
    covariates = [c for c in rows.columns if c.startswith(("KNOWN_", "OBSERVED_"))]
    if declared:
        in_stock, listed = pl.col("IN_STOCK"), pl.lit(True)
    elif alpha is None:
        in_stock, listed = pl.lit(True), pl.lit(True)
    else:
        from demand_assets.features.stockouts import infer_stockouts

        rows = infer_stockouts(rows, alpha=alpha, max_stockout_days=max_days)
        in_stock, listed = ~pl.col("INFERRED_OUT"), ~pl.col("LISTING_GAP")
    return rows.select(
        "DATE", "COUNTRY", "PRODUCT", "PRODUCT_DEMAND", "PRICE", "PROMO", in_stock.alias("IN_STOCK"), listed.alias("LISTED"), *covariates, "CATEGORY"
    ).sort("DATE", "COUNTRY", "PRODUCT")


# --- an example table from the synthetic world -----------------------------------------------


def write_table_example(
    directory: str | Path,
    *,
    start: dt.date = dt.date(2024, 1, 1),
    days: int = 120,
    n_products: int = 6,
    seed: int = 7,
    frequency: Literal["daily", "weekly"] = "daily",
) -> dict[str, int]:
    """Write example.csv and table.yaml: the synthetic world's sales of one small world (2
    countries), as a long table with a store column, category and sku key columns, units, price,
    a promotion flag, a known covariate (`discount`, the price cut against the regular price) and
    an observed one (`economic_index`, the country's macro index); rows per file.

    `frequency="weekly"`: the same sales summed over the whole weeks of [start, start + days)
    that end on a Friday, dated on that Friday (`week_ending: friday`): units summed, price,
    discount and the index averaged over the week, promo true when any day of it was promoted."""
    from demand_assets.sources.synthetic import SyntheticConfig, SyntheticDemandSource

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    source = SyntheticDemandSource(SyntheticConfig(seed=seed, n_countries=2, n_products=n_products, n_channels=1))
    end = start + dt.timedelta(days=days)
    sales = pl.concat(list(source.read(Domain.PRODUCT_DEMAND, start, end)))
    macro = pl.concat(list(source.read(Domain.COUNTRY_DEMAND, start, end))).select("DATE", "COUNTRY", "ECONOMIC_INDEX")
    catalog = source.catalog().products.select("PRODUCT", "CATEGORY", "BASE_PRICE")
    table = (
        sales.join(catalog, on="PRODUCT", how="left")
        .join(macro, on=["DATE", "COUNTRY"], how="left")
        .select(
            pl.col("DATE").dt.strftime("%Y-%m-%d").alias("date"),
            pl.col("COUNTRY").alias("store"),
            pl.col("CATEGORY").alias("category"),
            pl.col("PRODUCT").alias("sku"),
            pl.col("PRODUCT_DEMAND").alias("units"),
            pl.col("PRICE").round(2).alias("price"),
            pl.col("PROMO").cast(pl.Int8).alias("promo"),
            (1 - pl.col("PRICE") / pl.col("BASE_PRICE")).clip(0, 1).round(3).alias("discount"),
            pl.col("ECONOMIC_INDEX").round(3).alias("economic_index"),
        )
        .sort("date", "store", "category", "sku")
    )
    declaration = EXAMPLE_YAML
    if frequency == "weekly":
        table = _weekly_example(table, start, end)
        declaration = EXAMPLE_YAML.replace(_DAILY_LINE, _WEEKLY_LINE).replace("lagged 1 and 7 days", "lagged 1 and 4 weeks")
    table.write_csv(out / "example.csv")
    (out / "table.yaml").write_text(declaration)
    return {"example.csv": table.height, "table.yaml": 1}


def _weekly_example(daily: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """The daily example as whole weeks ending on Fridays (the Walmart convention)."""
    friday = Cadence.weekly(5)
    first, last = friday.first_on_or_after(start + dt.timedelta(days=6)), friday.last_on_or_before(end - dt.timedelta(days=1))
    day = pl.col("date").str.to_date()
    week_end = day + pl.duration(days=(5 - day.dt.weekday()) % 7)
    return (
        daily.with_columns(week_end.alias("week"))
        .filter(pl.col("week").is_between(first, last))
        .group_by("week", "store", "category", "sku")
        .agg(
            pl.col("units").sum(),
            pl.col("price").mean().round(2),
            pl.col("promo").max(),
            pl.col("discount").mean().round(3),
            pl.col("economic_index").mean().round(3),
        )
        .select(pl.col("week").dt.strftime("%Y-%m-%d").alias("date"), "store", "category", "sku", "units", "price", "promo", "discount", "economic_index")
        .sort("date", "store", "category", "sku")
    )


_DAILY_LINE = "frequency: daily             # daily or weekly (one row per week, dated on the day the week ends)\n"
_WEEKLY_LINE = (
    "frequency: weekly            # one row per series and week, dated on the day the week ends\n"
    "week_ending: friday          # that day (optional: else the rows' most common weekday)\n"
)
EXAMPLE_YAML = """\
# A long sales table for DEMAND_SOURCE=table (DEMAND_TABLE_SPEC=<this file>).
path: example.csv            # a .csv or .parquet file, or a folder of them; relative to this file
date: date                   # the date column
date_format: "%Y-%m-%d"      # strftime format of text dates (Parquet date columns need none)
frequency: daily             # daily or weekly (one row per week, dated on the day the week ends)
country: store               # the market column; omit it and set `market: ALL` for one market
product: [category, sku]     # one or more key columns, joined with "/" into PRODUCT
target: units                # whole units sold, >= 0
price: price                 # optional, > 0
promo: promo                 # optional, true/false or 1/0
category: category           # optional: the product's category (aggregation, reports)
# in_stock: in_stock         # optional; without it stockouts are inferred from zero runs
covariates:
  discount: {column: discount, kind: known}                # known in advance: same-day feature
  economic_index: {column: economic_index, kind: observed}  # observed: lagged 1 and 7 days
"""
