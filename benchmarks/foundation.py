"""Foundation benchmark: generate + validate + store the raw domains and the training dataset.

For each scenario, one subprocess materializes the whole graph for the window as a single-run
backfill (in process, so its peak RSS is the whole job's), and a second subprocess then
materializes the next day alone (the incremental daily run). Writes JSON to
benchmarks/results/foundation.json.

    python -m benchmarks.foundation                      # demo and M5 scale
    python -m benchmarks.foundation --scenarios demo     # just one
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIOS = {
    # The `make demo` world: 3 countries x 50 products, 5 channels, two years.
    "demo": {"countries": 3, "products": 50, "channels": 5, "start": "2023-01-01", "days": 731},
    # M5 shape: 10 markets x 3,049 products = 30,490 series, 1,941 days.
    "m5": {"countries": 10, "products": 3049, "channels": 5, "start": "2021-01-01", "days": 1941},
}
RESULTS = Path(__file__).parent / "results" / "foundation.json"


def _run_phase(scenario: str, phase: str, home: str) -> dict:
    """Runs in the child process: materialize and report timings and peak memory."""
    spec = SCENARIOS[scenario]
    os.environ.update(
        DEMAND_HOME=home,
        DEMAND_COUNTRIES=str(spec["countries"]),
        DEMAND_PRODUCTS=str(spec["products"]),
        DEMAND_CHANNELS=str(spec["channels"]),
        DEMAND_PARTITION_START=str(spec["start"]),
    )
    import dagster as dg

    from demand_assets.definitions import defs

    start = dt.date.fromisoformat(spec["start"])
    last = start + dt.timedelta(days=spec["days"] - 1)
    if phase == "incremental":
        start = last = last + dt.timedelta(days=1)
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_implicit_global_asset_job_def()
    t0 = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": last.isoformat()},
        raise_on_error=False,
    )
    wall = time.perf_counter() - t0
    steps: dict[str, dict] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        step = steps.setdefault(event.step_key, {})
        if event.event_type_value == "STEP_START":
            step["start"] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            step["seconds"] = round(entry.timestamp - step.get("start", entry.timestamp), 2)
            step["status"] = event.event_type_value
    rows = {}
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        if "dagster/row_count" in meta:
            rows[event.asset_key.to_user_string()] = meta["dagster/row_count"].value
    return {
        "success": result.success,
        "window": [start.isoformat(), last.isoformat()],
        "partitions": (last - start).days + 1,
        "wall_seconds": round(wall, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3),
        "step_seconds": {k: v.get("seconds") for k, v in steps.items()},
        "rows": rows,
    }


def _child(scenario: str, phase: str, home: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.foundation", "--child", scenario, phase, home]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--child", nargs=3, metavar=("SCENARIO", "PHASE", "HOME"))
    args = parser.parse_args()
    if args.child:
        import logging

        logging.disable(logging.CRITICAL)
        print(json.dumps(_run_phase(*args.child)))
        return
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for scenario in args.scenarios:
        home = tempfile.mkdtemp(prefix=f"bench-{scenario}-")
        try:
            entry = {"config": SCENARIOS[scenario]}
            for phase in ("backfill", "incremental"):
                print(f"[{scenario}] {phase} ...", flush=True)
                entry[phase] = _child(scenario, phase, home)
                print(f"[{scenario}] {phase}: {entry[phase]['wall_seconds']} s, peak {entry[phase]['peak_rss_gb']} GB", flush=True)
            entry["delta_gb_on_disk"] = round(sum(f.stat().st_size for f in Path(home).rglob("*") if f.is_file()) / 1024**3, 3)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        entry["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        entry["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
        results[scenario] = entry
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
