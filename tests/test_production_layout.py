"""The production process layout as real processes (issue 18, point 2): a PostgreSQL server, the
code location's gRPC server, the webserver and the daemon, each started with `demand-deploy`
exactly as deploy/compose.yaml starts them, sharing the instance of deploy/dagster-postgres.yaml.

A run is launched through the webserver's GraphQL API, a run whose worker is killed is marked
failed and retried, the daemon runs a schedule tick and a sensor tick that request runs, and
everything stops on SIGTERM with no process left behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient

from resources.postgres import create_databases, dagster_postgres_url
from tests.postgres_server import PostgresServer, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = str(Path(sys.executable).parent / "demand-deploy")
LOCATION = {"repositoryLocationName": "demand_assets", "repositoryName": "__repository__"}
DATA = ["country_demand", "channel_spend_response", "product_demand", "training_dataset"]


def _wait(what: str, condition, seconds: float, every: float = 1.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _marked_processes(marker: str) -> list[int]:
    """Processes whose environment carries `marker`: every process this test started, and theirs."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class Layout:
    def __init__(self, tmp_path: Path, postgres: PostgresServer) -> None:
        self.marker = f"DEMAND_LAYOUT_TEST={uuid.uuid4().hex}"
        self.web_port = free_port()
        now = dt.datetime.now(dt.UTC)
        # The schedule fires a little after everything is up (its time is read when the code
        # location loads): 100 to 160 s from now.
        self.schedule_at = (now + dt.timedelta(seconds=160)).replace(second=0, microsecond=0)
        self.today = now.date()
        self.env = dict(
            os.environ,
            DEMAND_POSTGRES_URL=postgres.url,
            DAGSTER_HOME=str(tmp_path / "dagster"),
            DEMAND_HOME=str(tmp_path / "home"),
            DEMAND_CODE_SERVER_HOST="127.0.0.1",
            DEMAND_CODE_SERVER_PORT=str(free_port()),
            DEMAND_DAILY_SCHEDULE_TIME=self.schedule_at.strftime("%H:%M"),
            DEMAND_PARTITION_START=str(self.today - dt.timedelta(days=40)),
            DEMAND_COUNTRIES="2",
            DEMAND_PRODUCTS="4",
            DEMAND_CHANNELS="2",
            DEMAND_LAYOUT_TEST=self.marker.split("=", 1)[1],
        )
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([DEPLOY, name, *args], env=self.env, cwd=self.logs, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def graphql(self, query: str, variables: dict) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert "errors" not in body, body
        return body["data"]

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM to each process (last started first), as a container runtime does; returns
        the exit codes, None for one that had to be killed."""
        codes: dict[str, int | None] = {}
        for name, process in reversed(self.processes.items()):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                codes[name] = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                codes[name] = None
        return codes


START_SCHEDULE = """mutation($selector: ScheduleSelector!) { startSchedule(scheduleSelector: $selector) {
  __typename ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }"""
START_SENSOR = """mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""


def test_code_server_webserver_and_daemon_on_postgres_launch_tick_and_stop_cleanly(tmp_path):
    with PostgresServer() as postgres:
        create_databases(postgres.url)
        layout = Layout(tmp_path, postgres)
        init = subprocess.run([DEPLOY, "init"], env=layout.env, capture_output=True, text=True, timeout=120)
        assert init.returncode == 0, init.stderr
        try:
            _run_the_layout(layout, postgres)
        finally:
            codes = layout.stop_all()
        # uvicorn (the forecast service) shuts down gracefully, then re-raises SIGTERM, so its
        # status is "terminated by SIGTERM"; every other process exits 0.
        assert codes == {"serve": -signal.SIGTERM, "mlflow": 0, "daemon": 0, "webserver": 0, "code-server": 0}, codes
        assert "Application shutdown complete" in layout.log("serve")
        # Nothing left running: no server, no run worker.
        _wait("every process to exit", lambda: not _marked_processes(layout.marker), 30)
        for name in ("code-server", "webserver", "daemon", "mlflow", "serve"):
            assert postgres.password not in layout.log(name)


def _run_the_layout(layout: Layout, postgres: PostgresServer) -> None:
    layout.start("code-server")
    port = int(layout.env["DEMAND_CODE_SERVER_PORT"])
    from dagster._grpc.client import DagsterGrpcClient

    _wait("the code server", lambda: _pings(DagsterGrpcClient(port=port, host="127.0.0.1")), 180)
    layout.start("webserver", "-h", "127.0.0.1", "-p", str(layout.web_port))
    layout.start("daemon")
    mlflow_port, service_port = free_port(), free_port()
    layout.start("mlflow", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1")
    layout.start("serve", "--port", str(service_port))
    _wait("the webserver", lambda: _http_ok(f"http://127.0.0.1:{layout.web_port}/server_info"), 180)
    # The image's other entrypoints: MLflow's server on the same Postgres store, and the forecast
    # service (no token: it listens on loopback only).
    _wait("the MLflow server", lambda: _http_ok(f"http://127.0.0.1:{mlflow_port}/health"), 180)
    with urllib.request.urlopen(f"http://127.0.0.1:{mlflow_port}/api/2.0/mlflow/experiments/search?max_results=5", timeout=30) as response:
        assert "experiments" in json.loads(response.read())
    _wait("the forecast service", lambda: _http_ok(f"http://127.0.0.1:{service_port}/health"), 180)

    os.environ["DAGSTER_HOME"] = layout.env["DAGSTER_HOME"]  # this process reads the same instance
    os.environ["DEMAND_DAGSTER_PG_URL"] = dagster_postgres_url(postgres.url) or ""
    try:
        with dg.DagsterInstance.get() as instance:
            _launch_tick_and_sense(layout, instance)
    finally:
        os.environ.pop("DEMAND_DAGSTER_PG_URL", None)


def _launch_tick_and_sense(layout: Layout, instance: dg.DagsterInstance) -> None:
    began = time.monotonic()

    def lap(what: str) -> None:
        print(f"{time.monotonic() - began:6.1f} s  {what}", flush=True)

    # The daemon's scheduler: the daily schedule, turned on first (its time must not pass
    # before), loads yesterday at its time (checked below).
    started = layout.graphql(START_SCHEDULE, {"selector": {**LOCATION, "scheduleName": "daily_raw_domains_schedule"}})
    assert started["startSchedule"]["__typename"] == "ScheduleStateResult", started
    assert dt.datetime.now(dt.UTC) < layout.schedule_at, "the processes took too long to start: the schedule's time has passed"

    # 1. A run launched through the webserver's GraphQL API: the data assets for 38 days, as one
    #    single-run backfill; queued, dequeued by the daemon, executed by the code server.
    client = DagsterGraphQLClient("127.0.0.1", port_number=layout.web_port)
    start, end = layout.today - dt.timedelta(days=40), layout.today - dt.timedelta(days=3)
    run_id = client.submit_job_execution(
        "__ASSET_JOB",
        repository_location_name="demand_assets",
        asset_selection=DATA,
        tags={"dagster/asset_partition_range_start": str(start), "dagster/asset_partition_range_end": str(end)},
    )
    status = _wait(
        "the GraphQL run to finish",
        lambda: (s := client.get_run_status(run_id)) in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE) and s,
        300,
    )
    assert status == dg.DagsterRunStatus.SUCCESS, layout.log("code-server")[-3000:]
    record = instance.get_run_record_by_id(run_id)
    assert record.start_time is not None and record.start_time - record.create_timestamp.timestamp() < 120
    assert len(instance.get_materialized_partitions(dg.AssetKey("training_dataset"))) == (end - start).days + 1
    lap("the GraphQL run finished")

    # 2. While the schedule's minute approaches: a run whose worker process dies (kill -9, as the
    #    OOM killer would) is marked failed, not left running, and the daemon retries it
    #    (run_retries); the retry completes.
    doomed = client.submit_job_execution(
        "__ASSET_JOB",
        repository_location_name="demand_assets",
        asset_selection=DATA,
        tags={"dagster/asset_partition_range_start": str(end - dt.timedelta(days=6)), "dagster/asset_partition_range_end": str(end)},
    )
    _wait("the run to start", lambda: instance.get_run_by_id(doomed).status == dg.DagsterRunStatus.STARTED, 180, every=0.5)
    worker = _wait("its worker process", lambda: _run_worker(layout), 60, every=0.5)
    _kill_tree(worker)
    failed = _wait("the run to be marked failed", lambda: (r := instance.get_run_by_id(doomed)).is_finished and r, 120)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    lap("the killed run was marked failed")
    retry = _wait(
        "the daemon's retry",
        lambda: instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": doomed})),
        180,
        every=2,
    )[0]
    assert retry.tags["dagster/retry_number"] == "1"
    done = _wait("the retry to finish", lambda: (r := instance.get_run_by_id(retry.run_id)).is_finished and r, 300, every=2)
    assert done.status == dg.DagsterRunStatus.SUCCESS
    lap("the retry succeeded")

    # 3. The schedule's tick, at its time: yesterday's raw domains.
    yesterday = str(layout.schedule_at.date() - dt.timedelta(days=1))  # the day that ended before the tick
    wait_for = (layout.schedule_at - dt.datetime.now(dt.UTC)).total_seconds() + 150
    scheduled = _wait(
        "the schedule's run",
        lambda: instance.get_runs(filters=dg.RunsFilter(tags={"dagster/schedule_name": "daily_raw_domains_schedule"})),
        max(wait_for, 60),
        every=2,
    )
    assert scheduled[0].tags["dagster/partition"] == yesterday
    finished = _wait("the scheduled run to finish", lambda: (r := instance.get_run_by_id(scheduled[0].run_id)).is_finished and r, 300, every=2)
    assert finished.status == dg.DagsterRunStatus.SUCCESS
    assert yesterday in instance.get_materialized_partitions(dg.AssetKey("product_demand"))
    lap("the schedule's run succeeded")

    # 4. The daemon's sensor loop: the retraining sensor, turned on, asks for the first training.
    started = layout.graphql(START_SENSOR, {"selector": {**LOCATION, "sensorName": "retraining_sensor"}})
    assert started["startSensor"]["__typename"] == "Sensor", started
    retraining = _wait(
        "the retraining sensor's run",
        lambda: instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": "retraining_sensor"})),
        180,
        every=1,
    )
    assert retraining[0].tags["demand/retrain_trigger"] == "initial"
    # Training the default line-up is not this test's business: cancel it through GraphQL, once
    # it is queued or started (a run being handed to its worker, NOT_STARTED, cannot be).
    run_id = retraining[0].run_id
    _wait(
        "the retraining run to be queued or started",
        lambda: (r := instance.get_run_by_id(run_id)).is_finished or r.status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED),
        120,
        every=0.5,
    )
    if not instance.get_run_by_id(run_id).is_finished:
        client.terminate_run(run_id)
        _wait("the retraining run to stop", lambda: instance.get_run_by_id(run_id).is_finished, 120)
    lap("the sensor's run was requested and cancelled")


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                table[int(entry.name)] = (ppid, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except (OSError, IndexError, ValueError):
                continue
    return table


def _descendants(pid: int, table: dict[int, tuple[int, str]]) -> list[int]:
    children = [p for p, (parent, _) in table.items() if parent == pid]
    return [*children, *(d for c in children for d in _descendants(c, table))]


def _run_worker(layout: Layout) -> int | None:
    """The newest run worker of the code server: a child of its gRPC process (`dagster api
    grpc`) started by multiprocessing (spawn_main; not its resource tracker)."""
    table = _process_table()
    server = layout.processes["code-server"].pid
    grpc = [p for p in _descendants(server, table) if "api grpc" in table[p][1]]
    workers = [p for g in grpc for p, (parent, command) in table.items() if parent == g and "spawn_main" in command]
    return max(workers, key=_start_time) if workers else None


def _start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _kill_tree(pid: int) -> None:
    for victim in [pid, *_descendants(pid, _process_table())]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _pings(client) -> bool:
    try:
        client.ping("hello")
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False
