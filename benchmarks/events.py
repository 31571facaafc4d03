"""Event logs (issue 20): the reader and the data assets on a generated five-month log, and
whether browsing predicts demand.

Phases (`--phases`, default all):
  generate  `write_event_files` of the synthetic event world (default: about 20 million events,
            5,000 products, 2019-10-01..2020-02-29) into WORK/events, unless present
  reader    the whole log read, checked and counted per product and day, as the source does it
            (`EventLogSource`: rules, duplicates, demand and engagement panels), in a process of
            its own: wall time, CPU seconds, peak RSS
  data      `dg launch` of the data selection (product_demand, product_engagement,
            training_dataset) over the whole log as one single-run backfill on a fresh store, then
            the last day again alone (the daily run when a new day arrives): wall, CPU, peak RSS
  value     the default LightGBM with and without the engagement features (ENGAGEMENT_*) on the
            same rolling-origin folds (3 x 28 days): WAPE and bias overall and by horizon day,
            at the product level and at the brand level

    .venv/bin/python -m benchmarks.events --work /tmp/events_bench
    .venv/bin/python -m benchmarks.events --work /tmp/events_small --small   # a quick run (about 280,000 events)

Writes benchmarks/results/events.json (events_small.json with --small) and, for `value`, a chart
of WAPE by horizon day (benchmarks/results/engagement_by_horizon.png).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from demand_assets.sources.events import EventLevel

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent

_MEASURE = (
    "import json, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'returncode': code, 'cpu_seconds': u.ru_utime + u.ru_stime, 'peak_rss_gb': u.ru_maxrss / 1024**2}))\n"
)
_READ = (
    "import sys, time\n"
    "from demand_assets.sources.events import EventLogSource\n"
    "t = time.perf_counter()\n"
    "source = EventLogSource(sys.argv[1], progress=print)\n"
    "report = source.report\n"
    "print('catalog', source.catalog().products.height, 'products', round(time.perf_counter() - t, 1), 's')\n"
)


def _measured(command: list[str], env: dict[str, str], log: Path) -> dict:
    began = time.perf_counter()
    with open(log, "w") as stderr:
        done = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    seconds = time.perf_counter() - began
    lines = done.stdout.strip().splitlines()
    usage = json.loads(lines[-1])
    if usage["returncode"] != 0:
        raise RuntimeError(f"{' '.join(command)} failed, see {log}:\n{log.read_text()[-4000:]}")
    return {"seconds": round(seconds, 1), "cpu_seconds": round(usage["cpu_seconds"], 1), "peak_rss_gb": round(usage["peak_rss_gb"], 3), "output": lines[:-1]}


def _world(small: bool):
    from demand_assets.sources.events import EventWorld

    return EventWorld.small() if small else EventWorld()


def generate(work: Path, small: bool) -> dict:
    from demand_assets.sources.events import write_event_files

    log = work / "events"
    if log.exists() and any(log.glob("*.csv*")):
        return {"skipped": "present", "events": sum(_lines(p) for p in log.glob("*.csv"))}
    began = time.perf_counter()
    written = write_event_files(log, _world(small))
    return {"seconds": round(time.perf_counter() - began, 1), "events": sum(written.values()), "files": written}


def _lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle) - 1


def reader(work: Path) -> dict:
    out = _measured([sys.executable, "-c", _READ, str(work / "events")], dict(os.environ), work / "reader.log")
    print(f"reader: {out['seconds']} s, peak {out['peak_rss_gb']} GB", flush=True)
    return out


def _env(work: Path, world) -> dict[str, str]:
    home = work / "home"
    return dict(
        os.environ,
        DEMAND_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        DEMAND_SOURCE="events",
        DEMAND_EVENTS_PATH=str(work / "events"),
        DEMAND_PARTITION_START=world.start.isoformat(),
        DEMAND_EXECUTOR="in_process",
    )


def data(work: Path, world) -> dict:
    import shutil

    env = _env(work, world)
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    bin_ = Path(sys.executable).parent
    subprocess.run([str(bin_ / "demand-deploy"), "pools"], env=env, check=True, capture_output=True)
    assets = "product_demand,product_engagement,training_dataset"
    last = world.end - dt.timedelta(days=1)
    before = last - dt.timedelta(days=1)
    backfill = _measured([str(bin_ / "dg"), "launch", "--assets", assets, "--partition-range", f"{world.start}...{before}"], env, work / "data_backfill.log")
    one_day = _measured([str(bin_ / "dg"), "launch", "--assets", assets, "--partition", str(last)], env, work / "data_one_day.log")
    for name, out in (("backfill", backfill), ("one new day", one_day)):
        out.pop("output")
        print(f"data {name}: {out['seconds']} s, peak {out['peak_rss_gb']} GB", flush=True)
    return {"backfill": backfill | {"days": (before - world.start).days + 1}, "one_new_day": one_day}


def value(work: Path, level: EventLevel) -> dict:
    import polars as pl

    from demand_assets.features.training_dataset import build_training_dataset
    from demand_assets.forecasting.backtest import rolling_origin_folds, run_backtest
    from demand_assets.forecasting.suite import SuiteSettings, model_factories
    from demand_assets.sources import Domain
    from demand_assets.sources.events import EventLogSource
    from demand_assets.sources.events.reader import ALL_TIME

    source = EventLogSource(work / "events", level=level)
    demand = pl.concat(list(source.read(Domain.PRODUCT_DEMAND, *ALL_TIME)))
    engagement = pl.concat(list(source.read(Domain.PRODUCT_ENGAGEMENT, *ALL_TIME)))
    first, last = demand["DATE"].min(), demand["DATE"].max()
    products = source.catalog().products
    end = last + dt.timedelta(days=1)
    with_engagement = build_training_dataset(demand, None, None, products, first, end, engagement_history=engagement)
    without = build_training_dataset(demand, None, None, products, first, end)
    folds = rolling_origin_folds(last, n_folds=3, horizon=28)
    factory = model_factories(SuiteSettings())["lightgbm"]
    results = {}
    by_horizon = {}
    for name, dataset in (("without_engagement", without), ("with_engagement", with_engagement)):
        began = time.perf_counter()
        result = run_backtest(dataset, {"lightgbm": factory}, folds, progress=functools.partial(_progress, name))
        overall = result.metrics.filter((pl.col("FOLD") == -1) & (pl.col("REGIME") == "all")).row(0, named=True)
        origins = pl.DataFrame({"FOLD": [f.index for f in folds], "ORIGIN": [f.origin for f in folds]})
        horizon = (
            result.forecasts.join(origins, on="FOLD")
            .with_columns((pl.col("DATE") - pl.col("ORIGIN")).dt.total_days().alias("HORIZON_DAY"))
            .group_by("HORIZON_DAY")
            .agg(((pl.col("MEAN") - pl.col("ACTUAL")).abs().sum() / pl.col("ACTUAL").sum()).alias("WAPE"))
            .sort("HORIZON_DAY")
        )
        by_horizon[name] = horizon
        results[name] = {
            "WAPE": round(overall["WAPE"], 4),
            "BIAS": round(overall["BIAS"], 4),
            "MASE": round(overall["MASE"], 4) if overall.get("MASE") is not None else None,
            "seconds": round(time.perf_counter() - began, 1),
            "wape_by_horizon_week": {
                f"days_{a}_{b}": round(horizon.filter(pl.col("HORIZON_DAY").is_between(a, b))["WAPE"].mean(), 4)
                for a, b in ((1, 7), (8, 14), (15, 21), (22, 28))
            },
            "wape_by_horizon_day": [round(w, 4) for w in horizon["WAPE"].to_list()],
        }
        print(f"value {level} {name}: WAPE {results[name]['WAPE']}, bias {results[name]['BIAS']}", flush=True)
    _chart(by_horizon, level)
    return {
        "level": level,
        "series": demand.select("PRODUCT").n_unique(),
        "days": (last - first).days + 1,
        "folds": [str(f.origin) for f in folds],
        "zero_share": round(float((demand["PRODUCT_DEMAND"] == 0).mean()), 3),
        **results,
        "wape_change": round(results["with_engagement"]["WAPE"] / results["without_engagement"]["WAPE"] - 1, 4),
    }


def _progress(name: str, message: str) -> None:
    print(f"  {name}: {message}", flush=True)


def _chart(by_horizon: dict, level: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    for name, frame in by_horizon.items():
        axis.plot(frame["HORIZON_DAY"].to_list(), frame["WAPE"].to_list(), label=name.replace("_", " "))
    axis.set_xlabel("horizon day")
    axis.set_ylabel("WAPE")
    axis.set_title(f"LightGBM with and without engagement features ({level} level)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(RESULTS / f"engagement_by_horizon_{level}.png", dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--small", action="store_true", help="EventWorld.small (a quick run) instead of the 20-million-event log")
    parser.add_argument("--phases", nargs="*", default=["generate", "reader", "data", "value"])
    parser.add_argument("--levels", nargs="*", default=["product", "brand"])
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("events_small.json" if args.small else "events.json")
    results = json.loads(path.read_text()) if path.exists() else {}
    results |= {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "date": dt.date.today().isoformat()}
    world = _world(args.small)
    for phase in args.phases:
        if phase == "generate":
            results["generate"] = generate(work, args.small)
        elif phase == "reader":
            results["reader"] = reader(work)
        elif phase == "data":
            results["data"] = data(work, world)
        elif phase == "value":
            results["value"] = {level: value(work, level) for level in args.levels}
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
