"""Retail transaction logs (invoice lines: invoice, date, product, quantity, price) as weekly product demand.

The upload format is one row per transaction:

    Transaction ID, Date, Customer ID, Gender, Age, Product Category, Quantity,
    Price per Unit, Total Amount

A product is a category at a price point (as the seed did: such logs carry no SKU), named
`<Category>@<price>`, e.g. `Beauty@50.00`. Demand is the units sold per product and ISO week
(weeks start on Monday), with weeks without sales filled with zero between a product's first
and last week, so a series has no gaps. Every row is checked first; a broken rule raises
`TransactionLogError` naming the rule, the column and some offending transactions.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from demand_assets.features.panels import zero_fill
from demand_assets.features.stockouts import MAX_STOCKOUT_DAYS
from demand_assets.sources.base import Catalog, DemandSource, Domain, iter_date_chunks, other_delimiter

__all__ = [
    "TRANSACTION_COLUMNS",
    "TransactionLogError",
    "TransactionLogSource",
    "daily_product_demand",
    "product_name",
    "read_transaction_log",
    "synthetic_transaction_log",
    "weekly_product_demand",
]

TRANSACTION_COLUMNS = (
    "Transaction ID",
    "Date",
    "Customer ID",
    "Gender",
    "Age",
    "Product Category",
    "Quantity",
    "Price per Unit",
    "Total Amount",
)
MAX_EXAMPLES = 5


class TransactionLogError(ValueError):
    """A transaction log broke a rule; nothing was aggregated."""


def _fail(rule: str, column: str, rows: pl.DataFrame) -> TransactionLogError:
    examples = rows.head(MAX_EXAMPLES).to_dicts()
    return TransactionLogError(f"rule '{rule}' on column '{column}': {rows.height} offending row(s), e.g. {examples}")


def _first_line(source: str | Path | bytes) -> str:
    if isinstance(source, (bytes, bytearray)):
        raw = bytes(source[:4096]).split(b"\n", 1)[0]
    else:
        with open(source, "rb") as handle:
            raw = handle.readline(4096)
    return raw.decode("utf-8", errors="replace").strip()


def read_transaction_log(source: str | Path | bytes) -> pl.DataFrame:
    """Parse and check a transaction log (a path or the CSV's bytes). Returns TRANSACTION_ID,
    DATE, CATEGORY, QUANTITY, PRICE, TOTAL (the demographic columns are read but not kept)."""
    data = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    header = _first_line(source)
    if sep := other_delimiter(header):
        raise TransactionLogError(f"rule 'comma-separated': the header {header[:120]!r} looks {sep}-separated; a transaction log is comma-separated")
    try:
        raw = pl.read_csv(data, infer_schema=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as err:
        raise TransactionLogError(f"rule 'readable CSV': the upload is not a CSV file ({type(err).__name__}: {str(err)[:200]})") from err
    missing = [c for c in TRANSACTION_COLUMNS if c not in raw.columns]
    if missing:
        raise TransactionLogError(f"rule 'required columns': missing {missing}; a transaction log has {list(TRANSACTION_COLUMNS)}")
    if raw.is_empty():
        raise TransactionLogError("rule 'not empty': the transaction log has no rows")
    frame = raw.select(
        pl.col("Transaction ID").alias("TRANSACTION_ID"),
        pl.col("Date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias("DATE"),
        pl.col("Product Category").str.strip_chars().alias("CATEGORY"),
        pl.col("Quantity").str.strip_chars().cast(pl.Int64, strict=False).alias("QUANTITY"),
        pl.col("Price per Unit").str.strip_chars().cast(pl.Float64, strict=False).alias("PRICE"),
        pl.col("Total Amount").str.strip_chars().cast(pl.Float64, strict=False).alias("TOTAL"),
        pl.col("Date").alias("_DATE_TEXT"),
        pl.col("Quantity").alias("_QUANTITY_TEXT"),
        pl.col("Price per Unit").alias("_PRICE_TEXT"),
        pl.col("Total Amount").alias("_TOTAL_TEXT"),
    )
    # A number that does not parse is a format problem (thousands separators, currency signs),
    # named as such with the text as written, before any rule that compares values.
    plain = "numbers are plain decimals like 1000.50 (no thousands separators, currency signs or units)"
    for column, parsed, text in (
        ("Quantity", "QUANTITY", "_QUANTITY_TEXT"),
        ("Price per Unit", "PRICE", "_PRICE_TEXT"),
        ("Total Amount", "TOTAL", "_TOTAL_TEXT"),
    ):
        unparsed = frame.filter(pl.col(parsed).is_null() & (pl.col(text).str.strip_chars().str.len_chars() > 0))
        if unparsed.height:
            raise _fail(plain, column, unparsed.select("TRANSACTION_ID", pl.col(text).alias(f"{column} as written")))
    checks = [
        ("dates are YYYY-MM-DD", "Date", pl.col("DATE").is_null()),
        ("category given", "Product Category", pl.col("CATEGORY").is_null() | (pl.col("CATEGORY") == "")),
        ("quantity is a whole number >= 1", "Quantity", pl.col("QUANTITY").is_null() | (pl.col("QUANTITY") < 1)),
        ("price per unit > 0", "Price per Unit", pl.col("PRICE").is_null() | (pl.col("PRICE") <= 0) | ~pl.col("PRICE").is_finite()),
        (
            "total = quantity x price",
            "Total Amount",
            pl.col("TOTAL").is_null() | ((pl.col("TOTAL") - pl.col("QUANTITY") * pl.col("PRICE")).abs() > 0.01 + 1e-6 * pl.col("TOTAL").abs()),
        ),
    ]
    for rule, column, broken in checks:
        offending = frame.filter(broken.fill_null(True))
        if offending.height:
            raise _fail(rule, column, offending.select("TRANSACTION_ID", pl.col("_DATE_TEXT").alias("Date"), "CATEGORY", "QUANTITY", "PRICE", "TOTAL"))
    duplicated = frame.filter(pl.col("TRANSACTION_ID").is_duplicated())
    if duplicated.height:
        raise _fail("unique Transaction ID", "Transaction ID", duplicated.select("TRANSACTION_ID", "CATEGORY", "QUANTITY"))
    return frame.drop("_DATE_TEXT", "_QUANTITY_TEXT", "_PRICE_TEXT", "_TOTAL_TEXT")


def product_name(category: pl.Expr, price: pl.Expr) -> pl.Expr:
    return category + pl.lit("@") + price.round(2).cast(pl.Decimal(18, 2)).cast(pl.String)


def weekly_product_demand(transactions: pl.DataFrame, *, country: str = "ALL") -> pl.DataFrame:
    """WEEK (Monday), COUNTRY, PRODUCT, CATEGORY, PRICE, UNITS, REVENUE per product and week,
    zero-filled between each product's first and last week."""
    sold = transactions.with_columns(pl.col("DATE").dt.truncate("1w").alias("WEEK"), product_name(pl.col("CATEGORY"), pl.col("PRICE")).alias("PRODUCT"))
    weekly = sold.group_by("WEEK", "PRODUCT", "CATEGORY", "PRICE").agg(pl.col("QUANTITY").sum().alias("UNITS"), pl.col("TOTAL").sum().alias("REVENUE"))
    return (
        zero_fill(weekly, ["PRODUCT", "CATEGORY", "PRICE"], "WEEK", ["UNITS", "REVENUE"], interval="1w")
        .with_columns(pl.col("UNITS").cast(pl.Int64), pl.col("REVENUE").cast(pl.Float64), pl.lit(country).alias("COUNTRY"))
        .select("WEEK", "COUNTRY", "PRODUCT", "CATEGORY", "PRICE", "UNITS", "REVENUE")
        .sort("PRODUCT", "WEEK")
    )


def daily_product_demand(transactions: pl.DataFrame, *, country: str = "ALL", through: dt.date | None = None) -> pl.DataFrame:
    """DATE, COUNTRY, PRODUCT, CATEGORY, PRICE, PRODUCT_DEMAND per product and day, zero-filled
    from each product's first sale to its last (or to `through`, the log's last day, so a product
    that stopped selling keeps reporting zeros)."""
    sold = transactions.with_columns(product_name(pl.col("CATEGORY"), pl.col("PRICE")).alias("PRODUCT"))
    daily = sold.group_by("DATE", "PRODUCT", "CATEGORY", "PRICE").agg(pl.col("QUANTITY").sum().alias("PRODUCT_DEMAND"))
    if through is not None:
        # A zero row on the last day extends every product's span to it before the fill.
        last = daily.group_by("PRODUCT", "CATEGORY", "PRICE").agg(pl.lit(through).alias("DATE"), pl.lit(0, pl.Int64).alias("PRODUCT_DEMAND"))
        daily = pl.concat([daily, last.select(daily.columns)]).group_by("DATE", "PRODUCT", "CATEGORY", "PRICE").agg(pl.col("PRODUCT_DEMAND").sum())
    return (
        zero_fill(daily, ["PRODUCT", "CATEGORY", "PRICE"], "DATE", ["PRODUCT_DEMAND"])
        .with_columns(pl.col("PRODUCT_DEMAND").cast(pl.Int64), pl.lit(country).alias("COUNTRY"))
        .select("DATE", "COUNTRY", "PRODUCT", "CATEGORY", "PRICE", "PRODUCT_DEMAND")
        .sort("DATE", "COUNTRY", "PRODUCT")
    )


class TransactionLogSource(DemandSource):
    """A transaction log file as the pipeline's source (`DEMAND_SOURCE=transactions`,
    `DEMAND_TRANSACTIONS_FILE`): daily product demand only. A log carries no marketing spend,
    macro indicators or stock levels, so those domains are not provided; stockout days are
    inferred from implausible zero runs when `stockout_alpha` is set (see
    `demand_assets.features.stockouts`), else every day counts as in stock; an implausible run
    longer than `stockout_max_days` is a listing gap (LISTED false, IN_STOCK true), not a
    stockout. PROMO is false: a log does not say which sales were promoted."""

    name = "transactions"

    def __init__(
        self, path: str | Path, *, country: str = "ALL", stockout_alpha: float | None = None, stockout_max_days: int | None = MAX_STOCKOUT_DAYS
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise FileNotFoundError(f"transaction log {self.path} does not exist (DEMAND_TRANSACTIONS_FILE)")
        self.country = country
        self.stockout_alpha = stockout_alpha
        self.stockout_max_days = stockout_max_days

    @property
    def provides(self) -> frozenset[Domain]:
        return frozenset({Domain.PRODUCT_DEMAND})

    @cached_property
    def _daily(self) -> pl.DataFrame:
        transactions = read_transaction_log(self.path)
        daily = daily_product_demand(transactions, country=self.country, through=transactions["DATE"].max())
        if self.stockout_alpha is None:
            in_stock, listed = pl.lit(True), pl.lit(True)
        else:
            from demand_assets.features.stockouts import infer_stockouts

            daily = infer_stockouts(daily, alpha=self.stockout_alpha, max_stockout_days=self.stockout_max_days)
            in_stock, listed = ~pl.col("INFERRED_OUT"), ~pl.col("LISTING_GAP")
        return daily.select(
            "DATE",
            "COUNTRY",
            "PRODUCT",
            "PRODUCT_DEMAND",
            "PRICE",
            pl.lit(False).alias("PROMO"),
            in_stock.alias("IN_STOCK"),
            listed.alias("LISTED"),
            "CATEGORY",
        ).sort("DATE", "COUNTRY", "PRODUCT")

    def catalog(self) -> Catalog:
        products = self._daily.group_by("PRODUCT").agg(pl.col("CATEGORY").first(), pl.col("PRICE").first().alias("BASE_PRICE")).sort("PRODUCT")
        return Catalog(countries=(self.country,), channels=(), products=products, declared={"COUNTRY": (self.country,)})  # products: learned from the log

    def _read(self, domain: Domain, start: dt.date, end: dt.date) -> Iterator[pl.DataFrame]:
        for a, b in iter_date_chunks(start, end, 366):
            yield self._daily.filter(pl.col("DATE").is_between(a, b, closed="left")).drop("CATEGORY")


def synthetic_transaction_log(*, weeks: int = 52, start: dt.date = dt.date(2023, 1, 2), seed: int = 0, transactions_per_day: float = 40.0) -> pl.DataFrame:
    """A transaction log in the upload format with weekly seasonality, a yearly swell and
    category x price-point products whose popularity differs: for tests, demos and benchmarks
    (the real files are the user's to supply)."""
    rng = np.random.default_rng(seed)
    categories = {"Beauty": (25.0, 50.0, 300.0), "Clothing": (30.0, 50.0, 500.0), "Electronics": (30.0, 300.0, 500.0)}
    products = [(c, p) for c, prices in categories.items() for p in prices]
    popularity = rng.lognormal(0.0, 0.6, len(products))
    popularity /= popularity.sum()
    rows = []
    tid = 1
    for d in range(weeks * 7):
        day = start + dt.timedelta(days=d)
        level = transactions_per_day * (1.0 + 0.25 * (day.weekday() >= 5)) * (1.0 + 0.2 * np.sin(2 * np.pi * d / 365.25))
        for _ in range(rng.poisson(level)):
            k = rng.choice(len(products), p=popularity)
            category, price = products[k]
            quantity = int(rng.integers(1, 5))
            rows.append(
                (
                    f"T{tid:07d}",
                    day.isoformat(),
                    f"C{rng.integers(1, 5000):05d}",
                    str(rng.choice(["Male", "Female"])),
                    int(rng.integers(18, 70)),
                    category,
                    quantity,
                    price,
                    quantity * price,
                )
            )
            tid += 1
    return pl.DataFrame(rows, schema=list(TRANSACTION_COLUMNS), orient="row")
