"""Every corrupted snapshot (tests/snapshot_corruptions.py, generated from a good export) is
refused by a named rule recorded as a failed check; every stored table keeps its version and
content; nothing downstream runs.

The good store holds January from the good snapshot (raw domains and the training dataset); each
variant re-materializes 2024-01-10..2024-01-20 (raw domains and training dataset) over a copy.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pytest
from polars.testing import assert_frame_equal

from demand_assets.sources.csv_snapshot import export_snapshot
from resources import DeltaStore, DemandSourceResource
from tests.conftest import materialize_range, small_resources
from tests.snapshot_corruptions import CORRUPTIONS, apply, ids

START, END = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
TABLES = ("country_demand", "channel_spend_response", "product_demand", "training_dataset")
SELECTION = [*TABLES[:3], "training_dataset"]


@pytest.fixture(scope="module")
def good(tmp_path_factory, small_source) -> tuple[Path, Path, dict]:
    """The good snapshot, a store loaded from it, and each table's version and content."""
    base = tmp_path_factory.mktemp("corruptions")
    snapshot = base / "snapshot"
    export_snapshot(small_source, START, END, snapshot)
    root = base / "delta"
    resources = small_resources(root, source=DemandSourceResource(kind="csv", csv_dir=str(snapshot)))
    assert materialize_range(resources, "2024-01-01", "2024-01-31", selection=SELECTION).success
    store = DeltaStore(root_uri=str(root))
    return snapshot, root, {t: (store.version(t), store.read_window(t, START, END)) for t in TABLES}


def test_there_are_at_least_sixty_variants_across_every_file():
    assert len(CORRUPTIONS) >= 60
    assert len({c.file for c in CORRUPTIONS}) == 3 and len(set(ids())) == len(CORRUPTIONS)


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=ids())
def test_a_corrupted_snapshot_is_refused_by_its_rule_and_changes_nothing(good, tmp_path, corruption):
    snapshot, root, before = good
    folder = apply(corruption, snapshot, tmp_path / "snapshot")
    store_root = tmp_path / "delta"
    shutil.copytree(root, store_root)
    resources = small_resources(store_root, source=DemandSourceResource(kind="csv", csv_dir=str(folder)))

    result = materialize_range(resources, "2024-01-10", "2024-01-20", selection=SELECTION)

    assert not result.success
    evaluations = {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    check = evaluations[corruption.check]
    assert check.passed is False
    assert corruption.rule in check.metadata["violations"].value, check.metadata["violations"].value
    assert result.get_asset_materialization_events() == []
    message = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.message
    assert "no table was changed" in message and all(f"- {table}: " in message for table in TABLES[:3])
    started = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}
    assert started == {"raw_domains"}  # the training dataset never ran
    store = DeltaStore(root_uri=str(store_root))
    for table in TABLES:
        version, frame = before[table]
        assert store.version(table) == version, table
        assert_frame_equal(store.read_window(table, START, END), frame)
