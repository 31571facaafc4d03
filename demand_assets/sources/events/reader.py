"""Reading an e-commerce event log (issue 20, point 1): one CSV (or CSV.gz) per month, or one file,
in the public "eCommerce events history in cosmetics shop" layout (`EVENT_COLUMNS`):

    event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session
    2019-10-01 00:00:04 UTC,view,5809910,1602943681873052386,,grattol,5.24,595414620,4adb70bb-...

Times are UTC (the `UTC` suffix is required); the day a event counts for is its date in the
shop's time zone (`timezone`, an IANA name, default UTC), so a shop whose day ends at local
midnight sets e.g. `Europe/Moscow`.

Files are scanned lazily (polars `scan_csv`, the streaming engine), so memory is bounded by the
window's aggregates, not the log's size. Every row of the window is checked first (`RULES`),
and so is every row whose time does not parse (it belongs to no window); a broken rule raises
`SourceFormatError` naming the rule, the column and example rows by file and line. Exact
duplicate events (the public log has many) are counted, dropped and reported in `EventDays`.
"""

from __future__ import annotations

import datetime as dt
import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from contracts.validation import SourceFormatError, Violation
from demand_assets.sources.base import iter_date_chunks, other_delimiter
from demand_assets.sources.events.world import EVENT_COLUMNS, EVENT_TYPES

__all__ = ["ALL_TIME", "COUNTS", "ENGAGEMENT_COUNTS", "EventDays", "EventLevel", "daily_events", "event_files", "event_rules", "read_events"]

EventLevel = Literal["product", "brand", "category"]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
MAX_EXAMPLES = 5
TABLE = "event log"
# Per day and series: the counts the engagement domain keeps, PURCHASES the demand.
COUNTS = {"VIEWS": "view", "CARTS": "cart", "REMOVALS": "remove_from_cart", "PURCHASES": "purchase"}
ENGAGEMENT_COUNTS = (*COUNTS, "SESSIONS", "USERS")  # the product_engagement domain's columns
NO_BRAND = "(no brand)"
ALL_TIME = (dt.date(1970, 1, 1), dt.date(2200, 1, 1))  # a window holding any log


def event_files(path: str | Path) -> list[Path]:
    """The log's files: `path` itself, or the folder's *.csv and *.csv.gz in name order."""
    p = Path(path)
    if not p.exists():
        raise SourceFormatError(TABLE, [Violation("the event log exists", str(p), 0, ({"path": str(p)},))])
    if p.is_file():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith((".csv", ".csv.gz")))
    if not files:
        raise SourceFormatError(TABLE, [Violation("a folder of event files holds at least one .csv or .csv.gz", str(p), 0, ({"folder": str(p)},))])
    return files


def _header(path: Path) -> str:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            return handle.readline(8192).decode("utf-8", errors="replace").strip()
    except (OSError, EOFError, zlib.error) as error:
        raise SourceFormatError(TABLE, [Violation("a readable CSV or gzip file", "(file)", 0, ({"file": str(path), "error": str(error)},))]) from error


def _check_headers(files: list[Path]) -> None:
    violations = []
    for path in files:
        header = _header(path)
        if sep := other_delimiter(header):
            violations.append(Violation("comma-separated", "(header)", 0, ({"file": path.name, "header": header[:120], "looks": sep},)))
            continue
        missing = [c for c in EVENT_COLUMNS if c not in {h.strip().strip('"') for h in header.split(",")}]
        if missing:
            violations.append(Violation("has the event log's columns", ", ".join(missing), 0, ({"file": path.name, "header": header[:160]},)))
    if violations:
        raise SourceFormatError(TABLE, violations)


def _broken_gzip(files: list[Path]) -> list[Violation]:
    """The .gz files that do not decompress to their end (a truncated download)."""
    broken = []
    for path in files:
        if not path.name.endswith(".gz"):
            continue
        try:
            with gzip.open(path, "rb") as handle:
                while handle.read(1 << 24):
                    pass
        except (OSError, EOFError, zlib.error) as error:
            broken.append(Violation("a complete gzip file", "(file)", 0, ({"file": path.name, "error": str(error)},)))
    return broken


def _scan(files: list[Path]) -> pl.LazyFrame:
    frames = [
        pl.scan_csv(f, infer_schema=False, row_index_name="LINE", row_index_offset=2).select(
            pl.lit(f.name).alias("FILE"), "LINE", *[pl.col(c).str.strip_chars() for c in EVENT_COLUMNS]
        )
        for f in files
    ]
    return pl.concat(frames, how="vertical")


