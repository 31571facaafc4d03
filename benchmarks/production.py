"""The production layout's figures (issue 18, point 5), on this machine, with a real PostgreSQL
server (tests/postgres_server.py):

- event-log write rate: a 365-day single-run backfill of the raw domains (small synthetic world),
  in process, on the embedded SQLite instance and on the Postgres instance;
- sensor tick: `retraining_sensor` evaluated against the Postgres instance (median of 20);
- run launch latency through the gRPC code server: the code server, webserver and daemon as real
  processes (`demand-deploy`), five one-day runs submitted through GraphQL one after another:
  submit -> STARTED (queue, daemon, launch by the code server) and submit -> SUCCESS.

    .venv/bin/python -m benchmarks.production [--days 365] [--launches 5]

Writes benchmarks/results/production.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
RAW = ["country_demand", "channel_spend_response", "product_demand"]
SMALL_WORLD = {"DEMAND_COUNTRIES": "2", "DEMAND_PRODUCTS": "4", "DEMAND_CHANNELS": "2"}


def _backfill(instance: dg.DagsterInstance, days: int) -> dict:
    from demand_assets.definitions import ALL_ASSETS
    from resources import resources_from_env

    start = dt.date(2024, 1, 1)
    end = start + dt.timedelta(days=days - 1)
    tags = {"dagster/asset_partition_range_start": str(start), "dagster/asset_partition_range_end": str(end)}
    began = time.perf_counter()
    result = dg.materialize(ALL_ASSETS, resources=resources_from_env(resolve=True), instance=instance, selection=RAW, tags=tags)
    seconds = time.perf_counter() - began
    events = len(instance.all_logs(result.run_id))
    return {"days": days, "seconds": round(seconds, 2), "events": events, "events_per_second": round(events / seconds, 1)}


def _sensor_ticks(instance: dg.DagsterInstance, n: int = 20) -> dict:
    from demand_assets.domains.automation import retraining_sensor
    from resources import MonitoringSettings

    times = []
    for _ in range(n):
        began = time.perf_counter()
        retraining_sensor(dg.build_sensor_context(instance=instance, resources={"monitoring": MonitoringSettings()}))
        times.append(time.perf_counter() - began)
    return {"ticks": n, "median_ms": round(statistics.median(times) * 1000, 1), "max_ms": round(max(times) * 1000, 1)}


def _launches(work: Path, server, n: int) -> dict:
    from dagster_graphql import DagsterGraphQLClient

    from resources.postgres import dagster_postgres_url
    from tests.test_production_layout import Layout, _http_ok, _pings, _wait

    layout = Layout(work, server)
    subprocess.run([str(Path(sys.executable).parent / "demand-deploy"), "init"], env=layout.env, check=True, capture_output=True)
    from dagster._grpc.client import DagsterGrpcClient

    figures: dict = {}
    try:
        began = time.perf_counter()
        layout.start("code-server")
        _wait("code server", lambda: _pings(DagsterGrpcClient(port=int(layout.env["DEMAND_CODE_SERVER_PORT"]), host="127.0.0.1")), 300)
        figures["code_server_ready_s"] = round(time.perf_counter() - began, 1)
        layout.start("webserver", "-h", "127.0.0.1", "-p", str(layout.web_port))
        layout.start("daemon")
        _wait("webserver", lambda: _http_ok(f"http://127.0.0.1:{layout.web_port}/server_info"), 300)
        os.environ["DAGSTER_HOME"] = layout.env["DAGSTER_HOME"]
        os.environ["DEMAND_DAGSTER_PG_URL"] = dagster_postgres_url(server.url) or ""
        client = DagsterGraphQLClient("127.0.0.1", port_number=layout.web_port)
        to_start, to_finish = [], []
        with dg.DagsterInstance.get() as instance:
            for i in range(n):
                day = str(layout.today - dt.timedelta(days=10 + i))
                submitted = time.time()
                run_id = client.submit_job_execution(
                    "__ASSET_JOB", repository_location_name="demand_assets", asset_selection=RAW, tags={"dagster/partition": day}
                )
                record = _wait("run end", lambda run_id=run_id: (r := instance.get_run_record_by_id(run_id)).dagster_run.is_finished and r, 300, every=0.2)
                assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
                to_start.append(record.start_time - submitted)
                to_finish.append(record.end_time - submitted)
        figures |= {
            "launches": n,
            "submit_to_started_s": [round(x, 2) for x in to_start],
            "submit_to_success_s": [round(x, 2) for x in to_finish],
            "median_submit_to_started_s": round(statistics.median(to_start), 2),
            "median_submit_to_success_s": round(statistics.median(to_finish), 2),
        }
    finally:
        figures["exit_codes"] = layout.stop_all()
    return figures


def _instance(work: Path, name: str, config: str) -> dg.DagsterInstance:
    """A fresh store (DEMAND_HOME) and a Dagster instance from deploy/<config>, under `work`."""
    os.environ["DEMAND_HOME"] = str(work / f"{name}_home")
    home = work / f"{name}_dagster"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy" / config, home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def main(argv: list[str] | None = None) -> None:
    from resources.postgres import create_databases, dagster_postgres_url
    from tests.postgres_server import PostgresServer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--launches", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.update(SMALL_WORLD)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    results: dict = {"machine": f"{os.cpu_count()} cores", "date": str(dt.date.today())}
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as server:
        work = Path(tmp)
        with _instance(work, "sqlite", "dagster.yaml") as instance:
            results["backfill_sqlite"] = _backfill(instance, args.days)
            print("sqlite", results["backfill_sqlite"], flush=True)
        create_databases(server.url)
        os.environ["DEMAND_POSTGRES_URL"] = server.url
        os.environ["DEMAND_DAGSTER_PG_URL"] = dagster_postgres_url(server.url) or ""
        with _instance(work, "pg", "dagster-postgres.yaml") as instance:
            results["backfill_postgres"] = _backfill(instance, args.days)
            print("postgres", results["backfill_postgres"], flush=True)
            results["sensor_tick_postgres"] = _sensor_ticks(instance)
            print("sensor", results["sensor_tick_postgres"], flush=True)
        layout_dir = work / "layout"
        layout_dir.mkdir()
        results["layout"] = _launches(layout_dir, server, args.launches)
        print("layout", results["layout"], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "production.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'production.json'}")


if __name__ == "__main__":
    main()
