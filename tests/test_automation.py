"""Declarative automation: a new raw day flows into the training dataset on its own, but never
past a failed blocking contract; old partitions do not fan out."""

import datetime as dt

import dagster as dg

from demand_assets.definitions import ALL_ASSETS
from tests.conftest import SMALL, materialize_range, small_resources
from tests.test_assets import CorruptingSource

NOW = dt.datetime(2024, 3, 2, 1, 0, tzinfo=dt.UTC)  # the latest daily partition is 2024-03-01
# What the daily schedule's job selects: every raw domain (product_engagement records "not
# provided" for the synthetic source) and the ground truth.
RAW = ["country_demand", "channel_spend_response", "product_demand", "product_engagement", "product_demand_truth", "channel_response_truth"]


def _requested(result) -> dict[str, set[str]]:
    out = {}
    for key in (dg.AssetKey(a) for a in ("training_dataset", "demand_forecast", "forecast_accuracy")):
        partitions = result.get_requested_partitions(key)
        if partitions:
            out[key.to_user_string()] = set(partitions)
    return out


def test_a_new_raw_day_requests_the_training_dataset_only_when_contracts_pass(tmp_path):
    resources = small_resources(tmp_path / "delta")
    defs = dg.Definitions(assets=ALL_ASSETS, resources=resources)
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor):
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor, evaluation_time=NOW)

    first = tick(None)
    # History (a backfill): the latest partition's inputs are still missing, old days do not fan out.
    assert materialize_range(resources, "2024-01-31", "2024-02-29", instance=instance).success
    after_backfill = tick(first.cursor)
    assert _requested(after_backfill) == {}

    # The newest day of every raw domain arrives; before the sensor ticks, a correction of the
    # day's channel data is re-delivered and breaks its contract (nothing of it is written).
    bad = small_resources(tmp_path / "delta", source=CorruptingSource(**SMALL, corrupt_day="2024-03-01"))
    assert materialize_range(resources, "2024-03-01", "2024-03-01", selection=RAW, instance=instance).success
    assert not materialize_range(bad, "2024-03-01", "2024-03-01", selection=RAW, instance=instance).success
    blocked = tick(after_backfill.cursor)
    assert _requested(blocked) == {}  # every input is there, but a blocking check failed last

    # Fixed data: the contract passes again, so the day flows on.
    assert materialize_range(resources, "2024-03-01", "2024-03-01", selection=RAW, instance=instance).success
    flowing = tick(blocked.cursor)
    # Forecasts wait for a champion and accuracy for a forecast made 28 days earlier.
    assert _requested(flowing) == {"training_dataset": {"2024-03-01"}}
    assert _requested(tick(flowing.cursor)) == {}  # handled: not requested twice
