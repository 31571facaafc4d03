"""Incremental recompute by date partition: what it saves.

Two measurements on the default synthetic world (3 countries x 50 products, 5 channels), each
in a fresh temporary store and ephemeral Dagster instance, in process:

1. One new day through the whole daily graph (raw domains, ground truth, training dataset,
   champion forecast, forecast accuracy; no retraining) against recomputing the whole window
   (the same assets over all `--days` + 1 days as one run); and how long a retraining-sensor
   tick takes on that instance (Dagster's limit is 60 s).
2. A `--days`-day backfill of the data assets (raw domains, ground truth, training dataset) as
   one single run against one run per partition.

Writes benchmarks/results/incremental.json.

    python -m benchmarks.incremental              # 365 days (about 30 minutes on 2 cores)
    python -m benchmarks.incremental --days 60    # a quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import dagster as dg

from demand_assets.definitions import ALL_ASSETS
from demand_assets.domains.models import ForecastingConfig
from resources import ComputeResource, ContractSettings, DeltaStore, DemandSourceResource, MlflowTracking, MonitoringSettings

RESULTS = Path(__file__).parent / "results" / "incremental.json"
MODELS = ForecastingConfig(models=["seasonal_naive", "lightgbm"], n_folds=2, horizon=28, history_days=365)


def _resources(home: Path) -> dict:
    return {
        "source": DemandSourceResource(),
        "store": DeltaStore(root_uri=str(home / "delta")),
        "contract_settings": ContractSettings(),
        "monitoring": MonitoringSettings(),
        "compute": ComputeResource(),
        "mlflow_tracking": MlflowTracking(tracking_uri=f"sqlite:///{home / 'mlflow.db'}", artifact_location=(home / "artifacts").as_uri()),
    }


def _run(resources, instance, selection, start: dt.date, end: dt.date | None = None, run_config=None) -> float:
    tags = {"dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": (end or start).isoformat()}
    t0 = time.perf_counter()
    result = dg.materialize(ALL_ASSETS, resources=resources, instance=instance, selection=selection, tags=tags, run_config=run_config, raise_on_error=False)
    seconds = time.perf_counter() - t0
    if not result.success:
        raise RuntimeError(f"materializing {selection} for {start}..{end or start} failed")
    return seconds


def _sensor_tick_seconds(instance: dg.DagsterInstance, repeats: int = 5) -> float:
    """The slowest of a few retraining-sensor ticks on an instance holding a year of runs."""
    from demand_assets.domains.automation import retraining_sensor

    worst = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        retraining_sensor(dg.build_sensor_context(instance=instance, resources={"monitoring": MonitoringSettings()}))
        worst = max(worst, time.perf_counter() - t0)
    return round(worst, 3)


def data_selection() -> list[str]:
    return ["country_demand", "channel_spend_response", "product_demand", "product_demand_truth", "channel_response_truth", "training_dataset"]


def new_day_vs_window(days: int, start: dt.date) -> dict:
    last = start + dt.timedelta(days=days)  # the new day
    daily = [*data_selection(), "demand_forecast", "forecast_accuracy"]
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        resources, instance = _resources(Path(tmp)), dg.DagsterInstance.ephemeral()
        logging.info("setup: %d days of data, a champion, and a forecast as of every day", days)
        _run(resources, instance, data_selection(), start, last - dt.timedelta(days=1))
        _run(resources, instance, ["model_backtest", "champion_model"], start, run_config=dg.RunConfig(ops={"model_backtest": MODELS}))
        _run(resources, instance, ["demand_forecast", "forecast_accuracy"], start, last - dt.timedelta(days=1))
        logging.info("one new day through the daily graph")
        one_day = _run(resources, instance, daily, last)
        tick = _sensor_tick_seconds(instance)
        logging.info("the whole window recomputed as one run")
        whole = _run(resources, instance, daily, start, last)
    return {
        "assets": daily,
        "window_days": days + 1,
        "one_new_day_seconds": round(one_day, 1),
        "whole_window_seconds": round(whole, 1),
        "ratio_whole_over_one_day": round(whole / one_day, 1),
        "retraining_sensor_tick_seconds": tick,
    }


def single_run_vs_per_partition(days: int, start: dt.date) -> dict:
    end = start + dt.timedelta(days=days - 1)
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        resources, instance = _resources(Path(tmp)), dg.DagsterInstance.ephemeral()
        logging.info("backfill of %d days as one run", days)
        single = _run(resources, instance, data_selection(), start, end)
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        resources, instance = _resources(Path(tmp)), dg.DagsterInstance.ephemeral()
        t0 = time.perf_counter()
        for i in range(days):
            day = start + dt.timedelta(days=i)
            _run(resources, instance, data_selection(), day)
            if (i + 1) % 30 == 0:
                logging.info("one run per partition: %d/%d days, %.0f s", i + 1, days, time.perf_counter() - t0)
        per_partition = time.perf_counter() - t0
    return {
        "assets": data_selection(),
        "days": days,
        "single_run_seconds": round(single, 1),
        "one_run_per_partition_seconds": round(per_partition, 1),
        "ratio_per_partition_over_single_run": round(per_partition / single, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--start", default="2023-01-01")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("dagster", "lightning", "lightning.pytorch", "gluonts", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    start = dt.date.fromisoformat(args.start)
    t0 = time.perf_counter()
    out = {
        "world": "default synthetic: 3 countries x 50 products, 5 channels",
        "executor": "in process (dg.materialize); a daemon-launched backfill adds a process start per run on top",
        "new_day_vs_whole_window": new_day_vs_window(args.days, start),
        "backfill_single_run_vs_per_partition": single_run_vs_per_partition(args.days, start),
        "wall_seconds": None,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": f"python -m benchmarks.incremental --days {args.days}",
    }
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
