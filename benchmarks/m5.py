"""M5-scale benchmark on project-generated M5-format files (30,490 series x 1,941 days).

Phases, each in its own subprocess so its peak RSS is its own:
  generate   write the M5-format files (write_m5_files, M5's shape)
  data       DEMAND_SOURCE=m5: product_demand (with inferred stockouts) and training_dataset for
             every day, one single-run backfill of the data assets
  backtest   model_backtest with WRMSSE on the stored training dataset: one subprocess per model
             (its own time and peak RSS), the default line-up and training settings unless told;
             results under backtest_folds_<n>
  stockouts  precision and recall of the inferred stockouts against the generator's runs
Writes benchmarks/results/m5.json.

    python -m benchmarks.m5 --work /tmp/m5bench               # generate, data, backtest
    python -m benchmarks.m5 --work /tmp/m5bench --phases backtest --models seasonal_naive lightgbm --folds 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "m5.json"
START = dt.date(2011, 1, 29)


def _peak_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)


def _phase(phase: str, work: Path, options: dict) -> dict:
    files, home = work / "m5_files", work / "home"
    os.environ.update(DEMAND_HOME=str(home), DEMAND_SOURCE="m5", DEMAND_M5_DIR=str(files), DEMAND_PARTITION_START=START.isoformat())
    t0 = time.perf_counter()
    if phase == "generate":
        from demand_assets.sources.m5 import M5Shape, write_m5_files

        counts = write_m5_files(files, M5Shape())
        return {
            "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_gb": _peak_gb(),
            "rows": counts,
            "bytes": {p.name: p.stat().st_size for p in files.iterdir()},
        }
    if phase == "stockouts":
        return _stockout_inference(files)
    import dagster as dg

    from demand_assets.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    if phase == "data":
        from demand_assets.domains.selections import selection
        from demand_assets.sources import Domain
        from demand_assets.sources.m5 import M5Shape

        last = START + dt.timedelta(days=M5Shape().days - 1)
        job = defs.resolve_implicit_global_asset_job_def()
        # What `make demo` selects for M5 (product_demand and the training dataset); with
        # --with-placeholders also the two raw domains M5 lacks, which then record "not provided"
        # for every day (the selection before issue 16's point 4).
        chosen = selection("data", {Domain.PRODUCT_DEMAND})
        if options.get("with_placeholders"):
            chosen += " or key:country_demand or key:channel_spend_response"
        keys = dg.AssetSelection.from_string(chosen).resolve(defs.resolve_asset_graph())
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            asset_selection=sorted(keys),
            tags={"dagster/asset_partition_range_start": START.isoformat(), "dagster/asset_partition_range_end": last.isoformat()},
        )
        written = [e for e in result.get_asset_materialization_events() if "rows_written" in e.materialization.metadata]
        rows = {e.asset_key.to_user_string(): e.materialization.metadata["rows_written"].value for e in written}
        events = instance.get_records_for_run(
            result.run_id, of_type={dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED}, limit=1_000_000
        ).records
        failures = [
            (e.step_failure_data.error.cause or e.step_failure_data.error).message[:2000]
            for e in result.all_events
            if e.is_step_failure and e.step_failure_data.error is not None
        ]
        return {
            "selection": chosen,
            "failures": failures,
            "materialization_events": len(events),
            "success": result.success,
            "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_gb": _peak_gb(),
            "rows": rows,
            "step_seconds": _step_seconds(instance, result.run_id),
        }
    config = {"models": options["models"], "n_folds": options["folds"], "horizon": 28, "history_days": options["history_days"]}
    if options["lgbm_rounds"]:
        config["lgbm_rounds"] = options["lgbm_rounds"]
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        asset_selection=[dg.AssetKey("model_backtest")],
        run_config={"ops": {"model_backtest": {"config": config}}},
    )
    out = {"success": result.success, "seconds": round(time.perf_counter() - t0, 1), "peak_rss_gb": _peak_gb(), "config": config}
    if result.success:
        import polars as pl

        from resources import DeltaStore

        metrics = DeltaStore().read_all("backtest_metrics").filter(pl.col("FOLD") == -1)
        out["metrics"] = metrics.select("MODEL", "REGIME", "WAPE", "BIAS", "COVERAGE_P10_P90", "WRMSSE").sort("REGIME", "MODEL").to_dicts()
        out["fit_predict_seconds"] = _timings(instance, result.run_id)
    return out


def _stockout_inference(files: Path) -> dict:
    """Precision and recall of the inferred stockouts against the generator's recorded runs,
    over listed days, at three thresholds."""
    import numpy as np
    import polars as pl

    from demand_assets.sources.m5 import _window, listed_days

    out = {}
    for alpha in (0.0001, 0.001, 0.01):
        t0 = time.perf_counter()
        window = _window(files, alpha)
        ids, days, sales, in_stock, price = window.ids, window.days, window.sales, window.in_stock, window.price()
        seconds = time.perf_counter() - t0
        truth = np.zeros(sales.shape, dtype=bool)
        row = {v: i for i, v in enumerate(ids["id"].to_list())}
        col = {v: i for i, v in enumerate(days["d"].to_list())}
        for series, start, length in pl.read_csv(files / "stockouts_truth.csv").iter_rows():
            j = col[start]
            truth[row[series], j : j + length] = True
        listed = listed_days(sales, price)
        flagged = ~in_stock & listed
        truth &= listed
        hit = (flagged & truth).sum()
        out[str(alpha)] = {
            "precision": round(float(hit / max(flagged.sum(), 1)), 3),
            "recall": round(float(hit / max(truth.sum(), 1)), 3),
            "flagged_share_of_listed_days": round(float(flagged.sum() / listed.sum()), 4),
            "true_share": round(float(truth.sum() / listed.sum()), 4),
            "load_and_infer_seconds": round(seconds, 1),
        }
    return {"by_alpha": out, "peak_rss_gb": _peak_gb()}


def _step_seconds(instance, run_id: str) -> dict:
    starts, seconds = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            seconds[event.step_key] = round(entry.timestamp - starts.get(event.step_key, entry.timestamp), 1)
    return seconds


def _timings(instance, run_id: str) -> list[str]:
    """The backtest's own progress lines (fit and predict seconds per model and fold)."""
    return [entry.user_message for entry in instance.all_logs(run_id) if entry.user_message.startswith("backtest ")]


