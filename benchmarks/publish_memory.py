"""Where the backtest's publishing step spends its memory (issue 19: no step above 8 GB).

`publish_backtest` (demand_assets/domains/backtest.py) is the one step of a backtest that sees
every unit's forecasts and the whole window at once. This runs its stages one after another in
one process, on a training dataset already stored by `benchmarks.fanout` (M5-shaped, `--work`),
with `--models` x `--folds` copies of seasonal naive's real forecasts standing in for the line-up's
units (each copy a separate frame, as each unit's result is unpickled apart from the others), and
records each stage's peak and resident memory (the kernel's VmHWM, reset between stages through
/proc/self/clear_refs, and VmRSS).

    .venv/bin/python -m benchmarks.publish_memory --work /tmp/fanout_m5 --models 6 --folds 4

Writes benchmarks/results/publish_memory.json (one entry per models x folds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import pickle
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "publish_memory.json"


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024**2  # kB -> GB
    raise KeyError(field)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


class Stages:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def __call__(self, name: str, work):
        gc.collect()
        _reset_peak()
        before = _status("VmRSS")
        began = time.perf_counter()
        out = work()
        seconds = time.perf_counter() - began
        row = {
            "stage": name,
            "seconds": round(seconds, 1),
            "rss_before_gb": round(before, 2),
            "peak_gb": round(_status("VmHWM"), 2),
            "rss_after_gb": round(_status("VmRSS"), 2),
        }
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="a benchmarks.fanout work folder with its training dataset stored")
    parser.add_argument("--models", type=int, default=6, help="model copies per fold (the default line-up has six)")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--history-days", type=int, default=730)
    args = parser.parse_args(argv)
    work = Path(args.work)
    os.environ["DEMAND_HOME"] = str(work / "home")

    import polars as pl

    from contracts.registry import Table
    from demand_assets.forecasting.backtest import SCORING_COLUMNS, backtest_unit, rolling_origin_folds, score_backtest, wrmsse_by_model
    from demand_assets.forecasting.suite import SuiteSettings, model_factories
    from demand_assets.sources.m5 import M5Source
    from resources.delta_store import DeltaStore

    stages = Stages()
    stages("imports (the step's process before it reads)", lambda: None)
    store = DeltaStore()
    end = store.last_date(Table.TRAINING_DATASET)
    start = end - dt.timedelta(days=args.history_days - 1)
    folds = rolling_origin_folds(end, n_folds=args.folds, horizon=28)

    # Seasonal naive's real forecasts, one per fold, from the same window (not measured: the units' work).
    naive = model_factories(SuiteSettings(models=("seasonal_naive",)))["seasonal_naive"]
    window = store.read_window(Table.TRAINING_DATASET, start, end + dt.timedelta(days=1), ["DATE", "COUNTRY", "PRODUCT", "PRODUCT_DEMAND", "IN_STOCK"])
    blobs = [pickle.dumps(backtest_unit(window, "seasonal_naive", naive, fold)) for fold in folds]
    del window

    def load_results():
        # As Dagster hands the fan-in step its inputs: every unit's result, each unpickled on its own.
        results = []
        for m in range(args.models):
            for blob in blobs:
                frame, timing = pickle.loads(blob)
                results.append((frame.with_columns(pl.lit(f"model_{m}").alias("MODEL")), timing | {"MODEL": f"model_{m}"}))
        return results

    results = stages(f"units' results ({args.models} models x {args.folds} folds)", load_results)
    dataset = stages("read the window's scoring columns", lambda: store.read_window(Table.TRAINING_DATASET, start, end + dt.timedelta(days=1), SCORING_COLUMNS))
    scored = stages("score_backtest", lambda: score_backtest(dataset, [r[0] for r in results], [r[1] for r in results], folds))
    hierarchy = M5Source(work / "m5_files").catalog().hierarchy()
    wrmsse = stages("wrmsse_by_model", lambda: wrmsse_by_model(dataset, scored.forecasts, folds, hierarchy))
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        out = DeltaStore(root_uri=scratch)
        stages("write backtest_forecasts", lambda: out.overwrite(Table.BACKTEST_FORECASTS, scored.forecasts))

    entry = {
        "date": str(dt.date.today()),
        "series": scored.forecasts.select("COUNTRY", "PRODUCT").n_unique(),
        "window_rows": dataset.height,
        "forecast_rows": scored.forecasts.height,
        "sizes_gb": {
            "window": round(dataset.estimated_size() / 1024**3, 2),
            "units_results": round(sum(r[0].estimated_size() for r in results) / 1024**3, 2),
            "forecasts": round(scored.forecasts.estimated_size() / 1024**3, 2),
        },
        "stages": stages.rows,
        "wrmsse_all_folds": wrmsse.filter(pl.col("FOLD") == -1)["WRMSSE"].to_list(),
        "metrics_all_folds": scored.metrics.filter(pl.col("FOLD") == -1).select("MODEL", "REGIME", "WAPE", "RMSE", "MASE", "BIAS").rows(),
        "peak_gb": max(r["peak_gb"] for r in stages.rows),
    }
    print(json.dumps(entry, indent=1))
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    saved[f"models_{args.models}_folds_{args.folds}"] = entry
    RESULTS.write_text(json.dumps(saved, indent=1))


if __name__ == "__main__":
    main()
