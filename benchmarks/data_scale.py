"""The data phase at 10x M5 (issue 19, point 5), measured on slices of days and projected.

A retailer with ten times M5's series (304,900 item x store series: M5's 10 stores and 7
departments, ten times the items) cannot be generated and stored whole for 1,941 days on this
machine in a session, so the benchmark measures the full width on short windows: M5-format files
of 304,900 series for `--days` days each (default 120 and 240), then `product_demand` and
`training_dataset` over the whole window, each in its own `dg launch` (the in-process executor:
one process per asset, the unit a backfill of a partition range runs), recording wall time, CPU
core-seconds and the process's peak RSS (the kernel's accounting of the waited-for children),
rows written and the training dataset's chunks.

From two windows, each figure is fitted as fixed + per day and projected to M5's 1,941 days:
the time of the whole (one unit, or the days split over units: the daily partitions let a
backfill run date ranges side by side, each writing its own window in one Delta transaction),
and the memory of one unit (the M5 source reads its sales matrix whole, so its memory grows with
the days in the files; the training dataset builds date chunks of at most CHUNK_ROWS rows plus
their look-back, so its memory does not).

    .venv/bin/python -m benchmarks.data_scale --work /tmp/data_scale

`--units 1941` instead writes the files for all of M5's days at that width (once, kept in the
work folder) and measures `product_demand` as backfill units, each the last N days of the files
for each N of `--unit-days` (default 28 and 0, every day; key `units_scale_<scale>_days_<days>`):
the memory and time of one date-range unit, measured, not projected.

Writes benchmarks/results/data_scale.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.fanout import START, _env, _launch, _shape

RESULTS = Path(__file__).resolve().parent / "results" / "data_scale.json"
ROOT = Path(__file__).resolve().parent.parent
M5_DAYS = 1941


def _rows(home: Path, table: str) -> int:
    import polars as pl

    return int(pl.scan_delta(str(home / "delta" / table)).select(pl.len()).collect().item())


def _slice(work: Path, scale: float, days: int) -> dict:
    """Generate `days` days of the panel at `scale` of M5's items, then each data asset in its own launch."""
    from dataclasses import replace

    from demand_assets.sources.m5 import write_m5_files

    if work.exists():
        shutil.rmtree(work)
    (work / "home" / "dagster").mkdir(parents=True)
    (work / "home" / "dagster" / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    shape = replace(_shape(scale), days=days)
    began = time.perf_counter()
    counts = write_m5_files(work / "m5_files", shape)
    generate_s = round(time.perf_counter() - began, 1)
    env = _env(work, DEMAND_EXECUTOR="in_process")
    subprocess.run([str(Path(sys.executable).parent / "demand-deploy"), "pools"], env=env, check=True, capture_output=True)
    last = START + dt.timedelta(days=days - 1)
    out: dict = {"series": counts["sales_train_evaluation.csv"], "days": days, "generate_seconds": generate_s}
    out["files_bytes"] = {p.name: p.stat().st_size for p in (work / "m5_files").iterdir()}
    for asset in ("product_demand", "training_dataset"):
        measured = _launch(work, asset, env, partition_range=f"{START}...{last}")
        measured["rows"] = _rows(work / "home", asset)
        out[asset] = measured
        print(f"{days} days, {asset}: {measured}", flush=True)
    return out


def _units(work: Path, scale: float, days: int, unit_days: list[int]) -> dict:
    """`product_demand` over `days` days at `scale` measured as backfill units, each its own
    `dg launch` writing the last N days of the files for each N of `unit_days` (0: every day):
    a backfill split into date ranges runs many such units. The files are generated once and
    kept in `work` (generated again only when missing)."""
    from dataclasses import replace

    from demand_assets.sources.m5 import write_m5_files

    files = work / "m5_files"
    out: dict = {"days": days}
    if not (files / "sell_prices.csv").exists():
        if work.exists():
            shutil.rmtree(work)
        began = time.perf_counter()
        write_m5_files(files, replace(_shape(scale), days=days))
        out["generate_seconds"] = round(time.perf_counter() - began, 1)
    out["series"] = int(subprocess.run(["wc", "-l", str(files / "sales_train_evaluation.csv")], capture_output=True, text=True).stdout.split()[0]) - 1
    out["files_bytes"] = {p.name: p.stat().st_size for p in files.iterdir()}
    shutil.rmtree(work / "home", ignore_errors=True)
    (work / "home" / "dagster").mkdir(parents=True)
    (work / "home" / "dagster" / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    env = _env(work, DEMAND_EXECUTOR="in_process")
    subprocess.run([str(Path(sys.executable).parent / "demand-deploy"), "pools"], env=env, check=True, capture_output=True)
    last = START + dt.timedelta(days=days - 1)
    for n in unit_days:
        name = f"product_demand_last_{n}_days" if n else "product_demand_whole"
        first = last - dt.timedelta(days=n - 1) if n else START
        measured = _launch(work, "product_demand", env, partition_range=f"{first}...{last}")
        measured["rows_in_table"] = _rows(work / "home", "product_demand")
        out[name] = measured
        print(f"{days} days, {name}: {measured}", flush=True)
    return out


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed, per day) through two measured windows."""
    (d1, y1), (d2, y2) = points[0], points[-1]
    slope = (y2 - y1) / (d2 - d1)
    return y1 - slope * d1, slope


def project(slices: list[dict], days: int = M5_DAYS) -> dict:
    """Each asset's seconds, core-seconds and peak RSS, fitted as fixed + per day, at `days`."""
    out: dict = {"days": days}
    for asset in ("product_demand", "training_dataset"):
        figures = {}
        for key in ("seconds", "cpu_seconds", "peak_rss_gb"):
            fixed, per_day = _fit([(s["days"], s[asset][key]) for s in slices])
            figures[key] = {"fixed": round(fixed, 3), "per_day": round(per_day, 5), "projected": round(fixed + per_day * days, 2)}
        out[asset] = figures
    out["seconds_one_process"] = round(sum(out[a]["seconds"]["projected"] for a in ("product_demand", "training_dataset")), 1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--scale", type=float, default=10.0, help="share of M5's items per department (10: 304,900 series)")
    parser.add_argument("--days", type=int, nargs="+", default=[120, 240], help="the windows measured (at least two, for the fit)")
    parser.add_argument(
        "--units", type=int, metavar="DAYS", help="instead: files of DAYS days (1941: M5's), product_demand as one unit of --unit-days and as one unit of all"
    )
    parser.add_argument("--unit-days", type=int, nargs="+", default=[28, 0], help="with --units: the units' lengths in days (0: every day)")
    args = parser.parse_args(argv)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.units:
        key = f"units_scale_{args.scale}_days_{args.units}"
        measured = _units(Path(args.work) / key, args.scale, args.units, args.unit_days)
        machine = {"date": str(dt.date.today()), "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
        previous[key] = previous.get(key, {}) | machine | measured  # units measured before and not again are kept
        RESULTS.write_text(json.dumps(previous, indent=1))
        print(json.dumps(previous[key], indent=1))
        return
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": str(dt.date.today()),
        "scale": args.scale,
        "slices": [],
        **{k: v for k, v in previous.items() if k.startswith("units_")},  # kept from --units runs
    }
    for days in sorted(args.days):
        results["slices"].append(_slice(Path(args.work) / f"days_{days}", args.scale, days))
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1))
    if len(results["slices"]) >= 2:
        results["projection_m5_days"] = project(results["slices"])
    RESULTS.write_text(json.dumps(results, indent=1))
    print(json.dumps(results.get("projection_m5_days", results), indent=1))


if __name__ == "__main__":
    main()
