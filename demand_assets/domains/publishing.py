"""Validate-then-write for every daily table: the contract gates the Delta commit.

Chunks flow through their checks into a single Delta transaction. If any check fails the
transaction is aborted (the stored table keeps its last good version), the failed checks are
recorded as blocking asset-check results naming the rule, column and rows, and the step fails,
so nothing downstream runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
import polars as pl

from contracts import CONTRACTS, DAILY, Cadence, ContractContext, ContractError, ContractReport, SourceFormatError, Violation
from contracts.registry import table_spec
from demand_assets.domains.partitions import daily_partitions
from demand_assets.reporting import frame_to_markdown
from demand_assets.sources import Catalog
from resources import DeltaStore, WriteSummary

__all__ = [
    "ChunkCheck",
    "WindowCheck",
    "cadence_metadata",
    "check_results",
    "blocking_check_spec",
    "not_provided",
    "not_provided_result",
    "contract_check",
    "contract_context",
    "partition_dates",
    "require_days",
    "rows_by_design_only",
    "without_rows_by_design",
    "require_input_days",
    "publish_window",
]


@dataclass(frozen=True)
class ChunkCheck:
    """A blocking check evaluated on every chunk before it is written."""

    name: str
    run: Callable[[pl.DataFrame], ContractReport]


def partition_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The run's window as [start, end) dates: one day or a whole single-run backfill."""
    window = context.partition_time_window
    return window.start.date(), window.end.date()


