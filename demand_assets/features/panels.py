"""Panel helpers shared by the sources and the service."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

__all__ = ["zero_fill"]


def zero_fill(frame: pl.DataFrame, keys: Sequence[str], time: str, values: Sequence[str], interval: str = "1d") -> pl.DataFrame:
    """Every `interval` between each series' first and last `time`, with `values` zero where the
    series had no row: a period without a sale sold nothing."""
    spans = frame.group_by(keys).agg(pl.col(time).min().alias("_FIRST"), pl.col(time).max().alias("_LAST"))
    grid = spans.with_columns(pl.date_ranges("_FIRST", "_LAST", interval=interval).alias(time)).explode(time).drop("_FIRST", "_LAST")
    return grid.join(frame.select(*keys, time, *values), on=[*keys, time], how="left").with_columns(pl.col(v).fill_null(0) for v in values).sort(*keys, time)