def _parsed(raw: pl.LazyFrame, timezone: str) -> pl.LazyFrame:
    time = pl.col("event_time").str.strptime(pl.Datetime("us"), TIME_FORMAT, strict=False)
    return raw.with_columns(
        time.alias("TIME"),
        time.dt.replace_time_zone("UTC").dt.convert_time_zone(timezone).dt.date().alias("DATE"),
        pl.col("price").cast(pl.Float64, strict=False).alias("PRICE"),
    )


def event_rules() -> dict[str, tuple[str, pl.Expr]]:
    """Rule name -> (column, expression true where a parsed row keeps the rule)."""
    given = lambda c: pl.col(c).is_not_null() & (pl.col(c) != "")  # noqa: E731
    return {
        f"event times read as {TIME_FORMAT.replace('%', '')} (UTC)": ("event_time", pl.col("TIME").is_not_null()),
        f"event types are one of {', '.join(EVENT_TYPES)}": ("event_type", pl.col("event_type").is_in(EVENT_TYPES)),
        "product ids are given": ("product_id", given("product_id")),
        "session ids are given": ("user_session", given("user_session")),
        "prices are numbers": ("price", pl.col("PRICE").is_not_null() & pl.col("PRICE").is_finite()),
        "prices are >= 0": ("price", pl.col("PRICE").is_null() | (pl.col("PRICE") >= 0)),
    }


@dataclass(frozen=True)
class EventDays:
    """A window of the log per day and series: DATE, SERIES, CATEGORY, VIEWS, CARTS, REMOVALS,
    PURCHASES, SESSIONS, USERS, PRICE (mean price of the day's events; null on a day without
    any), and how many events were read, kept, and dropped as exact duplicates."""

    days: pl.DataFrame
    events_read: int
    duplicates: int


def _series(level: EventLevel) -> tuple[pl.Expr, pl.Expr]:
    """(series key, its category) at `level`."""
    category = pl.when(pl.col("category_code").is_not_null() & (pl.col("category_code") != "")).then(pl.col("category_code")).otherwise(pl.col("category_id"))
    if level == "product":
        return pl.col("product_id"), category.fill_null("UNKNOWN")
    if level == "brand":
        brand = pl.when(pl.col("brand").is_not_null() & (pl.col("brand") != "")).then(pl.col("brand")).otherwise(pl.lit(NO_BRAND))
        return brand, pl.lit("brand")
    return category.fill_null("UNKNOWN"), pl.lit("category")


def daily_events(
    path: str | Path,
    start: dt.date,
    end: dt.date,
    *,
    level: EventLevel = "product",
    timezone: str = "UTC",
    progress: Callable[[str], None] | None = None,
) -> EventDays:
    """Check the log's rows for [start, end) and count them per day and series (`EventDays`).
    Raises SourceFormatError naming every broken rule with example rows (file and line)."""
    files = event_files(path)
    _check_headers(files)
    try:
        return _daily_events(files, start, end, level, timezone, progress)
    except (OSError, pl.exceptions.ComputeError) as error:
        raise _unreadable(files, error) from error


def _unreadable(files: list[Path], error: Exception) -> SourceFormatError:
    """What a failed read means: a truncated gzip by name, else an unreadable CSV."""
    broken = _broken_gzip(files)
    if broken:
        return SourceFormatError(TABLE, broken)
    return SourceFormatError(TABLE, [Violation("a readable CSV file", "(file)", 0, ({"files": [f.name for f in files], "error": str(error)[:300]},))])


# Days counted per pass after the check: a pass holds its window's events (for the exact
# duplicates and the distinct sessions), so memory follows the window, not the log.
WINDOW_DAYS = 31


def _checked(files: list[Path], start: dt.date, end: dt.date, timezone: str, progress: Callable[[str], None] | None):
    """(per-file scans, the window's row count, each file's first and last DATE in the window),
    after every rule held on the window's rows; else SourceFormatError."""
    rules = event_rules()
    scans = {f.name: _parsed(_scan([f]), timezone) for f in files}
    parsed = pl.concat(list(scans.values()), how="vertical")
    # Rows of the window, and rows whose time does not parse (they belong to no window).
    relevant = parsed.filter(pl.col("DATE").is_between(start, end, closed="left") | pl.col("TIME").is_null())
    counts = relevant.select(*[(~holds.fill_null(False)).sum().alias(rule) for rule, (_, holds) in rules.items()], pl.len().alias("_rows"))
    spans = relevant.group_by("FILE").agg(pl.col("DATE").min().alias("FIRST"), pl.col("DATE").max().alias("LAST"))
    counted_frame, spans_frame = pl.collect_all([counts, spans], engine="streaming")
    counted = counted_frame.row(0, named=True)
    broken = [rule for rule, _ in rules.items() if counted[rule]]
    if broken:
        violations = []
        for rule in broken:
            column, holds = rules[rule]
            rows = relevant.filter(~holds.fill_null(False)).select("FILE", "LINE", pl.col(column).alias(f"{column} as written")).head(MAX_EXAMPLES).collect()
            violations.append(Violation(rule, column, int(counted[rule]), tuple(rows.to_dicts())))
        raise SourceFormatError(TABLE, violations)
    if progress:
        span = f"{start}..{end - dt.timedelta(days=1)}" if (start, end) != ALL_TIME else "the whole log"
        progress(f"event log: {counted['_rows']:,} events of {span} checked ({len(files)} file(s))")
    return scans, int(counted["_rows"]), spans_frame.filter(pl.col("FIRST").is_not_null())


