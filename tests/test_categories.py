"""Known countries, channels and products come from the source's declared catalogue and the store,
never from the snapshot being checked: a new one is refused by name, or admitted by the explicit
setting contract_settings.new_categories = "admit", and reported either way."""

from __future__ import annotations

import datetime as dt
import shutil

import polars as pl
import pytest

from demand_assets.sources.csv_snapshot import export_snapshot
from resources import ContractSettings, DeltaStore, DemandSourceResource
from tests.conftest import materialize_range, small_resources

pytestmark = pytest.mark.slow

START, END = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
PRODUCT_FILE, CHANNEL_FILE = "demand_by_product_daily.csv", "demand_spend_by_channel_daily.csv"


@pytest.fixture(scope="module")
def good(tmp_path_factory, small_source):
    folder = tmp_path_factory.mktemp("good") / "snapshot"
    export_snapshot(small_source, START, END, folder)
    return folder


def _loaded_store(good, tmp_path):
    """January 1-20 loaded from the good snapshot."""
    resources = small_resources(tmp_path / "delta", source=DemandSourceResource(kind="csv", csv_dir=str(good)))
    assert materialize_range(resources, "2024-01-01", "2024-01-20").success
    return tmp_path / "delta"


def _with_new_series(good, tmp_path, file: str, column: str, value: str, zero: dict) -> DemandSourceResource:
    """The snapshot plus a whole new series (every day, every country) that sells nothing, so
    every other rule still holds."""
    folder = tmp_path / "snapshot"
    shutil.copytree(good, folder)
    frame = pl.read_csv(folder / file, infer_schema=False)
    first = frame.filter(pl.col(column) == frame[column][0])
    new = first.with_columns(pl.lit(value).alias(column), *(pl.lit(v).alias(c) for c, v in zero.items()))
    pl.concat([frame, new]).write_csv(folder / file)
    return DemandSourceResource(kind="csv", csv_dir=str(folder))


def _new_categories(result) -> dict:
    found = {}
    for event in result.get_asset_materialization_events():
        value = event.materialization.metadata.get("new_categories")
        if value is not None:
            found[event.asset_key.to_user_string()] = value.value
    return found


def _checks(result) -> dict:
    return {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def test_a_new_product_is_refused_by_name_unless_admitted_and_reported_either_way(good, tmp_path):
    root = _loaded_store(good, tmp_path)
    source = _with_new_series(good, tmp_path, PRODUCT_FILE, "PRODUCT", "P_NEW", {"PRODUCT_DEMAND": "0", "PROMO": "false", "IN_STOCK": "true"})

    refused = materialize_range(small_resources(root, source=source), "2024-01-21", "2024-01-31")
    assert not refused.success
    violations = _checks(refused)["product_demand_contract"].metadata["violations"].value
    assert "known_product" in violations and "P_NEW" in violations
    assert "P_NEW" not in DeltaStore(root_uri=str(root)).read_all("product_demand")["PRODUCT"].to_list()

    admit = {**small_resources(root, source=source), "contract_settings": ContractSettings(new_categories="admit")}
    admitted = materialize_range(admit, "2024-01-21", "2024-01-31")
    assert admitted.success
    assert _new_categories(admitted)["product_demand"] == {"PRODUCT": ["P_NEW"]}
    stored = DeltaStore(root_uri=str(root)).read_window("product_demand", dt.date(2024, 1, 21), END)
    assert stored.filter(pl.col("PRODUCT") == "P_NEW").height == 2 * 11  # 2 countries x 11 days

    # Once stored it is known: the next window needs no setting.
    again = materialize_range(small_resources(root, source=source), "2024-01-25", "2024-01-31")
    assert again.success and _new_categories(again) == {}


def test_a_new_channel_fails_in_its_own_contract_or_adds_its_spend_features_when_admitted(good, tmp_path):
    root = _loaded_store(good, tmp_path)
    source = _with_new_series(good, tmp_path, CHANNEL_FILE, "CHANNEL", "PODCAST", {"SPEND": "5.0", "CHANNEL_RESPONSE": "0.0"})

    refused = materialize_range(small_resources(root, source=source), "2024-01-21", "2024-01-31")
    assert not refused.success
    check = _checks(refused)["channel_spend_response_contract"]
    assert check.passed is False and "known_channel" in check.metadata["violations"].value and "PODCAST" in check.metadata["violations"].value
    errors = " ".join(e.event_specific_data.error.message for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
    assert "SchemaMismatch" not in errors

    admit = {**small_resources(root, source=source), "contract_settings": ContractSettings(new_categories="admit")}
    admitted = materialize_range(admit, "2024-01-21", "2024-01-31")
    assert admitted.success
    assert _new_categories(admitted)["channel_spend_response"] == {"CHANNEL": ["PODCAST"]}
    training = DeltaStore(root_uri=str(root)).read_window("training_dataset", START, END)
    assert "SPEND_PODCAST" in training.columns  # the table's columns follow the domains
    assert training.filter(pl.col("DATE") < dt.date(2024, 1, 21))["SPEND_PODCAST"].null_count() == training.filter(pl.col("DATE") < dt.date(2024, 1, 21)).height
    assert (training.filter(pl.col("DATE") >= dt.date(2024, 1, 21))["SPEND_PODCAST"] == 5.0).all()


def test_the_first_load_of_a_snapshot_reports_the_categories_it_first_sees(good, tmp_path):
    """A snapshot's countries and channels are declared nowhere (its product_catalog.csv declares
    the products): on a fresh store they are admitted and reported as first seen."""
    resources = small_resources(tmp_path / "delta", source=DemandSourceResource(kind="csv", csv_dir=str(good)))
    result = materialize_range(resources, "2024-01-01", "2024-01-10")
    assert result.success
    assert _new_categories(result)["country_demand"] == {"COUNTRY": ["DE", "US"], "CHANNEL": ["DISPLAY", "SEARCH", "SOCIAL"]}
