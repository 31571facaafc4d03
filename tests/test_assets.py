"""The assets through Dagster: storage round-trips, idempotence, blocking contracts."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from demand_assets.definitions import defs
from demand_assets.domains.raw import CHANNEL_SPEND_RESPONSE_CONTRACT, raw_domains
from demand_assets.sources import DemandSource, Domain
from demand_assets.sources.csv_snapshot import CsvSnapshotSource, export_snapshot
from resources import ContractSettings, DeltaStore, DemandSourceResource
from tests.conftest import SMALL, materialize_range, small_resources

TABLES = ["country_demand", "channel_spend_response", "product_demand", "training_dataset"]
JAN1, MAR1 = dt.date(2024, 1, 1), dt.date(2024, 3, 1)


def test_definitions_load_with_daily_partitions_and_blocking_checks():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    unpartitioned = {
        "model_backtest",
        "champion_model",
        "sku_forecast_models",
        "spend_response_model",
        "budget_allocation",
        "forecast_error_cost",
        "instock_value",
        "spend_scenario",
        "next_event_model",
    }
    expected = (
        set(TABLES)
        | unpartitioned
        | {"product_demand_truth", "channel_response_truth", "product_engagement", "demand_forecast", "forecast_accuracy", "spend_roi", "purchase_intent"}
    )
    assert expected == keys
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if key.to_user_string() in unpartitioned:
            assert node.partitions_def is None  # they read an explicit window of their inputs
            continue
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    checks = {c.name: c for c in graph.asset_check_keys}
    assert "product_demand_reconciles_with_country_total" in checks and "training_dataset_lag_integrity" in checks
    drift = {"feature_drift", "target_drift", "product_mix_drift", "accuracy_drift", "next_event_drift"}
    assert drift <= set(checks)
    # Contracts block downstream assets; drift only warns (drifted data is still valid data).
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).blocking == (key.name not in drift), key.name


def test_daily_automation_follows_contracts_and_raw_domains_have_freshness_policies():
    graph = defs.resolve_asset_graph()
    for name in ("training_dataset", "demand_forecast", "forecast_accuracy", "spend_roi"):
        condition = graph.get(dg.AssetKey(name)).automation_condition
        assert condition is not None and "all_deps_blocking_checks_passed" in str(condition.get_label() or condition)
    for name in ("country_demand", "channel_spend_response", "product_demand"):
        assert graph.get(dg.AssetKey(name)).freshness_policy is not None
    schedule = defs.resolve_schedule_def("daily_raw_domains_schedule")
    assert schedule.cron_schedule == "0 1 * * *"
    weekly = defs.resolve_schedule_def("weekly_marketing_schedule")
    assert weekly.cron_schedule == "0 3 * * 1"
    assert {k.to_user_string() for k in defs.resolve_job_def("weekly_marketing").asset_layer.executable_asset_keys} == {
        "spend_response_model",
        "budget_allocation",
    }
    (target,) = defs.resolve_sensor_def("retraining_sensor").targets
    job = defs.resolve_job_def(target.job_name)
    # each request selects its own: the demand models together, or next_event_model on its own drift
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {"model_backtest", "champion_model", "next_event_model"}


def test_whole_graph_round_trips_through_delta(materialized_store):
    n_series = SMALL["n_countries"] * SMALL["n_products"]
    days = (MAR1 - JAN1).days
    expected_rows = {
        "country_demand": days * SMALL["n_countries"],
        "channel_spend_response": days * SMALL["n_countries"] * SMALL["n_channels"],
        "product_demand": days * n_series,
        "training_dataset": days * n_series,
        "product_demand_truth": days * n_series,
    }
    for table, rows in expected_rows.items():
        frame = materialized_store.read_window(table, JAN1, MAR1)
        assert frame.height == rows, table
        keys = [c for c in ("DATE", "COUNTRY", "CHANNEL", "PRODUCT") if c in frame.columns]
        assert not frame.select(keys).is_duplicated().any(), table
    training = materialized_store.read_window("training_dataset", JAN1, MAR1)
    # The first day has no stored history: lags are null, never invented.
    assert training.filter(pl.col("DATE") == JAN1)["DEMAND_LAG_1"].null_count() == n_series
    assert training.filter(pl.col("DATE") == dt.date(2024, 2, 15))["DEMAND_LAG_28"].null_count() == 0


def test_rematerializing_a_window_gives_the_same_rows(tmp_path):
    resources = small_resources(tmp_path / "delta")
    assert materialize_range(resources, "2024-01-01", "2024-01-20").success
    store: DeltaStore = resources["store"]
    before = {t: store.read_window(t, JAN1, MAR1) for t in TABLES}
    versions = {t: store.version(t) for t in TABLES}
    assert materialize_range(resources, "2024-01-05", "2024-01-12").success
    for table in TABLES:
        assert store.version(table) == versions[table] + 1, table
        assert_frame_equal(store.read_window(table, JAN1, MAR1), before[table])


def test_a_backfill_in_many_small_chunks_equals_one_chunk(tmp_path, materialized_store, monkeypatch):
    """Chunks after the first are pulled by the Delta writer while it runs; producing them (and
    the training dataset's look-back reads) must work there and give the same tables."""
    import demand_assets.domains.training as training

    monkeypatch.setattr(training, "CHUNK_ROWS", 1)  # 7-day training chunks
    resources = small_resources(tmp_path / "delta", source=DemandSourceResource(**SMALL, chunk_rows=100))
    assert materialize_range(resources, "2024-01-01", "2024-02-29").success
    for table in TABLES:
        assert_frame_equal(resources["store"].read_window(table, JAN1, MAR1), materialized_store.read_window(table, JAN1, MAR1))


def test_a_day_materialized_alone_equals_the_day_inside_the_backfill(tmp_path, materialized_store):
    resources = small_resources(tmp_path / "delta")
    # Materialize the raw history first, then the training dataset for one day on its own.
    assert materialize_range(resources, "2024-01-01", "2024-02-20").success
    assert materialize_range(resources, "2024-02-20", "2024-02-20", selection=["training_dataset"]).success
    day = dt.date(2024, 2, 20)
    alone = resources["store"].read_window("training_dataset", day, day + dt.timedelta(days=1))
    assert_frame_equal(alone, materialized_store.read_window("training_dataset", day, day + dt.timedelta(days=1)))


class _NegativeSpendOn(DemandSource):
    """Wraps a real source and breaks the spend contract on one day."""

    name = "corrupting"

    def __init__(self, inner: DemandSource, day: dt.date) -> None:
        self.inner, self.day = inner, day

    @property
    def provides(self):
        return self.inner.provides

    def catalog(self):
        return self.inner.catalog()

    def _read(self, domain, start, end):
        for chunk in self.inner.read(domain, start, end):
            if domain is Domain.CHANNEL_SPEND_RESPONSE:
                chunk = chunk.with_columns(
                    pl.when((pl.col("DATE") == self.day) & (pl.col("COUNTRY") == "US")).then(-100.0).otherwise(pl.col("SPEND")).alias("SPEND")
                )
            yield chunk


class CorruptingSource(DemandSourceResource):
    corrupt_day: str = "2024-01-10"

    def open(self) -> DemandSource:
        return _NegativeSpendOn(super().open(), dt.date.fromisoformat(self.corrupt_day))


def test_a_broken_contract_writes_nothing_keeps_the_table_and_blocks_downstream(tmp_path):
    good = small_resources(tmp_path / "delta")
    assert materialize_range(good, "2024-01-01", "2024-01-20").success
    store: DeltaStore = good["store"]
    before = {t: (store.version(t), store.read_window(t, JAN1, MAR1)) for t in TABLES}

    bad = small_resources(tmp_path / "delta", source=CorruptingSource(**SMALL))
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(bad, "2024-01-05", "2024-01-15", instance=instance)
    assert not result.success

    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "greater_than_or_equal_to(0)" in message and "SPEND" in message
    assert "DATE=2024-01-10" in message and "COUNTRY=US" in message
    assert "no table was changed" in message
    assert "- channel_spend_response: REFUSED, not written; stored version" in message
    assert "- country_demand: passed its checks, not written; stored version" in message
    assert "- product_demand: passed its checks, not written; stored version" in message

    evaluations = {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert evaluations[CHANNEL_SPEND_RESPONSE_CONTRACT].passed is False

    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "channel_spend_response" not in materialized
    assert "product_demand" not in materialized and "training_dataset" not in materialized
    assert "country_demand" not in materialized  # one run, one outcome: the valid domain is not written either
    for table in TABLES:
        version, frame = before[table]
        assert store.version(table) == version, table
        assert_frame_equal(store.read_window(table, JAN1, MAR1), frame)


def test_synthetic_to_csv_snapshot_to_csv_source_gives_identical_assets(tmp_path, materialized_store, small_source):
    snapshot = tmp_path / "snapshot"
    export_snapshot(small_source, JAN1, MAR1, snapshot)
    csv = small_resources(tmp_path / "delta_csv", source=DemandSourceResource(kind="csv", csv_dir=str(snapshot)))
    result = materialize_range(csv, "2024-01-01", "2024-02-29")
    assert result.success
    store: DeltaStore = csv["store"]
    for table in TABLES:
        assert_frame_equal(store.read_window(table, JAN1, MAR1), materialized_store.read_window(table, JAN1, MAR1))
    # The CSV source has no ground truth: those assets are skipped, not failed.
    assert not store.exists("product_demand_truth")
    assert set(CsvSnapshotSource(snapshot).provides) == {Domain.COUNTRY_DEMAND, Domain.CHANNEL_SPEND_RESPONSE, Domain.PRODUCT_DEMAND}


def test_raw_domains_invoked_directly_with_a_partition_context(tmp_path):
    store = DeltaStore(root_uri=str(tmp_path / "delta"))
    context = dg.build_asset_context(partition_key="2024-03-05")
    events = list(raw_domains(context=context, source=DemandSourceResource(**SMALL), store=store, contract_settings=ContractSettings()))
    results = {e.asset_key.to_user_string(): e for e in events if isinstance(e, dg.MaterializeResult)}
    checks = {e.check_name: e for e in events if isinstance(e, dg.AssetCheckResult)}
    assert set(results) == {"country_demand", "channel_spend_response", "product_demand", "product_engagement"}
    assert results["product_engagement"].metadata["provided_by_source"] is False  # the synthetic world has no event log
    assert results["country_demand"].metadata["dagster/row_count"] == SMALL["n_countries"]
    assert results["country_demand"].metadata["window"] == "[2024-03-05, 2024-03-06)"
    assert all(c.passed for c in checks.values()) and len(checks) == 5
    assert checks["country_demand_contract"].metadata["rows_checked"].value == SMALL["n_countries"]
    stored = store.read_window("country_demand", dt.date(2024, 3, 5), dt.date(2024, 3, 6))
    assert stored["COUNTRY"].to_list() == ["DE", "US"]


def test_csv_source_needs_its_folder():
    with pytest.raises(ValueError, match="DEMAND_CSV_DIR"):
        DemandSourceResource(kind="csv").open()
    with pytest.raises(FileNotFoundError, match="demand_by_product_daily.csv"):
        DemandSourceResource(kind="csv", csv_dir="/nonexistent").open()


@pytest.mark.parametrize(
    ("file", "column", "value", "rule", "check"),
    [
        ("demand_spend_by_channel_daily.csv", "SPEND", "inf", "finite_number", CHANNEL_SPEND_RESPONSE_CONTRACT),
        ("demand_spend_by_channel_daily.csv", "CHANNEL_RESPONSE", "1e308", "at_most_1e+10", CHANNEL_SPEND_RESPONSE_CONTRACT),
        ("demand_by_product_daily.csv", "PRICE", "1e308", "at_most_1e+07", "product_demand_contract"),
    ],
)
def test_impossible_numbers_in_a_snapshot_are_refused_and_keep_the_store(tmp_path, small_source, file, column, value, rule, check):
    """inf and 1e308 used to be stored and fed to the models; now the contract names them."""
    snapshot = tmp_path / "snapshot"
    export_snapshot(small_source, JAN1, dt.date(2024, 1, 21), snapshot)
    resources = small_resources(tmp_path / "delta", source=DemandSourceResource(kind="csv", csv_dir=str(snapshot)))
    assert materialize_range(resources, "2024-01-01", "2024-01-20").success
    store: DeltaStore = resources["store"]
    # The refused table and everything downstream keep their versions. (Upstream domains of the
    # same run may still be rewritten with their valid rows: one-run-one-outcome is issue 15's.)
    guarded = ["product_demand", "training_dataset"] + (["channel_spend_response"] if "channel" in file else [])
    before = {t: store.version(t) for t in guarded}
    frame = pl.read_csv(snapshot / file, infer_schema=False)
    frame.with_row_index("_i").with_columns(pl.when(pl.col("_i") == 7).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)).drop("_i").write_csv(
        snapshot / file
    )

    result = materialize_range(resources, "2024-01-01", "2024-01-20")
    assert not result.success
    evaluations = {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert evaluations[check].passed is False
    message = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.to_string()
    assert f"rule '{rule}' on column {column}: 1 offending row(s)" in message
    for table, version in before.items():
        assert store.version(table) == version, table
