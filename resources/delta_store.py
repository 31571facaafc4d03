"""Delta Lake tables under one root: a local folder by default, object storage by configuration.

Writes replace a date window in a single Delta transaction. Chunks stream through validation
into that transaction, so a broken chunk (or any failure) aborts the commit: readers keep the
last good version and nothing partial becomes visible.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from pydantic import Field

from contracts.registry import Table, table_spec
from demand_assets.sources.base import iter_date_chunks
from resources.settings import demand_home
from resources.staging import StagedTable, StagingArea

__all__ = ["DeltaStore", "MissingTableError", "WriteSummary"]

_REGISTERED = frozenset(t.value for t in Table)


class MissingTableError(LookupError):
    """A table was read before anything materialized it."""


@dataclass(frozen=True)
class WriteSummary:
    table: str
    uri: str
    version: int
    rows: int
    window_start: dt.date
    window_end: dt.date


class DeltaStore(dg.ConfigurableResource):
    """Delta Lake tables, one folder (or object-store prefix) per table under `root_uri`."""

    root_uri: str | None = Field(
        default=None,
        description="Root for all tables, e.g. s3://bucket/demand. Default: $DEMAND_HOME/delta.",
    )
    storage_options: dict[str, str] = Field(default_factory=dict, description="deltalake storage options (credentials, endpoint) for object stores.")

    def uri(self, table: str) -> str:
        """Where `table` lives; only tables of the registry (`contracts.registry.Table`) exist."""
        table_spec(table)
        root = self.root_uri or str(demand_home() / "delta")
        return f"{root.rstrip('/')}/{table}"

    def exists(self, table: str) -> bool:
        """Whether `table` has been written; never true for a name outside the registry, since
        nothing can be written under one."""
        if table not in _REGISTERED:
            return False
        return DeltaTable.is_deltatable(self.uri(table), storage_options=self.storage_options or None)

    def version(self, table: str) -> int | None:
        if not self.exists(table):
            return None
        return DeltaTable(self.uri(table), storage_options=self.storage_options or None).version()

    def scan(self, table: str, *, version: int | None = None) -> pl.LazyFrame:
        """The table (as of Delta `version`, default the newest), lazily."""
        if not self.exists(table):
            raise MissingTableError(f"table '{table}' has not been materialized yet (looked in {self.uri(table)})")
        return pl.scan_delta(self.uri(table), version=version, storage_options=self.storage_options or None)

    def read_window(
        self,
        table: str,
        start: dt.date,
        end: dt.date,
        columns: list[str] | None = None,
        *,
        chunk_days: int = 64,
        version: int | None = None,
        where: pl.Expr | None = None,
    ) -> pl.DataFrame:
        """Rows with start <= DATE < end (and `where`, pushed down to the scan), as of Delta
        `version` (default the newest), sorted by DATE then the table's other key columns (from
        the table registry, `contracts.registry`).

        Read and sorted `chunk_days` at a time: a multi-key sort takes about twice its input in
        scratch memory, which for two years of M5 (22 M rows) would be ~6 GB above the frame.
        Chunks are in date order, so their concatenation is sorted.
        """
        order = list(dict.fromkeys(("DATE", *table_spec(table).keys)))
        lf = self.scan(table, version=version)  # one snapshot of the table for every chunk
        if where is not None:
            lf = lf.filter(where)
        parts = []
        for lo, hi in list(iter_date_chunks(start, end, chunk_days)) or [(start, end)]:
            chunk = lf.filter(pl.col("DATE").is_between(lo, hi, closed="left"))
            frame = (chunk.select(columns) if columns else chunk).collect()
            parts.append(frame.sort([c for c in order if c in frame.columns]))
        return pl.concat(parts, rechunk=False)

    def overwrite(self, table: str, frame: pl.DataFrame, *, slice_rows: int = 1_000_000) -> WriteSummary:
        """Replace a whole (unpartitioned) table in one transaction.

        The frame goes to the writer `slice_rows` at a time, each slice turned into Arrow only
        when the writer asks for it: Arrow's oldest string layout is a copy of a polars string
        column, and for the backtest's forecasts at M5 size (20 M rows) a copy of the whole frame
        at once was 1.9 GB.
        """
        if frame.is_empty():
            raise ValueError(f"refusing to overwrite '{table}' with no rows")
        uri = self.uri(table)
        stream = _ArrowStream(iter(frame.iter_slices(n_rows=slice_rows)))
        first = stream.first()
        assert first is not None  # the frame has rows
        data = pa.RecordBatchReader.from_batches(first.schema, stream.batches(first))
        write_deltalake(uri, data, mode="overwrite", schema_mode="overwrite", storage_options=self.storage_options or None)
        version = DeltaTable(uri, storage_options=self.storage_options or None).version()
        dates = frame["DATE"] if "DATE" in frame.columns else None
        lo = dates.min() if dates is not None else dt.date.min
        hi = dates.max() if dates is not None else dt.date.min
        return WriteSummary(table, uri, version, frame.height, lo, hi)

    def read_all(self, table: str) -> pl.DataFrame:
        return self.scan(table).collect()

    def last_date(self, table: str) -> dt.date:
        """The newest DATE stored in `table`."""
        value = self.scan(table).select(pl.col("DATE").max()).collect().item()
        if value is None:
            raise MissingTableError(f"table '{table}' is empty")
        return value

    def staging(self) -> StagingArea:
        """A private local folder for validated chunks awaiting their commit (see resources/staging.py):
        `_staging` under a local root (never a table name), $DEMAND_HOME/staging for object storage."""
        root = self.root_uri or str(demand_home() / "delta")
        local = "://" not in root or root.startswith("file://")
        return StagingArea(Path(root.removeprefix("file://")) / "_staging" if local else demand_home() / "staging")

    def promote(self, staged: StagedTable, start: dt.date, end: dt.date, *, attempts: int = 5) -> WriteSummary:
        """Commit a staged table as the window [start, end). A concurrent writer to the same
        table (a process outside Dagster's pool) makes the commit conflict: it is retried from the
        staged parts, which are still on disk, up to `attempts` times."""
        for attempt in range(1, attempts + 1):
            try:
                return self.replace_window(staged.table, staged.chunks(), start, end)
            except CommitFailedError:
                if attempt == attempts:
                    raise
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    def replace_window(self, table: str, chunks: Iterable[pl.DataFrame], start: dt.date, end: dt.date) -> WriteSummary:
        """Replace [start, end) of `table` with `chunks`, atomically.

        An exception raised while producing a chunk (a broken contract, a source error) is
        re-raised as is, and the table stays at its previous version.
        """
        stream = _ArrowStream(_produced_in_background(chunks))
        first = stream.first()
        if first is None:
            raise ValueError(f"no rows to write to '{table}' for [{start}, {end}): the source returned nothing")
        uri = self.uri(table)
        reader = pa.RecordBatchReader.from_batches(first.schema, stream.batches(first))
        options = self.storage_options or None
        try:
            if self.exists(table):
                predicate = f"DATE >= '{start.isoformat()}' AND DATE < '{end.isoformat()}'"
                evolving = table_spec(table).evolving_columns
                write_deltalake(uri, reader, mode="overwrite", predicate=predicate, schema_mode="merge" if evolving else None, storage_options=options)
            else:
                write_deltalake(uri, reader, mode="error", storage_options=options)
        except (DeltaError, OSError, pa.ArrowException):
            if stream.error is not None:
                raise stream.error from None
            raise
        if stream.error is not None:
            raise stream.error
        version = DeltaTable(uri, storage_options=options).version()
        return WriteSummary(table, uri, version, stream.rows, start, end)


def _produced_in_background(chunks: Iterable[pl.DataFrame], depth: int = 1) -> Iterator[pl.DataFrame]:
    """Iterate `chunks` on a worker thread, `depth` chunks ahead of the writer.

    The Delta writer pulls batches from inside its async runtime; producing a chunk may itself
    read Delta tables (the training dataset reads its look-back), which must not happen on that
    runtime's thread. The worker also overlaps computing the next chunk with writing this one.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(("chunk", chunk)):
                    return
            put(("done", None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer and re-raised there
            put(("error", err))

    worker = threading.Thread(target=produce, name="delta-chunk-producer", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "chunk":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()


class _ArrowStream:
    """Polars chunks as Arrow batches, remembering an exception raised upstream.

    The writer sees a failing chunk only as an Arrow stream error; keeping the original lets the
    caller re-raise the real reason (a ContractError with its rows) instead.
    """

    def __init__(self, chunks: Iterator[pl.DataFrame]) -> None:
        self._chunks = chunks
        self.error: BaseException | None = None
        self.rows = 0

    def _next_table(self) -> pa.Table | None:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            return None
        except Exception as err:  # noqa: BLE001 - stored and re-raised by replace_window
            self.error = err
            raise
        self.rows += chunk.height
        return chunk.to_arrow(compat_level=pl.CompatLevel.oldest())

    def first(self) -> pa.Table | None:
        table = self._next_table()
        while table is not None and table.num_rows == 0:
            table = self._next_table()
        return table

    def batches(self, first: pa.Table) -> Iterator[pa.RecordBatch]:
        schema = first.schema
        yield from first.to_batches()
        while (table := self._next_table()) is not None:
            if table.schema != schema:
                table = table.cast(schema)
            yield from table.to_batches()
