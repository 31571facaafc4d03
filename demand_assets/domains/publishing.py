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

from contracts import CONTRACTS, ContractContext, ContractError, ContractReport, SourceFormatError, Violation
from demand_assets.reporting import frame_to_markdown
from demand_assets.sources import Catalog
from resources import DeltaStore

__all__ = [
    "ChunkCheck",
    "blocking_check_spec",
    "not_provided",
    "not_provided_result",
    "contract_check",
    "contract_context",
    "partition_dates",
    "require_days",
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


def require_days(frame: pl.DataFrame, start: dt.date, end: dt.date, table: str) -> None:
    """Fail the run, naming the days, when `frame` (read from `table`) lacks a day of [start, end)."""
    missing = {start + dt.timedelta(days=i) for i in range((end - start).days)} - set(frame["DATE"].unique().to_list())
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
) -> Iterator[dg.AssetCheckResult | dg.MaterializeResult | dg.AssetObservation]:
    """Write `chunks` as the run's window of `table`, gated by `checks`.

    `summarize` reduces each chunk to a small per-day frame; `describe` turns the concatenated
    summaries into charts, so a year at M5 scale is described without being held in memory.
    Charts go on one AssetObservation per run: metadata of the MaterializeResult is copied onto
    every partition's event, and a five-year backfill would store the same images 1,941 times.
    """
    start, end = partition_dates(context)
    reports = {c.name: ContractReport(c.name, 0) for c in checks}
    summaries: list[pl.DataFrame] = []
    first_rows: list[pl.DataFrame] = []

    days_seen: set[dt.date] = set()

    def produced() -> Iterator[pl.DataFrame]:
        # A source that cannot read its file into the table's columns, or leaves a day of the
        # window without rows, breaks the table's contract (the first check): recorded like any
        # other violation, and raised before the commit, so nothing is written.
        try:
            for chunk in chunks:
                days_seen.update(chunk["DATE"].unique().to_list())
                yield chunk
        except SourceFormatError as err:
            if not checks:
                raise
            _record(checks[0].name, err.violations)
            raise ContractError(list(reports.values())) from err
        missing = [start + dt.timedelta(days=i) for i in range((end - start).days) if start + dt.timedelta(days=i) not in days_seen]
        if missing and checks and days_seen:
            examples = tuple({"missing DATE": str(day)} for day in missing[:5])
            _record(checks[0].name, [Violation("every day of the window has rows", "DATE", len(missing), examples)])
            raise ContractError(list(reports.values()))

    def _record(check: str, violations) -> None:
        reports[check] = reports[check].merge(ContractReport(check, 0, tuple(violations)))

    def validated() -> Iterator[pl.DataFrame]:
        for i, chunk in enumerate(produced(), start=1):
            for check in checks:
                reports[check.name] = reports[check.name].merge(check.run(chunk))
            if any(not r.passed for r in reports.values()):
                raise ContractError(list(reports.values()))
            if summarize is not None:
                summaries.append(summarize(chunk))
            if not first_rows:
                first_rows.append(chunk.head(10))
            if chunk.height:
                context.log.info(f"{table}: chunk {i} ({chunk.height:,} rows, {chunk['DATE'].min()}..{chunk['DATE'].max()}) passed {len(checks)} check(s)")
            yield chunk

    try:
        written = store.replace_window(table, validated(), start, end)
    except ContractError as err:
        for name, report in reports.items():
            yield dg.AssetCheckResult(
                check_name=name,
                asset_key=asset_key,
                passed=report.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "rows_checked": report.n_rows,
                    "offending_rows": report.n_failed_rows,
                    "violations": dg.MetadataValue.md(report.to_markdown()),
                    "written": False,
                },
            )
        raise dg.Failure(
            description=f"{table} [{start}, {end}) was not written; the stored table is unchanged.\n{err}",
            metadata={"table_version_kept": store.version(table) if store.exists(table) else -1},
            allow_retries=False,
        ) from err

    metadata: dict = {
        "dagster/row_count": written.rows,
        "dagster/column_schema": _column_schema(first_rows[0]),
        "delta_version": written.version,
        "table_uri": dg.MetadataValue.path(written.uri),
        "window": f"[{start}, {end})",
        "preview": dg.MetadataValue.md(frame_to_markdown(first_rows[0])),
    }
    context.log.info(f"{table}: wrote {written.rows:,} rows for [{start}, {end}) as Delta version {written.version}")
    yield dg.MaterializeResult(asset_key=asset_key, metadata=metadata)
    for name, report in reports.items():
        yield dg.AssetCheckResult(
            check_name=name,
            asset_key=asset_key,
            passed=True,
            metadata={"rows_checked": report.n_rows, "delta_version": written.version},
        )
    # Last, so the run's charts are the newest entry in the asset's event list.
    charts = describe(pl.concat(summaries)) if summaries and describe is not None else {}
    if charts:
        yield dg.AssetObservation(
            asset_key=asset_key or context.asset_key,
            metadata={"run_window": f"[{start}, {end})", "delta_version": written.version, **charts},
        )
