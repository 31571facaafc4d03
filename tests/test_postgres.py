"""The Dagster instance and MLflow on a real PostgreSQL server (issue 18, point 1).

Each test starts its own throw-away server (tests/postgres_server.py: Debian's postgresql-15,
initdb + pg_ctl on a free port) and sets only DEMAND_POSTGRES_URL; the instance is the
production one, deploy/dagster-postgres.yaml, and MLflow derives its store from the same setting.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from fastapi.testclient import TestClient

from demand_assets.cli import initialize_pools
from demand_assets.definitions import ALL_ASSETS, DATA_ASSETS
from demand_assets.domains.automation import retraining_sensor
from demand_assets.domains.forecasts import DemandForecastConfig
from demand_assets.domains.models import ForecastingConfig
from demand_assets.forecasting.registry import CHAMPION_ALIAS
from resources import MonitoringSettings, resources_from_env
from resources.postgres import DAGSTER_DATABASE, MLFLOW_DATABASE, PostgresSettingError, check_databases, create_databases, dagster_postgres_url
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SMALL_WORLD = {"DEMAND_COUNTRIES": "2", "DEMAND_PRODUCTS": "4", "DEMAND_CHANNELS": "2"}
LINE_UP = ForecastingConfig(models=["seasonal_naive", "lightgbm"], n_folds=1, horizon=7, history_days=90, lgbm_rounds=20)


@pytest.fixture
def postgres():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def production(postgres, tmp_path, monkeypatch):
    """DEMAND_POSTGRES_URL set, the databases created, and the production instance on them."""
    monkeypatch.setenv("DEMAND_POSTGRES_URL", postgres.url)
    monkeypatch.setenv("DEMAND_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name, value in SMALL_WORLD.items():
        monkeypatch.setenv(name, value)
    assert set(create_databases()) == {DAGSTER_DATABASE, MLFLOW_DATABASE}
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DEMAND_DAGSTER_PG_URL", dagster_postgres_url() or "")
    with dg.DagsterInstance.get() as instance:
        # As `demand-deploy init` does: the pools' rows exist before two runs claim them at once.
        assert initialize_pools(instance) == {"curve_fits": 1, "model_training": 1, "raw_domain_writes": 1}
        yield instance


def _rows(url: str, sql: str) -> list[tuple]:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_the_graph_runs_on_postgres_from_data_to_the_forecast_service(production, postgres):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    instance = production
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    resources = resources_from_env(resolve=True)
    assert resources["mlflow_tracking"]._uri().startswith("postgresql+psycopg2://")

    # A partition range of the data assets, as one single-run backfill.
    days = ("2024-01-01", "2024-04-30")
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[1]}
    assert dg.materialize(ALL_ASSETS, resources=resources, instance=instance, selection=DATA_ASSETS, tags=tags).success
    assert len(instance.get_materialized_partitions(dg.AssetKey("training_dataset"))) == 121

    # The retraining sensor's tick on this instance asks for the first training ...
    context = dg.build_sensor_context(instance=instance, resources={"monitoring": MonitoringSettings()})
    result = retraining_sensor(context)
    assert len(result.run_requests) == 1 and result.run_requests[0].tags["demand/retrain_trigger"] == "initial"
    # ... which trains, registers and promotes a champion in MLflow's registry on Postgres.
    trained = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=instance,
        selection=["model_backtest", "champion_model"],
        run_config=dg.RunConfig(ops={"model_backtest": LINE_UP}),
        tags=result.run_requests[0].tags,
    )
    assert trained.success
    tracking = resources["mlflow_tracking"]
    version = tracking.champion_version()
    assert version is not None
    assert tracking.load(version) is not None
    mlflow_url = postgres.url + "/" + MLFLOW_DATABASE
    aliases = _rows(mlflow_url, "SELECT alias, version FROM registered_model_aliases")
    assert (CHAMPION_ALIAS, int(version)) in aliases
    # The next tick is quiet: the models are current.
    again = retraining_sensor(dg.build_sensor_context(instance=instance, resources={"monitoring": MonitoringSettings()}, cursor=context.cursor))
    assert not again.run_requests

    forecast_tags = {"dagster/asset_partition_range_start": "2024-04-28", "dagster/asset_partition_range_end": "2024-04-30"}
    assert dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=instance,
        selection=["demand_forecast"],
        run_config=dg.RunConfig(ops={"demand_forecast": DemandForecastConfig(horizon=7, history_days=90)}),
        tags=forecast_tags,
    ).success

    # The forecast service, configured from the same environment, answers from the stores.
    from demand_assets.serving.app import create_app_from_env

    with TestClient(create_app_from_env()) as client:
        product = resources["store"].read_all("demand_forecast")["PRODUCT"][0]
        country = resources["store"].read_all("demand_forecast")["COUNTRY"][0]
        answer = client.get("/forecast", params={"country": country, "product": product, "horizon": 7})
        assert answer.status_code == 200, answer.text
        assert answer.json()["as_of"] == "2024-04-30" and len(answer.json()["forecasts"]) == 7

    # Everything Dagster recorded is in Postgres: runs and their events.
    dagster_url = postgres.url + "/" + DAGSTER_DATABASE
    (runs,) = _rows(dagster_url, "SELECT count(*) FROM runs")[0]
    assert runs == 3 == len(instance.get_runs())

    # The password is a secret: it is in no event (metadata, logs), no run's config or tags, and
    # no MLflow param, tag or metric name.
    events = _rows(dagster_url, "SELECT event FROM event_logs")
    assert len(events) > 1000
    assert not [e for (e,) in events if postgres.password in e]
    assert not [r for (r,) in _rows(dagster_url, "SELECT run_body FROM runs") if postgres.password in r]
    for table in ("params", "tags", "latest_metrics", "model_version_tags", "model_versions", "experiments", "runs"):
        rows = _rows(mlflow_url, f"SELECT * FROM {table}")
        assert rows or table in ("model_version_tags", "latest_metrics")
        assert not [r for r in rows if postgres.password in repr(r)], table


def _materialize_in_subprocess(env: dict[str, str], start: str, end: str) -> subprocess.Popen:
    code = (
        "import sys, dagster as dg\n"
        "from demand_assets.definitions import ALL_ASSETS, DATA_ASSETS\n"
        "from resources import resources_from_env\n"
        "with dg.DagsterInstance.get() as instance:\n"
        f"    tags = {{'dagster/asset_partition_range_start': '{start}', 'dagster/asset_partition_range_end': '{end}'}}\n"
        "    result = dg.materialize(ALL_ASSETS, resources=resources_from_env(resolve=True), instance=instance,\n"
        "                            selection=['country_demand', 'channel_spend_response', 'product_demand'], tags=tags, raise_on_error=False)\n"
        "    print('RUN', result.run_id, result.success, flush=True)\n"
        "    sys.exit(0 if result.success else 1)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_runs_writing_events_at_once_lose_none(production, tmp_path):
    instance = production
    runs = []
    windows = {"a": ("2024-01-01", "2024-02-29"), "b": ("2024-03-01", "2024-04-28")}  # 60 and 59 days
    for name, window in windows.items():
        env = dict(os.environ, DEMAND_HOME=str(tmp_path / f"home_{name}"))
        runs.append(_materialize_in_subprocess(env, *window))
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [out[-4000:] for out in outputs]
    run_ids = [next(line.split()[1] for line in out.splitlines() if line.startswith("RUN ")) for out in outputs]
    records = [instance.get_run_record_by_id(run_id) for run_id in run_ids]
    # The two runs were writing events at the same time.
    assert records[0].start_time < records[1].end_time and records[1].start_time < records[0].end_time
    for run_id, days in zip(run_ids, (60, 59), strict=True):
        events = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000).records
        planned = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=10_000).records
        assert len(events) == len(planned) == 3 * days
        assert len({(e.event_log_entry.dagster_event.asset_key, e.event_log_entry.dagster_event.partition) for e in events}) == len(events)
    for asset in ("country_demand", "channel_spend_response", "product_demand"):
        assert len(instance.get_materialized_partitions(dg.AssetKey(asset))) == 60 + 59


def test_a_postgres_restart_mid_run_fails_the_run_cleanly_and_a_rerun_succeeds(production, postgres, tmp_path):
    """The run's process gives up with a named error once the storage's connection retries are
    spent (about 35 s), and a re-run completes the window. A run started from a shell keeps a
    STARTED record until an operator terminates it; in the production layout the code server
    marks a run whose worker died failed (tests/test_production_layout.py)."""
    instance = production
    env = dict(os.environ)
    window = ("2024-01-01", "2024-02-29")
    run = _materialize_in_subprocess(env, *window)
    # Wait until the run is writing its events, then take the server away for longer than the
    # storage's connection retries.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        time.sleep(0.5)
    started = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert started, "the run never started"
    # ... and its raw_domains step is running (holding its pool slot).
    while time.monotonic() < deadline and not instance.get_records_for_run(started[0].run_id, of_type=dg.DagsterEventType.STEP_START).records:
        time.sleep(0.2)
    assert instance.get_records_for_run(started[0].run_id, of_type=dg.DagsterEventType.STEP_START).records
    postgres.stop()
    try:
        output = run.communicate(timeout=180)[0]
    finally:
        postgres.start()
    assert run.returncode != 0
    assert "too many retries for DB connection" in output, output[-3000:]
    assert postgres.password not in output
    # The dead run's record is not lost: it stays STARTED (nothing watches a run started from a
    # shell) and holds the raw_domain_writes pool slot, which would block the re-run. The
    # operator's step (docs/production.md): Terminate it in the UI, which marks it canceled; the
    # daemon then frees an ended run's slots, as done here.
    with dg.DagsterInstance.get() as fresh:
        (dead,) = fresh.get_runs(filters=dg.RunsFilter(run_ids=[started[0].run_id]))
        assert dead.status == dg.DagsterRunStatus.STARTED
        assert dead.run_id in fresh.event_log_storage.get_concurrency_run_ids()  # it holds the slot
        fresh.report_run_canceled(dead, message="its process died while the database was down")
        fresh.event_log_storage.free_concurrency_slots_for_run(dead.run_id)
        assert fresh.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.CANCELED
    # The stored windows are whole: nothing half-written is visible (each raw write is one Delta
    # transaction), and a re-run fills the window.
    rerun = _materialize_in_subprocess(env, *window)
    try:
        out = rerun.communicate(timeout=300)[0]
    finally:
        rerun.kill()
    assert rerun.returncode == 0, out[-3000:]
    resources = resources_from_env(resolve=True)
    stored = resources["store"].read_all("product_demand")
    assert stored["DATE"].min() == dt.date(2024, 1, 1) and stored["DATE"].max() == dt.date(2024, 2, 29)
    assert stored.group_by("DATE").len()["len"].n_unique() == 1
    with dg.DagsterInstance.get() as fresh:
        rerun_id = next(line.split()[1] for line in out.splitlines() if line.startswith("RUN "))
        assert fresh.get_run_by_id(rerun_id).status == dg.DagsterRunStatus.SUCCESS
        assert len(fresh.get_materialized_partitions(dg.AssetKey("product_demand"))) == (dt.date(2024, 2, 29) - dt.date(2024, 1, 1)).days + 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u:p@localhost/x", "must be a postgresql:// URL"),
        ("not a url", "is not a database URL"),
        ("postgresql://demand:wrong-password@127.0.0.1:{port}", "password authentication failed"),
        ("postgresql://demand:{password}@127.0.0.1:1", "cannot connect"),
    ],
)
def test_a_wrong_postgres_setting_is_named_at_start(postgres, url, expected):
    url = url.format(port=postgres.port, password=postgres.password)
    with pytest.raises(PostgresSettingError) as error:
        check_databases(url)
    message = str(error.value)
    assert message.startswith("DEMAND_POSTGRES_URL") and expected in message
    assert "wrong-password" not in message and postgres.password not in message


def test_a_missing_database_is_named_and_the_processes_refuse_to_start(postgres, tmp_path):
    with pytest.raises(PostgresSettingError, match="database 'demand_dagster' does not exist.*demand-deploy init"):
        check_databases(postgres.url)
    env = dict(os.environ, DEMAND_POSTGRES_URL=postgres.url, DAGSTER_HOME=str(tmp_path))
    started = subprocess.run([str(Path(sys.executable).parent / "demand-deploy"), "daemon"], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode != 0
    assert "DEMAND_POSTGRES_URL: database 'demand_dagster' does not exist" in started.stderr
    assert "Traceback" not in started.stderr and postgres.password not in started.stderr


def test_delta_tables_on_a_second_root(tmp_path, monkeypatch):
    """DEMAND_DELTA_URI moves every table; a file:// URI works like a path."""
    monkeypatch.setenv("DEMAND_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEMAND_DELTA_URI", (tmp_path / "elsewhere" / "tables").as_uri())
    for name, value in SMALL_WORLD.items():
        monkeypatch.setenv(name, value)
    resources = resources_from_env(resolve=True)
    tags = {"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-31"}
    assert dg.materialize(ALL_ASSETS, resources=resources, instance=dg.DagsterInstance.ephemeral(), selection=DATA_ASSETS, tags=tags).success
    assert (tmp_path / "elsewhere" / "tables" / "training_dataset" / "_delta_log").is_dir()
    assert not (tmp_path / "home" / "delta").exists()
    assert resources["store"].read_all("training_dataset").height > 0
