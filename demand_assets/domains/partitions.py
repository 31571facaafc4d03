"""Dates are the partitions; countries, channels and products are columns."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

__all__ = ["BACKFILL_POLICY", "DAILY_DOWNSTREAM", "RAW_FRESHNESS", "daily_partitions", "partition_start"]


def partition_start() -> str:
    """DEMAND_PARTITION_START (default 2023-01-01): the first day the UI offers to materialize."""
    return os.environ.get("DEMAND_PARTITION_START", "").strip() or "2023-01-01"


daily_partitions = dg.DailyPartitionsDefinition(start_date=partition_start())

# Range-aware assets: a backfill of any length runs as one run that reads and writes its whole
# window (chunked inside), instead of one run per day.
BACKFILL_POLICY = dg.BackfillPolicy.single_run()


# No look-back partition mappings: an asset that reads earlier days (training_dataset's lags,
# spend_roi's carry-over, forecast_accuracy's scored days) maps each day to the same day of its
# inputs and checks the earlier days when it runs (publishing.require_input_days). A look-back
# mapping made Dagster pull every later partition whose look-back a backfilled day falls in
# into the backfill: a one-day backfill of the raw domains and training_dataset became 29
# training_dataset partitions, 28 of them marked materialized without rows.


# Downstream daily assets follow their inputs on their own (once the automation sensor is on):
# when an input's newest partition is updated, the newest partition is requested, but only
# once every input is present and every blocking contract check on the inputs has passed.
# Eager conditions act on the latest time window only: a backfill of history does not fan out
# into automatic runs of old partitions; backfill the downstream assets with the same range
# (one single run) instead. See README, "Operating it".
DAILY_DOWNSTREAM = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()

# A raw domain is expected to receive a new day daily: warn after 26 hours without a
# materialization, fail after 48. (Dagster's freshness is judged on the newest materialization
# of any partition, so re-running an old day also counts as fresh.)
RAW_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=48), warn_window=dt.timedelta(hours=26))
