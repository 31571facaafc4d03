"""Where a backtest unit spends its memory (issue 19: no unit above 8 GB peak RSS).

Runs one unit of `model_backtest` (one model, one fold, every series: a pooled global model's
unit) in this process, as `backtest_unit_step` does: it reads the columns the model reads from the
training dataset stored by `benchmarks.fanout` (`--work`), then fits and forecasts. A thread samples
the process's resident memory (VmRSS) every 0.2 s and every log line of the unit opens a new phase,
so the result is the unit's memory timeline labelled by what it was doing: each phase's peak,
where it began and how long it lasted, and the process's peak (the kernel's VmHWM).

`--quick` trains far less (LightGBM 20 rounds, DeepAR 2 epochs of 5 batches and 20 sample paths
instead of 200, the hybrid one cross-fitting window) to find where memory goes in minutes; the
data held and the features built are the same size as in a full unit, the training is shorter
and the sample paths (a chunk of 1,024 series at a time: 23 MB in a full unit) fewer.

    .venv/bin/python -m benchmarks.unit_memory --work /tmp/fanout_m5 --model lightgbm --quick

Writes benchmarks/results/unit_memory.json (one entry per model and --quick).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.publish_memory import _status

RESULTS = Path(__file__).resolve().parent / "results" / "unit_memory.json"


class Timeline(logging.Handler):
    """Phases opened by log lines (or `mark`), each with the largest VmRSS sampled while it lasted."""

    def __init__(self, every: float = 0.2) -> None:
        super().__init__(logging.INFO)
        self.began = time.perf_counter()
        self.phases: list[dict] = []
        self._guard = threading.Lock()
        self.stop = threading.Event()
        self.mark("start")
        self.sampler = threading.Thread(target=self._sample, args=(every,), daemon=True)
        self.sampler.start()

    def mark(self, what: str) -> None:
        rss = _status("VmRSS")
        with self._guard:
            self.phases.append(
                {"phase": what[:160], "at_s": round(time.perf_counter() - self.began, 1), "rss_at_start_gb": round(rss, 2), "peak_gb": round(rss, 2)}
            )

    def emit(self, record: logging.LogRecord) -> None:
        self.mark(f"{record.name}: {record.getMessage()}")

    def _sample(self, every: float) -> None:
        while not self.stop.wait(every):
            rss = _status("VmRSS")
            with self._guard:
                self.phases[-1]["peak_gb"] = round(max(self.phases[-1]["peak_gb"], rss), 2)

    def close(self) -> None:
        self.stop.set()
        self.sampler.join()
        super().close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="a benchmarks.fanout work folder with its training dataset stored")
    parser.add_argument("--model", required=True, help="a model of the line-up: lightgbm, deepar, hybrid, ...")
    parser.add_argument("--fold", type=int, default=0, help="which of four folds (0: the oldest origin)")
    parser.add_argument("--history-days", type=int, default=730)
    parser.add_argument("--quick", action="store_true", help="short training (see above): the memory of the data, not of long training")
    args = parser.parse_args(argv)
    work = Path(args.work)
    os.environ["DEMAND_HOME"] = str(work / "home")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    timeline = Timeline()
    logging.getLogger().addHandler(timeline)

    import polars as pl

    from contracts.registry import Table
    from demand_assets.forecasting.backtest import backtest_unit, rolling_origin_folds
    from demand_assets.forecasting.suite import SuiteSettings, input_columns, model_factories
    from resources.delta_store import DeltaStore

    store = DeltaStore()
    end = store.last_date(Table.TRAINING_DATASET)
    start = end - dt.timedelta(days=args.history_days - 1)
    fold = rolling_origin_folds(end, n_folds=4, horizon=28)[args.fold]
    settings = SuiteSettings(models=(args.model,))
    if args.quick:
        settings = replace(settings, lgbm_rounds=20, deepar_epochs=2, deepar_batches_per_epoch=5, deepar_samples=20, hybrid_windows=1)
    schema = store.scan(Table.TRAINING_DATASET).collect_schema()
    columns = input_columns(args.model, schema)
    timeline.mark(f"read {len(columns) if columns else 'all'} columns")
    dataset = store.read_window(Table.TRAINING_DATASET, start, end + dt.timedelta(days=1), columns)
    timeline.mark(f"read done: {dataset.height:,} rows x {dataset.width} columns, {dataset.estimated_size() / 1024**3:.2f} GB")
    factory = model_factories(settings)[args.model]
    began = time.perf_counter()
    forecasts, timing = backtest_unit(dataset, args.model, factory, fold, n_folds=4)
    seconds = time.perf_counter() - began
    timeline.mark("unit done")
    timeline.close()
    peak = _status("VmHWM")

    from demand_assets.forecasting.backtest import score_forecasts

    metrics = score_forecasts(forecasts).filter(pl.col("FOLD") == -1).select("WAPE", "RMSE", "BIAS").row(0, named=True)
    entry = {
        "date": str(dt.date.today()),
        "model": args.model,
        "quick": args.quick,
        "fold": args.fold,
        "rows": dataset.height,
        "columns": dataset.width,
        "window_gb": round(dataset.estimated_size() / 1024**3, 2),
        "unit_seconds": round(seconds, 1),
        "peak_rss_gb": round(peak, 2),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "timing": timing,
        "phases": timeline.phases,
    }
    print(json.dumps({k: v for k, v in entry.items() if k != "phases"}, indent=1))
    for p in sorted(timeline.phases, key=lambda p: -p["peak_gb"])[:8]:
        print(f"{p['peak_gb']:6.2f} GB  at {p['at_s']:7.1f}s  {p['phase']}")
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    saved[f"{args.model}{'_quick' if args.quick else ''}"] = entry
    RESULTS.write_text(json.dumps(saved, indent=1))


if __name__ == "__main__":
    main()