def main() -> None:
    # The partitions are defined when the Dagster layer is first imported (just below): M5's
    # days must be partitions by then.
    os.environ["DEMAND_PARTITION_START"] = START.isoformat()
    from demand_assets.domains.models import ForecastingConfig

    defaults = ForecastingConfig()
    parser = argparse.ArgumentParser()
    parser.add_argument("--phases", nargs="*", default=["generate", "data", "backtest"])
    parser.add_argument("--work", default=None, help="folder for the files and the store (default: a temporary one)")
    parser.add_argument("--models", nargs="*", default=list(defaults.models), help="default: model_backtest's default line-up")
    parser.add_argument("--folds", type=int, default=defaults.n_folds)
    parser.add_argument("--history-days", type=int, default=defaults.history_days)
    parser.add_argument("--lgbm-rounds", type=int, default=0, help="0: the default")
    parser.add_argument("--with-placeholders", action="store_true", help="data phase: also select the raw domains M5 lacks (the selection before issue 16)")
    parser.add_argument("--child", default=None)
    args = parser.parse_args()
    options = {
        "models": args.models,
        "folds": args.folds,
        "history_days": args.history_days,
        "lgbm_rounds": args.lgbm_rounds,
        "with_placeholders": args.with_placeholders,
    }
    if args.child:
        print(json.dumps(_phase(args.child, Path(args.work), options), default=str))
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="m5-bench-"))
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "work": str(work), "phases": {}}
    if RESULTS.exists() and json.loads(RESULTS.read_text()).get("work") == str(work):
        results["phases"] = json.loads(RESULTS.read_text())["phases"]  # another phase of the same run
    for phase in args.phases:
        # The backtest runs one model per subprocess, so each model's time and peak RSS are its own.
        runs = [(m, [m]) for m in args.models] if phase == "backtest" else [(None, args.models)]
        key = f"backtest_folds_{args.folds}"  # a 1-fold and a 4-fold measurement are kept side by side
        if phase == "backtest":
            results["phases"][key] = {"config": {k: v for k, v in options.items() if k != "models"}, "by_model": {}}
        for model, models in runs:
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.m5",
                "--child",
                phase,
                "--work",
                str(work),
                "--models",
                *models,
                "--folds",
                str(args.folds),
                "--history-days",
                str(args.history_days),
                "--lgbm-rounds",
                str(args.lgbm_rounds),
                *(["--with-placeholders"] if args.with_placeholders else []),
            ]
            print(f"m5 benchmark: {phase} {model or ''} ...", flush=True)
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
            out = {"error": done.stderr[-3000:]} if done.returncode != 0 else json.loads(done.stdout.strip().splitlines()[-1])
            if model is None:
                results["phases"][f"{phase}_with_placeholders" if phase == "data" and args.with_placeholders else phase] = out
            else:
                results["phases"][key]["by_model"][model] = out
            print(json.dumps(out, default=str)[:2000], flush=True)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=2, default=str))
            if done.returncode != 0 and model is None:
                return


if __name__ == "__main__":
    main()
