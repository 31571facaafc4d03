"""The M5 competition files (Walmart, item x store x day) as a data source, and a generator of
M5-format files for tests and benchmarks.

Files, as published (the real ones are the user's to supply; `DEMAND_M5_DIR` names the folder):

* calendar.csv: date, wm_yr_wk, weekday, wday, month, year, d, event_name_1, event_type_1,
  event_name_2, event_type_2, snap_CA, snap_TX, snap_WI
* sell_prices.csv: store_id, item_id, wm_yr_wk, sell_price (weekly; absent while not on sale)
* sales_train_evaluation.csv (or sales_train_validation.csv): id, item_id, dept_id, cat_id,
  store_id, state_id, d_1 ... d_N

Mapping: a store is the market (COUNTRY = store_id; its state kept in the catalog), an item is
the PRODUCT (category and department kept in the catalog for aggregation and WRMSSE). A row
exists for every day an item is listed in a store (it has a sell price that week) or sells;
days before an item is listed are not rows (M5's leading zeros are "not yet on sale", not
demand). LISTED is false on the days of a listing gap: a zero-sale run with a price, too long
(over `stockout_max_days`, default 28) and too implausible for the item to be demand or a
stockout (real M5 has such runs of 50 to 682 days: a delisting the price file does not show);
those days are not training or evaluation rows (`demand_assets.features.stockouts`). The week's sell price is the day's PRICE; SNAP (the store's state's flag) and IS_EVENT
(any calendar event that day) are known-in-advance covariates. M5 has no promotion flag (PROMO
is false), no spend and no macro data: those domains are not provided. Stock is not recorded:
IN_STOCK comes from the inferred-stockout rule (`demand_assets.features.stockouts`), true on
listing-gap days (a gap is not a stockout).

The sales file streams by blocks of 4,000 series: each block's whole history is read, priced and
its stockouts inferred, and only the requested window's days are kept (6 bytes a series-day, with
the weekly prices a seventh of that), so a unit writing a date range holds its range, not the
file: at 10x M5's series a month's unit holds about 60 MB of cells instead of every day's. Product
demand then streams out of the window in date chunks of about `chunk_rows` rows.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from demand_assets.features.stockouts import MAX_STOCKOUT_DAYS
from demand_assets.sources.base import Catalog, DemandSource, Domain, iter_date_chunks, other_delimiter

__all__ = ["M5Source", "M5Shape", "listed_days", "write_m5_files"]

log = logging.getLogger(__name__)
_ID_COLUMNS = ["id", "item_id", "dept_id", "cat_id", "store_id", "state_id"]
_SERIES_BATCH = 4_000  # series per batch when inferring stockouts (bounds memory)


def _sales_file(directory: Path) -> Path:
    for name in ("sales_train_evaluation.csv", "sales_train_validation.csv"):
        if (directory / name).exists():
            return directory / name
    raise FileNotFoundError(f"M5 folder {directory} has no sales_train_evaluation.csv or sales_train_validation.csv (DEMAND_M5_DIR)")


_FILE_COLUMNS = {
    "calendar.csv": ("date", "wm_yr_wk", "d"),
    "sell_prices.csv": ("store_id", "item_id", "wm_yr_wk", "sell_price"),
}


def _require_columns(path: Path) -> None:
    """Refuse an M5 file without its columns, naming the file, the missing columns and, for a
    file that is not comma-separated, the delimiter it seems to use."""
    header = pl.read_csv(path, n_rows=0, infer_schema=False).columns
    missing = [c for c in _FILE_COLUMNS[path.name] if c not in header]
    if not missing:
        return
    hint = ""
    if len(header) == 1 and (sep := other_delimiter(header[0])):
        hint = f"; the header is one column, {header[0][:80]!r}: the file looks {sep}-separated, M5 files are comma-separated"
    raise ValueError(f"rule 'M5 file columns' on file {path.name}: missing {missing}, found {header[:8]}{hint}")


@dataclass
class _Prices:
    """Weekly sell prices, series x week float32 (NaN: not listed that week), and each day
    column's week: a seventh of a day matrix. A sale in a week without a listed price (rare)
    takes the nearest listed week's price: the item was evidently on sale. An item that sells
    but is never listed keeps NaN, and the contract (PRICE > 0) names its rows."""

    weekly: np.ndarray
    day_week: np.ndarray
    _nearest: np.ndarray | None = None

    def at(self, rows: slice, cols: np.ndarray, sales: np.ndarray) -> np.ndarray:
        """The prices of a block of series (`rows`) on the day columns `cols`, given the block's
        `sales` there (series x days float32, NaN: not listed)."""
        week = self.day_week[cols]
        price = self.weekly[rows][:, week]
        selling_unlisted = (sales > 0) & np.isnan(price)
        if selling_unlisted.any():
            if self._nearest is None:
                self._nearest = pl.from_numpy(self.weekly.T).with_columns(pl.all().fill_nan(None).forward_fill().backward_fill()).to_numpy().T
            price = np.where(selling_unlisted, self._nearest[rows][:, week], price)
        return price


@dataclass
class _Window:
    """The files' days in a window, for every series: what a unit writing those days holds.
    `ids` one row per series (the sales file's row order), `days` one row per day column of the
    window (COLUMN: its position in the file, with the calendar's columns); `sales` int32,
    `in_stock` and `gap` (a listing-gap day) bool, all series x window day; prices weekly."""

    ids: pl.DataFrame
    days: pl.DataFrame
    sales: np.ndarray
    in_stock: np.ndarray
    gap: np.ndarray
    prices: _Prices

    def price(self) -> np.ndarray:
        """Series x window day float32 (NaN: not listed)."""
        return self.prices.at(slice(None), self.days["COLUMN"].to_numpy(), self.sales)


def _window(
    directory: Path,
    stockout_alpha: float | None,
    stockout_max_days: int | None = MAX_STOCKOUT_DAYS,
    start: dt.date | None = None,
    end: dt.date | None = None,
    block_series: int | None = None,
) -> _Window:
    """The files' days in [start, end) (every day when both are None), series by series.

    Inferring a stockout needs a series' whole history (a zero run's length needs the days on
    both sides), so the sales file streams by blocks of `block_series` series (default
    `_SERIES_BATCH`), each read whole, priced, its stockouts inferred and its window's days kept:
    memory is a block's whole history plus every series' window (6 bytes a cell) and the weekly
    prices, not the file's every cell."""
    started = time.perf_counter()
    sales_path = _sales_file(directory)
    header = pl.read_csv(sales_path, n_rows=0).columns
    missing = [c for c in _ID_COLUMNS if c not in header]
    day_columns = [c for c in header if c.startswith("d_")]
    if missing or not day_columns:
        raise ValueError(f"rule 'M5 sales columns': {sales_path.name} lacks {missing or 'the d_1 ... d_N day columns'}")
    for name in _FILE_COLUMNS:
        _require_columns(directory / name)
    calendar = pl.read_csv(directory / "calendar.csv", try_parse_dates=True, infer_schema_length=10_000)
    calendar = calendar.with_columns(pl.col("date").cast(pl.Date))
    by_d = pl.DataFrame({"d": day_columns}).with_row_index("COLUMN").join(calendar, on="d", how="left")
    if (unknown := by_d.filter(pl.col("date").is_null())).height:
        raise ValueError(f"rule 'every day column is in calendar.csv' on column 'd': {unknown.height} unknown, e.g. {unknown['d'].head(5).to_list()}")
    by_d = by_d.sort("COLUMN")
    ids = pl.read_csv(sales_path, columns=_ID_COLUMNS, schema_overrides={c: pl.String for c in _ID_COLUMNS})
    prices = _prices(directory, ids, by_d)
    days = by_d if start is None and end is None else by_d.filter(pl.col("date").is_between(start or dt.date.min, end or dt.date.max, closed="left"))
    cols = days["COLUMN"].to_numpy().astype(np.int64)
    n = ids.height
    sales_w = np.empty((n, len(cols)), dtype=np.int32)
    in_stock_w, gap_w = np.empty((n, len(cols)), dtype=bool), np.empty((n, len(cols)), dtype=bool)
    every_col, dates = np.arange(len(day_columns)), by_d["date"]
    negative: list[dict] = []
    n_negative, lo, logged = 0, 0, started
    for batch in _row_blocks(sales_path, block_series or _SERIES_BATCH, columns=day_columns, schema_overrides={c: pl.Int32 for c in day_columns}):
        hi = lo + batch.height
        if batch.null_count().sum_horizontal().item():
            empty = batch.with_row_index("_R").filter(pl.any_horizontal(pl.exclude("_R").is_null()))
            rows = [
                {"id": ids["id"][lo + int(r)], "d": next(c for c in day_columns if empty.row(k, named=True)[c] is None)}
                for k, r in enumerate(empty["_R"].head(5))
            ]
            raise ValueError(f"rule 'every day has a sales value' on column 'd_*': {empty.height} row(s) with empty cells, e.g. {rows}")
        sales = batch.to_numpy().astype(np.int32, copy=False)
        del batch
        if (bad := np.argwhere(sales < 0)).size:
            n_negative += len(bad)
            negative += [{"id": ids["id"][lo + int(i)], "d": day_columns[int(j)], "sales": int(sales[i, j])} for i, j in bad[: 5 - len(negative)]]
        price = prices.at(slice(lo, hi), every_col, sales)
        in_stock, gap = _inferred_in_stock(dates, sales, price, stockout_alpha, stockout_max_days)
        sales_w[lo:hi], in_stock_w[lo:hi], gap_w[lo:hi] = sales[:, cols], in_stock[:, cols], gap[:, cols]
        lo = hi
        if (now := time.perf_counter()) - logged >= 10 or lo == n:
            log.info("M5 sales: %s/%s series read, stockouts inferred, %.1fs (%.0f series/s)", f"{lo:,}", f"{n:,}", now - started, lo / (now - started))
            logged = now
    if lo != n:
        raise ValueError(f"rule 'M5 sales rows': {sales_path.name} streamed {lo} series rows, its id columns {n}")
    if n_negative:
        raise ValueError(f"rule 'sales >= 0' on column 'd_*': {n_negative} negative cell(s), e.g. {negative}")
    log.info("M5 files read: %d series x %d days (%d in the window) in %.1fs", n, len(day_columns), len(cols), time.perf_counter() - started)
    return _Window(ids, days, sales_w, in_stock_w, gap_w, prices)


def _row_blocks(path: Path, rows: int, **read_csv: object) -> Iterator[pl.DataFrame]:
    """The CSV file's rows, `rows` lines at a time, each block parsed by polars with the header
    (`read_csv`: pl.read_csv's arguments). One block in memory at a time: polars' own batched
    collect reads ahead of a slow consumer (a 2.4 GB sales matrix buffered at 10x M5), and a
    sliced scan re-reads the file from its start for every block. M5's rows hold no quoted
    newlines, so a line is a row."""
    with open(path, "rb") as f:
        header = f.readline()
        while lines := list(itertools.islice(f, rows)):
            yield pl.read_csv(io.BytesIO(header + b"".join(lines)), **read_csv)


def _prices(directory: Path, ids: pl.DataFrame, by_d: pl.DataFrame) -> _Prices:
    weeks = by_d["wm_yr_wk"].unique().sort()
    week_index = {int(w): i for i, w in enumerate(weeks.to_list())}
    series_index = ids.select("store_id", "item_id").with_row_index("ROW")
    # Streamed (the file is about 70 M rows at 10x M5): each priced week's series row, week and
    # price, a batch at a time, into the series x week matrix.
    priced = (
        pl.scan_csv(
            directory / "sell_prices.csv",
            schema_overrides={"store_id": pl.String, "item_id": pl.String, "wm_yr_wk": pl.Int64, "sell_price": pl.Float64},
        )
        .filter(pl.col("wm_yr_wk").is_in(weeks.implode()))
        .join(series_index.lazy(), on=["store_id", "item_id"], how="inner")
        .select("ROW", pl.col("wm_yr_wk").replace_strict(week_index, return_dtype=pl.Int32), pl.col("sell_price").cast(pl.Float32))
    )
    weekly = np.full((ids.height, len(weeks)), np.nan, dtype=np.float32)
    for batch in priced.collect_batches(chunk_size=1_000_000):
        weekly[batch["ROW"].to_numpy(), batch["wm_yr_wk"].to_numpy()] = batch["sell_price"].to_numpy()
    return _Prices(weekly, by_d["wm_yr_wk"].replace_strict(week_index, return_dtype=pl.Int64).to_numpy())


def listed_days(sales: np.ndarray, price: np.ndarray) -> np.ndarray:
    """Series x day: the item is listed in the store (a sell price that week) or sells."""
    return ~np.isnan(price) | (sales > 0)


def _inferred_in_stock(dates: pl.Series, sales: np.ndarray, price: np.ndarray, alpha: float | None, max_days: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(in_stock, gap): in_stock true unless the inferred-stockout rule flags the day, gap true on
    listing-gap days; run over whole series (a zero run's length needs the days on both sides),
    a batch of series at a time."""
    in_stock = np.ones(sales.shape, dtype=bool)
    gap = np.zeros(sales.shape, dtype=bool)
    if alpha is None:
        return in_stock, gap
    from demand_assets.features.stockouts import infer_stockouts

    listed = listed_days(sales, price)
    day = dates.to_numpy()
    for lo in range(0, sales.shape[0], _SERIES_BATCH):
        hi = min(lo + _SERIES_BATCH, sales.shape[0])
        rows, cols = np.nonzero(listed[lo:hi])
        frame = pl.DataFrame(
            {
                "DATE": day[cols],
                "COUNTRY": np.zeros(len(rows), dtype=np.int32),
                "PRODUCT": rows.astype(np.int32),
                "PRODUCT_DEMAND": sales[lo:hi][rows, cols],
                "_COL": cols.astype(np.int32),
            }
        )
        inferred = infer_stockouts(frame, alpha=alpha, max_stockout_days=max_days)
        flagged = inferred.filter(pl.col("INFERRED_OUT"))
        in_stock[lo + flagged["PRODUCT"].to_numpy(), flagged["_COL"].to_numpy()] = False
        gaps = inferred.filter(pl.col("LISTING_GAP"))
        gap[lo + gaps["PRODUCT"].to_numpy(), gaps["_COL"].to_numpy()] = True
    return in_stock, gap


class M5Source(DemandSource):
    """The M5 files as product demand (see the module docstring for the mapping)."""

    name = "m5"

    def __init__(
        self,
        directory: str | Path,
        *,
        stockout_alpha: float | None = 0.001,
        stockout_max_days: int | None = MAX_STOCKOUT_DAYS,
        chunk_rows: int = 4_000_000,
    ) -> None:
        self.directory = Path(directory).expanduser().resolve()
        for name in ("calendar.csv", "sell_prices.csv"):
            if not (self.directory / name).exists():
                raise FileNotFoundError(f"M5 folder {self.directory} has no {name} (DEMAND_M5_DIR)")
        _sales_file(self.directory)
        self.stockout_alpha = stockout_alpha
        self.stockout_max_days = stockout_max_days
        self.chunk_rows = chunk_rows

    @property
    def provides(self) -> frozenset[Domain]:
        return frozenset({Domain.PRODUCT_DEMAND})

    @functools.cached_property
    def _catalog(self) -> Catalog:
        # The id columns only: cheap, so assets that need just the catalog never load the matrix.
        ids = pl.read_csv(_sales_file(self.directory), columns=_ID_COLUMNS, schema_overrides={c: pl.String for c in _ID_COLUMNS})
        _require_columns(self.directory / "sell_prices.csv")
        # Categorical keys and the streaming engine: at 10x M5 (76 M price rows) 1.9 GB instead of 5.7.
        prices = (
            pl.scan_csv(self.directory / "sell_prices.csv", schema_overrides={"item_id": pl.Categorical, "store_id": pl.Categorical})
            .group_by("item_id")
            .agg(pl.col("sell_price").median().alias("BASE_PRICE"))
            .collect(engine="streaming")
            .with_columns(pl.col("item_id").cast(pl.String))
        )
        products = (
            ids.group_by("item_id")
            .agg(pl.col("cat_id").first().alias("CATEGORY"), pl.col("dept_id").first().alias("DEPARTMENT"))
            .join(prices, on="item_id", how="left")
            .rename({"item_id": "PRODUCT"})
            .sort("PRODUCT")
            .select("PRODUCT", "CATEGORY", "BASE_PRICE", "DEPARTMENT")
        )
        markets = ids.select(pl.col("store_id").alias("COUNTRY"), pl.col("state_id").alias("STATE")).unique().sort("COUNTRY")
        return Catalog(countries=tuple(markets["COUNTRY"].to_list()), channels=(), products=products, markets=markets)

    def catalog(self) -> Catalog:
        return self._catalog

    def _read(self, domain: Domain, start: dt.date, end: dt.date) -> Iterator[pl.DataFrame]:
        window = _window(self.directory, self.stockout_alpha, self.stockout_max_days, start, end)
        ids, days = window.ids, window.days
        dates = days["date"]
        snap_by_state = {c.removeprefix("snap_"): days[c].cast(pl.Boolean).to_numpy() for c in days.columns if c.startswith("snap_")}
        event = (
            (days["event_name_1"].is_not_null() | days["event_name_2"].is_not_null()).to_numpy()
            if "event_name_1" in days.columns
            else np.zeros(days.height, bool)
        )
        states = list(dict.fromkeys(ids["state_id"].to_list()))
        snap = np.stack([snap_by_state.get(s, np.zeros(days.height, bool)) for s in states])  # state x window day
        state_row = ids["state_id"].replace_strict({s: i for i, s in enumerate(states)}, return_dtype=pl.Int64).to_numpy()
        file_col = days["COLUMN"].to_numpy().astype(np.int64)
        chunk_days = max(1, self.chunk_rows // max(ids.height, 1))
        day_of = {d: i for i, d in enumerate(dates.to_list())}
        day_values, stores, items = dates.to_numpy(), ids["store_id"].to_numpy(), ids["item_id"].to_numpy()
        for a, b in iter_date_chunks(start, end, chunk_days):
            cols = np.array([day_of[a + dt.timedelta(days=k)] for k in range((b - a).days) if a + dt.timedelta(days=k) in day_of], dtype=np.int64)
            if cols.size == 0:
                continue
            block = window.sales[:, cols]
            price = window.prices.at(slice(None), file_col[cols], block)
            rows, j = np.nonzero(listed_days(block, price))
            c = cols[j]
            sold = block[rows, j]
            frame = pl.DataFrame(
                {
                    "DATE": day_values[c],
                    "COUNTRY": stores[rows],
                    "PRODUCT": items[rows],
                    "PRODUCT_DEMAND": sold.astype(np.int64),
                    "PRICE": price[rows, j].astype(np.float64),
                    "PROMO": np.zeros(len(rows), dtype=bool),
                    "IN_STOCK": window.in_stock[rows, c],
                    "LISTED": ~window.gap[rows, c],
                    "SNAP": snap[state_row[rows], c],
                    "IS_EVENT": event[c],
                }
            ).with_columns(pl.col("DATE").cast(pl.Date), pl.col("PRICE").fill_nan(None))
            yield frame.sort("DATE", "COUNTRY", "PRODUCT")


# --- M5-format files, generated -------------------------------------------------------------


@dataclass(frozen=True)
class M5Shape:
    """The panel's shape. Defaults: M5's own (3 states, 10 stores, 3 categories, 7 departments,
    3,049 items: 30,490 series; 1,941 days of sales_train_evaluation)."""

    stores: tuple[tuple[str, int], ...] = (("CA", 4), ("TX", 3), ("WI", 3))
    departments: tuple[tuple[str, int], ...] = (
        ("FOODS_1", 216),
        ("FOODS_2", 398),
        ("FOODS_3", 823),
        ("HOBBIES_1", 416),
        ("HOBBIES_2", 149),
        ("HOUSEHOLD_1", 532),
        ("HOUSEHOLD_2", 515),
    )
    days: int = 1941
    start: dt.date = dt.date(2011, 1, 29)
    seed: int = 0
    stockout_start_rate: float = 0.002  # per listed selling day: a stockout starts
    stockout_mean_days: float = 6.0
    late_listing_share: float = 0.25  # items first listed part-way through (M5's leading zeros)

    @staticmethod
    def small(items_per_department: int = 4, days: int = 400, seed: int = 0, start: dt.date = dt.date(2023, 1, 7)) -> M5Shape:
        """Two states, three stores, two departments: for tests (starts inside the default partitions)."""
        return M5Shape(
            stores=(("CA", 2), ("TX", 1)),
            departments=(("FOODS_1", items_per_department), ("HOBBIES_1", items_per_department)),
            days=days,
            seed=seed,
            start=start,
        )


_SNAP_DAYS = {"CA": set(range(1, 11)), "TX": {1, 3, 5, 6, 7, 9, 11, 12, 15}, "WI": {2, 3, 5, 6, 8, 9, 11, 12, 14, 15}}


def _calendar(shape: M5Shape) -> pl.DataFrame:
    import holidays

    dates = [shape.start + dt.timedelta(days=k) for k in range(shape.days + 28)]  # M5's calendar runs 28 days past the sales
    us = holidays.country_holidays("US", years=range(shape.start.year, dates[-1].year + 1))
    week = [(k // 7) for k in range(len(dates))]  # Walmart weeks start on Saturday, as does M5's first day
    rows = []
    for k, day in enumerate(dates):
        name = us.get(day)
        rows.append(
            {
                "date": day.isoformat(),
                "wm_yr_wk": 11101 + 100 * (week[k] // 52) + week[k] % 52,
                "weekday": day.strftime("%A"),
                "wday": (day.weekday() + 2) % 7 + 1,
                "month": day.month,
                "year": day.year,
                "d": f"d_{k + 1}",
                "event_name_1": name,
                "event_type_1": "National" if name else None,
                "event_name_2": None,
                "event_type_2": None,
                **{f"snap_{s}": int(day.day in _SNAP_DAYS.get(s, set())) for s, _ in shape.stores},
            }
        )
    return pl.DataFrame(rows, infer_schema_length=None)


def write_m5_files(directory: str | Path, shape: M5Shape = M5Shape()) -> dict[str, int]:
    """Write calendar.csv, sell_prices.csv, sales_train_evaluation.csv and stockouts_truth.csv
    (id, d_start, days: the generator's stockout runs) in M5's format; rows per file.

    The demand is M5-like: item rates log-normal (most items sell a unit or less a day, so most
    days are zero), store effects, weekday and yearly seasonality, SNAP days lift FOODS, weekly
    prices with temporary discounts and price elasticity, items listed part-way through, zero
    sales on Christmas (stores closed), and stockout runs that zero sales (recorded as truth)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(shape.seed)
    calendar = _calendar(shape)
    calendar.write_csv(out / "calendar.csv")
    sales_days = calendar.head(shape.days)
    dates = sales_days["date"].str.to_date()
    n_days = shape.days
    dow = dates.dt.weekday().to_numpy() - 1  # Monday 0
    doy = dates.dt.ordinal_day().to_numpy()
    christmas = ((dates.dt.month() == 12) & (dates.dt.day() == 25)).to_numpy()
    week_of_day = sales_days["wm_yr_wk"].to_numpy()
    weeks = np.unique(week_of_day)
    week_idx = np.searchsorted(weeks, week_of_day)
    items = [(dept, f"{dept}_{i + 1:03d}") for dept, n in shape.departments for i in range(n)]
    n_items = len(items)
    item_rate = rng.lognormal(-0.6, 1.3, n_items)
    base_price = np.round(rng.lognormal(1.2, 0.7, n_items), 2) + 0.48
    elasticity = rng.uniform(-2.5, -0.8, n_items)
    listed_from = np.zeros(n_items, dtype=np.int64)
    late = rng.choice(n_items, max(1, round(shape.late_listing_share * n_items)), replace=False)  # listed part-way through
    listed_from[late] = rng.integers(7, int(n_days * 0.8), len(late))
    weekly_shape = np.array([1.0, 0.92, 0.9, 0.9, 0.98, 1.2, 1.3])  # Monday .. Sunday
    season = 1.0 + 0.12 * np.sin(2 * np.pi * (doy - 80) / 365.25)
    counts = {"sales_train_evaluation.csv": 0, "sell_prices.csv": 0, "stockouts_truth.csv": 0}
    truth_rows, price_frames = [], []
    header = True
    with open(out / "sales_train_evaluation.csv", "w") as sales_file:
        for state, n_stores in shape.stores:
            snap = sales_days[f"snap_{state}"].to_numpy().astype(bool)
            for s in range(n_stores):
                store = f"{state}_{s + 1}"
                store_effect = rng.lognormal(0.0, 0.3)
                discount = rng.random((n_items, len(weeks))) < 0.08
                price_w = np.round(base_price[:, None] * np.where(discount, rng.uniform(0.7, 0.9, (n_items, len(weeks))), 1.0), 2)
                price_d = price_w[:, week_idx]
                is_food = np.array([d.startswith("FOODS") for d, _ in items])
                rate = (item_rate * store_effect)[:, None] * weekly_shape[dow][None, :] * season[None, :]
                rate = rate * (price_d / base_price[:, None]) ** elasticity[:, None]
                rate = rate * np.where(is_food[:, None] & snap[None, :], 1.15, 1.0)
                demand = rng.poisson(rng.gamma(2.0, rate / 2.0)).astype(np.int32)
                listed = np.arange(n_days)[None, :] >= listed_from[:, None]
                starts = (rng.random((n_items, n_days)) < shape.stockout_start_rate) & listed
                lengths = rng.geometric(1.0 / shape.stockout_mean_days, starts.sum())
                out_mask = np.zeros_like(listed)
                for (i, d), length in zip(np.argwhere(starts), lengths):
                    out_mask[i, d : d + length] = True
                    truth_rows.append((f"{items[i][1]}_{store}_evaluation", f"d_{d + 1}", int(min(length, n_days - d))))
                sales = np.where(listed & ~out_mask & ~christmas[None, :], demand, 0)
                frame = pl.DataFrame(
                    {
                        "id": [f"{it}_{store}_evaluation" for _, it in items],
                        "item_id": [it for _, it in items],
                        "dept_id": [d for d, _ in items],
                        "cat_id": [d.rsplit("_", 1)[0] for d, _ in items],
                        "store_id": store,
                        "state_id": state,
                    }
                ).hstack(pl.DataFrame(sales, schema=[f"d_{k + 1}" for k in range(n_days)], orient="row"))
                frame.write_csv(sales_file, include_header=header)
                header = False
                counts["sales_train_evaluation.csv"] += frame.height
                first_week = np.searchsorted(weeks, week_of_day[listed_from])  # a price from the week an item is listed
                rows, cols = np.nonzero(np.arange(len(weeks))[None, :] >= first_week[:, None])
                price_frames.append(
                    pl.DataFrame(
                        {
                            "store_id": store,
                            "item_id": np.array([it for _, it in items])[rows],
                            "wm_yr_wk": weeks[cols],
                            "sell_price": price_w[rows, cols],
                        }
                    )
                )
    prices = pl.concat(price_frames)
    prices.write_csv(out / "sell_prices.csv")
    counts["sell_prices.csv"] = prices.height
    truth = pl.DataFrame(truth_rows, schema=["id", "d_start", "days"], orient="row")
    truth.write_csv(out / "stockouts_truth.csv")
    counts["stockouts_truth.csv"] = truth.height
    counts["calendar.csv"] = calendar.height
    return counts
