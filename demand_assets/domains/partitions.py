"""Dates are the partitions; countries, channels and products are columns."""

from __future__ import annotations

import os

import dagster as dg

__all__ = ["BACKFILL_POLICY", "daily_partitions", "lookback", "partition_start"]


def partition_start() -> str:
    """DEMAND_PARTITION_START (default 2023-01-01): the first day the UI offers to materialize."""
    return os.environ.get("DEMAND_PARTITION_START", "").strip() or "2023-01-01"


daily_partitions = dg.DailyPartitionsDefinition(start_date=partition_start())

# Range-aware assets: a backfill of any length runs as one run that reads and writes its whole
# window (chunked inside), instead of one run per day.
BACKFILL_POLICY = dg.BackfillPolicy.single_run()


def lookback(days: int) -> dg.TimeWindowPartitionMapping:
    """Map a window to itself plus `days` earlier days; days before the first partition are fine."""
    return dg.TimeWindowPartitionMapping(start_offset=-days, allow_nonexistent_upstream_partitions=True)
