"""The compute resource's backends on one step's per-series work (issue 19, point 2): ETS fits
and 28-day forecasts for a synthetic panel, in process, on a 2-process local pool and on a real
2-worker Dask LocalCluster. Wall time per backend and whether the forecasts are identical.

    .venv/bin/python -m benchmarks.compute [--countries 10] [--products 100] [--history-days 365]

Writes benchmarks/results/compute.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import polars as pl

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    from demand_assets.forecasting.compute import DaskExecutor, InProcess, ProcessPool, local_cluster
    from demand_assets.forecasting.models.ets import ETSForecaster
    from demand_assets.forecasting.panel import future_frame
    from tests.forecasting_panel import small_panel

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--countries", type=int, default=10)
    parser.add_argument("--products", type=int, default=100)
    parser.add_argument("--history-days", type=int, default=365)
    args = parser.parse_args(argv)

    dataset, _ = small_panel(n_countries=args.countries, n_products=args.products)
    origin = dataset["DATE"].max() - dt.timedelta(days=28)
    train = dataset.filter(pl.col("DATE") <= origin)
    future = future_frame(dataset, origin, 28)
    series = train.select("COUNTRY", "PRODUCT").n_unique()
    print(f"{series} series, {train.height:,} training rows", flush=True)

    def run(executor) -> tuple[float, pl.DataFrame]:
        began = time.perf_counter()
        out = ETSForecaster(history_days=args.history_days, min_series_per_job=1, executor=executor).predict(train, future)
        return time.perf_counter() - began, out

    results: dict = {"machine": f"{os.cpu_count()} cores", "date": str(dt.date.today()), "series": series, "history_days": args.history_days}
    seconds, reference = run(InProcess())
    results["in_process_s"] = round(seconds, 2)
    print("in_process", results["in_process_s"], flush=True)
    seconds, pooled = run(ProcessPool(max_workers=2))
    results["processes_2_s"] = round(seconds, 2)
    results["processes_identical"] = pooled.equals(reference)
    print("processes", results["processes_2_s"], results["processes_identical"], flush=True)
    with local_cluster(2) as cluster:
        with DaskExecutor(cluster.scheduler_address) as dask:
            seconds, on_dask = run(dask)
    results["dask_2_workers_s"] = round(seconds, 2)
    results["dask_identical"] = on_dask.equals(reference)
    print("dask", results["dask_2_workers_s"], results["dask_identical"], flush=True)
    results["speedup_processes"] = round(results["in_process_s"] / results["processes_2_s"], 2)
    results["speedup_dask"] = round(results["in_process_s"] / results["dask_2_workers_s"], 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compute.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
