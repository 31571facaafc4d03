"""Snapshots without the channel file or the country file, as the README promises: on a fresh
store and on one that already holds data, the missing domain is recorded as not provided, the
reconciliation checks what it still can, and the training dataset's columns follow the domains."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from contracts import RECONCILIATION_RULE
from demand_assets.sources.csv_snapshot import export_snapshot
from resources import DeltaStore, DemandSourceResource
from tests.conftest import materialize_range, small_resources

pytestmark = pytest.mark.slow

JAN1, FEB1, MAR1 = dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 3, 1)
FILES = {"channel": "demand_spend_by_channel_daily.csv", "country": "demand_spend_country_daily.csv"}


def _snapshot(small_source, path, start, end, drop: str | None):
    export_snapshot(small_source, start, end, path)
    if drop:
        (path / FILES[drop]).unlink()
    return DemandSourceResource(kind="csv", csv_dir=str(path))


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


@pytest.mark.parametrize("drop", ["channel", "country"])
@pytest.mark.parametrize("store_state", ["fresh", "holding data"])
def test_a_snapshot_without_a_domain_file_runs_end_to_end(tmp_path, small_source, drop, store_state):
    root = tmp_path / "delta"
    if store_state == "holding data":  # a complete snapshot of January first
        full = _snapshot(small_source, tmp_path / "full", JAN1, FEB1, None)
        assert materialize_range(small_resources(root, source=full), "2024-01-01", "2024-01-31").success
    store = DeltaStore(root_uri=str(root))
    versions = {t: store.version(t) for t in ("country_demand", "channel_spend_response")}

    partial = _snapshot(small_source, tmp_path / "partial", JAN1, MAR1, drop)
    result = materialize_range(small_resources(root, source=partial), "2024-02-01", "2024-02-29")
    assert result.success

    missing = "channel_spend_response" if drop == "channel" else "country_demand"
    meta = _materializations(result)
    assert meta[missing]["provided_by_source"].value is False
    assert store.version(missing) == versions[missing]  # an earlier source's table is left as it was, unread
    training = store.read_window("training_dataset", FEB1, MAR1)
    assert training["DATE"].n_unique() == 29
    spend = [c for c in training.columns if c.startswith("SPEND_")]
    if drop == "channel":
        assert not spend or training.select(spend).null_count().row(0) == (training.height,) * len(spend)
        assert "ECONOMIC_INDEX" in training.columns and training["ECONOMIC_INDEX"].null_count() == 0
    else:
        same_day = [c for c in spend if "_LAG_" not in c]  # lags reach before the window loaded
        assert same_day and training.select(same_day).null_count().sum_horizontal().item() == 0
        assert "ECONOMIC_INDEX" not in training.columns or training["ECONOMIC_INDEX"].null_count() == training.height

    reconciliation = _checks(result)[RECONCILIATION_RULE]
    assert reconciliation.passed
    if drop == "country":
        assert "nothing to reconcile" in reconciliation.metadata["note"].value
    else:  # only the floor: sales reach BASELINE_DEMAND on in-stock days, media sales come on top
        assert reconciliation.metadata["rows_checked"].value == store.read_window("product_demand", FEB1, MAR1).height
