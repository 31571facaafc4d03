"""Validated rows parked on local disk until every table of a run has passed its checks.

A run that writes several tables (the raw domains of one snapshot) validates all of them first
and commits none until all have passed: one run, one outcome. The validated chunks wait here as
Parquet parts in a private folder under $DEMAND_HOME/staging (the step's local disk, also when
the tables live in object storage), and are streamed into the Delta commits from there, so a
large window is never held in memory. The folder is removed when the run's step ends, whatever
the outcome; a folder left by a killed process is only disk, never visible to readers.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

__all__ = ["StagedTable", "StagingArea"]


@dataclass
class StagedTable:
    """The validated chunks of one table, in order, as Parquet parts."""

    table: str
    folder: Path
    parts: list[Path] = field(default_factory=list)
    rows: int = 0

    def add(self, chunk: pl.DataFrame) -> None:
        if not chunk.height:
            return
        path = self.folder / f"part-{len(self.parts):05d}.parquet"
        chunk.write_parquet(path)
        self.parts.append(path)
        self.rows += chunk.height

    def chunks(self) -> Iterator[pl.DataFrame]:
        """The staged chunks again, one at a time (re-iterable: a retried commit reads them anew)."""
        for path in self.parts:
            yield pl.read_parquet(path)

    def frame(self) -> pl.DataFrame:
        """Everything staged, for small tables a later check reads whole (country totals)."""
        return pl.concat(list(self.chunks())) if self.parts else pl.DataFrame()


class StagingArea:
    """A private folder for one run step's staged tables; a context manager that removes it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for attempt in range(3):  # another run may remove the (then empty) root in between
            root.mkdir(parents=True, exist_ok=True)
            try:
                self.folder = Path(tempfile.mkdtemp(prefix="run-", dir=root))
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise

    def stage(self, table: str, chunks: Iterable[pl.DataFrame]) -> StagedTable:
        """Write `chunks` (already validated, or validated as they are pulled) to local parts."""
        folder = self.folder / table
        folder.mkdir()
        staged = StagedTable(table, folder)
        for chunk in chunks:
            staged.add(chunk)
        return staged

    def __enter__(self) -> StagingArea:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.root.rmdir()  # only when no other run is staging: nothing is left beside the tables
        except OSError:
            pass
