"""A partition is materialized only if its rows exist (issue 17, point 2), through the backfill
the UI launches: GraphQL's launchPartitionBackfill builds a PartitionBackfill from the selected
assets and partition names (PartitionBackfill.from_asset_partitions), and the daemon's backfill
loop turns it into runs. Both are exercised here as Dagster runs them, on the code location
loaded from its module in a gRPC server, as `make ui` does.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.backfill import execute_backfill_iteration

from demand_assets.definitions import ALL_ASSETS, defs
from resources import DeltaStore, resources_from_env

pytestmark = pytest.mark.slow

RAW = ["country_demand", "channel_spend_response", "product_demand"]
HISTORY = ("2024-12-01", "2024-12-31")
SMALL_WORLD = {"DEMAND_COUNTRIES": "2", "DEMAND_PRODUCTS": "6", "DEMAND_CHANNELS": "2"}


@pytest.fixture
def instance(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMAND_HOME", str(tmp_path / "home"))
    for name, value in SMALL_WORLD.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(
        temp_dir=str(tmp_path / "dagster"),
        overrides={
            "run_launcher": {"module": "dagster._core.launcher.sync_in_memory_run_launcher", "class": "SyncInMemoryRunLauncher"},
            "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
        },
    ) as instance:
        yield instance


def _backfill(instance: dg.DagsterInstance, assets: list[str], days: list[str]) -> PartitionBackfill:
    """The UI's "Launch backfill" for `assets` x `days`, run to the end by the daemon's loop."""
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=f"bf{time.time_ns()}",
        asset_graph=defs.resolve_asset_graph(),
        partition_names=days,
        asset_selection=[dg.AssetKey(a) for a in assets],
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=None,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    target = ModuleTarget(module_name="demand_assets.definitions", attribute=None, working_directory=None, location_name="demand_assets")
    with create_test_daemon_workspace_context(target, instance) as context:
        for _ in range(30):
            list(execute_backfill_iteration(context, logging.getLogger("backfill")))
            current = instance.get_backfill(backfill.backfill_id)
            if current.status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING):
                return current
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    raise AssertionError(f"backfill {backfill.backfill_id} did not finish: {current.status}, runs {[(r.run_id[:8], r.status) for r in runs]}")


def _materialized(instance: dg.DagsterInstance, asset: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(asset)))


def test_a_one_day_backfill_marks_exactly_the_days_that_have_rows(instance):
    resources = resources_from_env(resolve=True)
    tags = {"dagster/asset_partition_range_start": HISTORY[0], "dagster/asset_partition_range_end": HISTORY[1]}
    assert dg.materialize(ALL_ASSETS, resources=resources, instance=instance, selection=[*RAW, "training_dataset"], tags=tags).success

    # The UI's backfill of one new day of the raw domains and the training dataset.
    done = _backfill(instance, [*RAW, "training_dataset"], ["2025-01-01"])
    assert done.status == BulkActionStatus.COMPLETED_SUCCESS
    assert sorted(done.asset_backfill_data.target_subset.get_partitions_subset(dg.AssetKey("training_dataset")).get_partition_keys()) == ["2025-01-01"]
    store = resources["store"]
    assert isinstance(store, DeltaStore)
    days_with_rows = {str(d) for d in store.scan("training_dataset").select("DATE").unique().collect()["DATE"].to_list()}
    assert _materialized(instance, "training_dataset") == days_with_rows
    assert "2025-01-01" in days_with_rows and "2025-01-02" not in days_with_rows
    event = instance.get_latest_materialization_event(dg.AssetKey("training_dataset"))
    assert event is not None and event.asset_materialization is not None
    day_rows = store.read_window("training_dataset", dt.date(2025, 1, 1), dt.date(2025, 1, 2)).height
    assert event.asset_materialization.metadata["dagster/row_count"].value == day_rows == 2 * 6

    # A day whose inputs are missing fails, naming the input days, and is not marked.
    failed = _backfill(instance, ["training_dataset"], ["2025-01-03"])
    assert failed.status in (BulkActionStatus.COMPLETED_FAILED, BulkActionStatus.FAILED)
    assert "2025-01-03" not in _materialized(instance, "training_dataset")
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": failed.backfill_id}))
    failure = next(e.dagster_event for r in runs for e in instance.all_logs(r.run_id) if e.dagster_event is not None and e.dagster_event.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "product_demand has no rows for" in message and "2025-01-02" in message and "2025-01-03" in message
    assert _materialized(instance, "training_dataset") == days_with_rows