def require_input_days(store: DeltaStore, table: str, lookback_days: int, start: dt.date, end: dt.date, *, asset: str, cadence: Cadence = DAILY) -> None:
    """Fail the run, naming the days, when `table` lacks a day that `asset` reads for [start, end).

    The look-back a run reads is checked here rather than declared as a partition mapping:
    Dagster pulls every later partition whose look-back a backfilled day falls in into the
    backfill (a one-day backfill became 29 partitions marked materialized, 28 of them without
    rows). Every day of the run's own window is required; look-back days only from the table's
    first stored day and the first partition on (a store's first days have no history: their
    lags are null). A weekly source requires its week days only (`cadence`)."""
    if not store.exists(table):
        raise dg.Failure(
            description=f"{asset} for [{start}, {end}) reads {table}, which has not been materialized yet: materialize it first", allow_retries=False
        )
    first_stored = store.scan(table).select(pl.col("DATE").min()).collect().item()
    lo = min(start, max(start - dt.timedelta(days=lookback_days), daily_partitions.start.date(), first_stored or start))
    present = set(store.scan(table).filter((pl.col("DATE") >= lo) & (pl.col("DATE") < end)).select("DATE").unique().collect()["DATE"].to_list())
    missing = [day for day in cadence.days(lo, end) if day not in present]
    if missing:
        shown = ", ".join(str(d) for d in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise dg.Failure(
            description=(
                f"{asset} for [{start}, {end}) reads {table} from {lo}, and {table} has no rows for {len(missing)} of those days: {shown}. "
                f"Materialize those days of {table} first; nothing of {asset} was written."
            ),
            allow_retries=False,
        )


def require_days(frame: pl.DataFrame, start: dt.date, end: dt.date, table: str, cadence: Cadence = DAILY) -> None:
    """Fail the run, naming the days, when `frame` (read from `table`) lacks a day of [start, end)
    that carries rows (every day; a weekly source's week days)."""
    missing = set(cadence.days(start, end)) - set(frame["DATE"].unique().to_list())
    if missing:
        raise dg.Failure(description=f"{table} has no rows for {sorted(missing)[:5]}: materialize it for these days first")


def contract_context(catalog: Catalog, start: dt.date, end: dt.date, upper_bounds: Mapping[str, float] | None = None) -> ContractContext:
    """The run's window, the source's known categories and any overridden upper bounds, which
    every table contract checks."""
    return ContractContext(
        window_start=start,
        window_end=end,
        categories={"COUNTRY": catalog.countries, "CHANNEL": catalog.channels, "PRODUCT": catalog.product_ids},
        upper_bounds=upper_bounds or {},
    )


def contract_check(table: str, check_name: str, ctx: ContractContext) -> ChunkCheck:
    """The Pandera contract of `table` as a chunk check."""
    contract = CONTRACTS[table]
    return ChunkCheck(check_name, lambda chunk: contract.validate(chunk, ctx))


def blocking_check_spec(check: str, asset: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(check, asset=asset, blocking=True, description=description)


def not_provided(
    context: dg.AssetExecutionContext, source_name: str, what: str, check_names: Sequence[str] = (), *, asset_key: dg.AssetKey | None = None
) -> Iterator[dg.AssetCheckResult | dg.MaterializeResult]:
    """The record of an asset whose data this source does not have (no spend in a transaction
    log, no ground truth in real sales): a materialization without a table, saying so.

    It materializes rather than skips because Dagster skips everything downstream of a skipped
    asset in the same run, and product_demand must still run without country or channel data.
    Readers ask the source (`provides`), never the marker, whether the data exists.
    """
    result = not_provided_result(context, source_name, what, asset_key=asset_key)
    yield result
    for name in check_names:
        yield dg.AssetCheckResult(check_name=name, asset_key=asset_key, passed=True, metadata={"rows_checked": 0, "note": result.metadata["note"]})


def not_provided_result(context: dg.AssetExecutionContext, source_name: str, what: str, *, asset_key: dg.AssetKey | None = None) -> dg.MaterializeResult:
    """`not_provided` for an asset without checks, as one result to return."""
    note = f"source '{source_name}' does not provide {what}: no table is written"
    context.log.info(note)
    return dg.MaterializeResult(asset_key=asset_key, metadata={"provided_by_source": False, "dagster/row_count": 0, "note": note})


def _column_schema(frame: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()])


class WindowCheck:
    """A table's checks run over the chunks of one window, as they stream to their destination.

    `chunks(source)` yields every chunk that passed and raises ContractError at the first that
    did not (or at the end, when a day of the window, or with `complete_series` a series on
    a day between its first and last, has no row; for a weekly `cadence`, a week day, and
    a row on any other day breaks the contract). A source that cannot read its file (SourceFormatError) breaks the
    table's contract, the first check. The reports, a preview and per-day summaries stay here
    for the run's check results and charts.
    """

    def __init__(
        self,
        table: str,
        checks: Sequence[ChunkCheck],
        start: dt.date,
        end: dt.date,
        *,
        summarize: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
        complete_series: bool = False,
        log: Callable[[str], None] | None = None,
        cadence: Cadence = DAILY,
    ) -> None:
        self.table, self.checks, self.start, self.end = table, list(checks), start, end
        self.cadence = cadence
        self.reports = {c.name: ContractReport(c.name, 0) for c in checks}
        self.summaries: list[pl.DataFrame] = []
        self.preview: pl.DataFrame | None = None
        self._summarize, self._log = summarize, log
        self._series_keys = [k for k in table_spec(table).keys if k != "DATE"] if complete_series else []
        self._days: set[dt.date] = set()
        self.rows_per_day: dict[dt.date, int] = {}
        self._spans: pl.DataFrame | None = None  # per series: first and last day, days with rows

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.reports.values())

    def record(self, violations: Sequence[Violation]) -> None:
        """Violations found outside the checks (reading, completeness), charged to the contract."""
        first = self.checks[0].name
        self.reports[first] = self.reports[first].merge(ContractReport(first, 0, tuple(violations)))

    def chunks(self, source: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        try:
            for i, chunk in enumerate(source, start=1):
                self._observe(chunk)
                for check in self.checks:
                    self.reports[check.name] = self.reports[check.name].merge(check.run(chunk))
                if not self.passed:
                    raise ContractError(list(self.reports.values()))
                if self._summarize is not None:
                    self.summaries.append(self._summarize(chunk))
                if self.preview is None:
                    self.preview = chunk.head(10)
                if chunk.height and self._log is not None:
                    self._log(
                        f"{self.table}: chunk {i} ({chunk.height:,} rows, {chunk['DATE'].min()}..{chunk['DATE'].max()}) passed {len(self.checks)} check(s)"
                    )
                yield chunk
        except SourceFormatError as err:
            if not self.checks:
                raise
            self.record(err.violations)
            raise ContractError(list(self.reports.values())) from err
        if self.checks and self._days:
            self.record(self._completeness())
            if not self.passed:
                raise ContractError(list(self.reports.values()))

    def _observe(self, chunk: pl.DataFrame) -> None:
        self._days.update(chunk["DATE"].unique().to_list())
        for day, n in chunk.group_by("DATE").len().iter_rows():
            self.rows_per_day[day] = self.rows_per_day.get(day, 0) + n
        if self._series_keys and chunk.height:
            spans = chunk.group_by(self._series_keys).agg(
                pl.col("DATE").min().alias("first"), pl.col("DATE").max().alias("last"), pl.col("DATE").n_unique().alias("n")
            )
            # Folded into one row a series as the chunks pass: a list of every chunk's spans grew
            # by a row a series a chunk (150 chunks x 304,900 series in a whole-history unit at 10x M5).
            if self._spans is not None:
                spans = pl.concat([self._spans, spans]).group_by(self._series_keys).agg(pl.col("first").min(), pl.col("last").max(), pl.col("n").sum())
            self._spans = spans

    def _completeness(self) -> list[Violation]:
        """A day without rows, or a series without a row on some day, is a hole in the table.
        Weekly: a week day without rows, or a series without a row some week; a row on another
        day is refused (a weekly source's rows land on the week's day only)."""
        weekly = self.cadence.is_weekly
        period = "week" if weekly else "day"
        off = sorted(day for day in self._days if not self.cadence.holds(day))
        if off:
            examples = tuple({"DATE": str(d), "weekday": d.strftime("%A"), "rows": self.rows_per_day[d]} for d in off[:5])
            return [Violation(f"weekly rows fall on the week's day ({self.cadence.describe()})", "DATE", sum(self.rows_per_day[d] for d in off), examples)]
        missing = [day for day in self.cadence.days(self.start, self.end) if day not in self._days]
        if missing:
            return [Violation(f"every {period} of the window has rows", "DATE", len(missing), tuple({"missing DATE": str(d)} for d in missing[:5]))]
        if self._spans is None:
            return []
        # A series may start (a launch) or stop (a delisting) inside the window, but between its
        # first and last day it has a row every day (every week): a dropped row is a hole, not a zero.
        missed = f"{period}s missing"
        p = self.cadence.period_days
        spans = self._spans.with_columns(((pl.col("last") - pl.col("first")).dt.total_days() // p + 1 - pl.col("n")).alias(missed))
        holes = spans.filter(pl.col(missed) > 0).sort(self._series_keys)
        if not holes.height:
            return []
        examples = tuple(holes.head(5).select(*self._series_keys, pl.col("first").alias("first DATE"), pl.col("last").alias("last DATE"), missed).to_dicts())
        return [Violation(f"every series has a row on every {period} between its first and last", "DATE", int(holes[missed].sum()), examples)]


def check_results(window: WindowCheck, *, asset_key: dg.AssetKey | None = None, written: bool, version: int | None = None) -> Iterator[dg.AssetCheckResult]:
    """The run's result of every check of `window`: passed or failed with its violations."""
    days = (window.end - window.start).days
    for name, report in window.reports.items():
        metadata: dict = {"rows_checked": report.n_rows, "days_checked": f"[{window.start}, {window.end}): {days} day(s)", "written": written}
        if not report.passed:
            # Each broken rule with its column, how many rows break it and the first offenders.
            metadata |= {"offending_rows": report.n_failed_rows, "violations": dg.MetadataValue.md(report.to_markdown())}
        if version is not None:
            metadata["delta_version"] = version
        yield dg.AssetCheckResult(check_name=name, asset_key=asset_key, passed=report.passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)


def cadence_metadata(cadence: Cadence, start: dt.date, end: dt.date) -> dict:
    """For a weekly source, what a day partition holds by design: its week days carry the weeks'
    rows, every other day none (recorded as such, not filled)."""
    if not cadence.is_weekly:
        return {}
    week_days = cadence.days(start, end)
    return {
        "cadence": cadence.describe(),
        "week_days_in_window": len(week_days),
        "days_without_rows_by_design": (end - start).days - len(week_days),
    }


def rows_by_design_only(cadence: Cadence, start: dt.date, end: dt.date) -> bool:
    """Whether [start, end) holds no day that carries rows (a weekly source's other weekdays)."""
    return not cadence.days(start, end)


def without_rows_by_design(
    context: dg.AssetExecutionContext, table: str, cadence: Cadence, check_names: Sequence[str] = (), *, asset_key: dg.AssetKey | None = None
) -> Iterator[dg.AssetCheckResult | dg.MaterializeResult]:
    """The record of a window of a weekly source without a week day: materialized, with no rows
    by design and saying so; nothing is read or written and no row is invented. Its checks pass
    with nothing to check."""
    start, end = partition_dates(context)
    note = f"{table} [{start}, {end}): the source is {cadence.describe()}; this window has no week day, so it holds no rows and nothing is written"
    context.log.info(note)
    yield dg.MaterializeResult(asset_key=asset_key, metadata={"dagster/row_count": 0, "rows_written": 0, **cadence_metadata(cadence, start, end), "note": note})
    for name in check_names:
        yield dg.AssetCheckResult(check_name=name, asset_key=asset_key, passed=True, metadata={"rows_checked": 0, "note": note})


def materialization(window: WindowCheck, written: WriteSummary, *, asset_key: dg.AssetKey | None = None, extra: Mapping | None = None) -> dg.MaterializeResult:
    """The MaterializeResult of a committed window: rows, schema, Delta version, a preview."""
    preview = window.preview if window.preview is not None else pl.DataFrame()
    metadata: dict = {
        **cadence_metadata(window.cadence, window.start, window.end),
        **_row_counts(window, written.rows),
        "dagster/column_schema": _column_schema(preview),
        "delta_version": written.version,
        "table_uri": dg.MetadataValue.path(written.uri),
        "window": f"[{written.window_start}, {written.window_end})",
        "preview": dg.MetadataValue.md(frame_to_markdown(preview)),
        **(extra or {}),
    }
    return dg.MaterializeResult(asset_key=asset_key, metadata=metadata)


def _row_counts(window: WindowCheck, rows: int) -> dict:
    """Dagster copies a range run's metadata onto every partition of the range, so its row count
    must be true of each day: the rows of that day when every day of the window has the same
    number, else no `dagster/row_count` and the range of rows per day instead."""
    days = (window.end - window.start).days
    counts = [window.rows_per_day.get(window.start + dt.timedelta(days=i), 0) for i in range(days)]
    out: dict = {"rows_written": rows}
    if days == 1 or (counts and min(counts) == max(counts)):
        out["dagster/row_count"] = counts[0] if counts else rows
    elif counts:
        out["rows_per_day"] = f"{min(counts):,} to {max(counts):,} (this run's days differ; each day's rows: filter the table by DATE)"
    return out


def charts(context: dg.AssetExecutionContext, window: WindowCheck, describe, version: int, *, asset_key: dg.AssetKey | None = None):
    """The run's charts on one AssetObservation: metadata of the MaterializeResult is copied onto
    every partition's event, and a five-year backfill would store the same images 1,941 times.
    Yielded last, so they are the newest entry in the asset's event list."""
    found = describe(pl.concat(window.summaries)) if window.summaries and describe is not None else {}
    if found:
        yield dg.AssetObservation(
            asset_key=asset_key or context.asset_key,
            metadata={"run_window": f"[{window.start}, {window.end})", "delta_version": version, **found},
        )


def publish_window(
    context: dg.AssetExecutionContext,
    store: DeltaStore,
    table: str,
    chunks: Iterable[pl.DataFrame],
    checks: Sequence[ChunkCheck],
    *,
    summarize: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    describe: Callable[[pl.DataFrame], dict] | None = None,
    asset_key: dg.AssetKey | None = None,
    cadence: Cadence = DAILY,
) -> Iterator[dg.AssetCheckResult | dg.MaterializeResult | dg.AssetObservation]:
    """Write `chunks` as the run's window of `table`, gated by `checks`, streaming.

    `summarize` reduces each chunk to a small per-day frame; `describe` turns the concatenated
    summaries into charts, so a year at M5 scale is described without being held in memory.
    `cadence`: the days that carry rows (a weekly source's week days).
    """
    start, end = partition_dates(context)
    if rows_by_design_only(cadence, start, end):
        yield from without_rows_by_design(context, table, cadence, [c.name for c in checks], asset_key=asset_key)
        return
    window = WindowCheck(table, checks, start, end, summarize=summarize, log=context.log.info, cadence=cadence)
    try:
        written = store.replace_window(table, window.chunks(chunks), start, end)
    except ContractError as err:
        yield from check_results(window, asset_key=asset_key, written=False)
        raise dg.Failure(
            description=f"{table} [{start}, {end}) was not written; the stored table is unchanged.\n{err}",
            metadata={"table_version_kept": store.version(table) if store.exists(table) else -1},
            allow_retries=False,
        ) from err
    context.log.info(f"{table}: wrote {written.rows:,} rows for [{start}, {end}) as Delta version {written.version}")
    yield materialization(window, written, asset_key=asset_key)
    yield from check_results(window, asset_key=asset_key, written=True, version=written.version)
    yield from charts(context, window, describe, written.version, asset_key=asset_key)