def _daily_events(files: list[Path], start: dt.date, end: dt.date, level: EventLevel, timezone: str, progress: Callable[[str], None] | None) -> EventDays:
    scans, rows, spans_frame = _checked(files, start, end, timezone, progress)
    if spans_frame.is_empty():
        return EventDays(days=_count(pl.concat(list(scans.values()), how="vertical").filter(pl.lit(False)), level), events_read=0, duplicates=0)
    first, last = spans_frame["FIRST"].min(), spans_frame["LAST"].max()
    parts = []
    for a, b in iter_date_chunks(max(start, first), min(end, last + dt.timedelta(days=1)), WINDOW_DAYS):
        # Only the files holding days of [a, b): a monthly log reads one or two files a pass.
        touching = spans_frame.filter((pl.col("FIRST") < b) & (pl.col("LAST") >= a))["FILE"].to_list()
        window = pl.concat([scans[name] for name in touching], how="vertical").filter(pl.col("DATE").is_between(a, b, closed="left"))
        parts.append(_count(window, level))
        if progress:
            progress(f"event log: counted {a}..{b - dt.timedelta(days=1)} ({len(touching)} file(s))")
    days = pl.concat(parts).sort("DATE", "SERIES")
    kept = int(days.select(pl.sum_horizontal(*COUNTS).sum()).item()) if days.height else 0  # every kept event has one of the four types
    duplicates = rows - kept
    if progress:
        progress(f"event log: {kept:,} events kept, {duplicates:,} exact duplicates dropped; {days.height:,} series-days at level {level}")
    return EventDays(days=days, events_read=rows, duplicates=duplicates)


def read_events(path: str | Path, start: dt.date, end: dt.date, *, timezone: str = "UTC", progress: Callable[[str], None] | None = None) -> pl.DataFrame:
    """The log's events of [start, end) (by their date in `timezone`), each checked by the same
    rules as `daily_events` and exact duplicates dropped: EVENT_COLUMNS with event_time a UTC
    datetime, price a float and the ids as written, in time order."""
    files = event_files(path)
    _check_headers(files)
    try:
        scans, rows, spans = _checked(files, start, end, timezone, progress)
        if spans.is_empty():
            return pl.DataFrame(schema={c: pl.String for c in EVENT_COLUMNS} | {"event_time": pl.Datetime("us"), "price": pl.Float64, "DATE": pl.Date})
        window = pl.concat([scans[name] for name in spans["FILE"].to_list()], how="vertical").filter(pl.col("DATE").is_between(start, end, closed="left"))
        events = (
            window.drop("FILE", "LINE")
            .unique(subset=list(EVENT_COLUMNS), keep="any", maintain_order=False)
            .drop("event_time", "price")
            .rename({"TIME": "event_time", "PRICE": "price"})
            .select(*EVENT_COLUMNS, "DATE")
            .sort("event_time", "user_session")
            .collect(engine="streaming")
        )
    except (OSError, pl.exceptions.ComputeError) as error:
        raise _unreadable(files, error) from error
    if progress:
        progress(f"event log: {events.height:,} events of {start}..{end - dt.timedelta(days=1)} read, {rows - events.height:,} exact duplicates dropped")
    return events


def _count(window: pl.LazyFrame, level: EventLevel) -> pl.DataFrame:
    """The window's events, exact duplicates dropped, counted per DATE and SERIES."""
    key, category = _series(level)
    unique = window.drop("FILE", "LINE", "TIME").unique(subset=list(EVENT_COLUMNS), keep="any", maintain_order=False)
    return (
        unique.with_columns(key.cast(pl.String).alias("SERIES"), category.cast(pl.String).alias("CATEGORY"))
        .group_by("DATE", "SERIES")
        .agg(
            pl.col("CATEGORY").first(),
            *[(pl.col("event_type") == kind).sum().cast(pl.Int64).alias(name) for name, kind in COUNTS.items()],
            pl.col("user_session").n_unique().cast(pl.Int64).alias("SESSIONS"),
            pl.col("user_id").n_unique().cast(pl.Int64).alias("USERS"),
            pl.col("PRICE").mean().round(6).alias("PRICE"),  # rounded: the same log gives the same prices, whatever order the engine sums in
        )
        .collect(engine="streaming")
    )
