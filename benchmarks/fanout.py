"""The backtest fanned out (issue 19, point 4): serial vs units on 2 processes vs per-series fits
on a 2-worker Dask LocalCluster, on an M5-shaped panel (project-generated M5-format files, M5's
10 stores and 7 departments, `--scale` of M5's items; 1.0 is M5's 30,490 series).

Modes, each `model_backtest` on the same stored training dataset, each in its own `dg launch`
(a fresh process tree; wall time; CPU core-seconds of the whole machine over the run, which is
otherwise idle, since forkserver-started steps and Dask workers are not waited-for children; each
step's peak RSS from its own output metadata):
  serial     DEMAND_EXECUTOR=in_process, DEMAND_COMPUTE=in_process: one process does everything
  fanout     DEMAND_EXECUTOR=multiprocess with 2 concurrent steps, DEMAND_TRAINING_SLOTS=2,
             DEMAND_COMPUTE=in_process: every unit (model x fold x shard) in a process of its own,
             each holding its libraries to half the cores (the compute resource's thread budget),
             forked from a server that has imported the code location (DEMAND_STEP_START=forkserver)
  fanout_spawn  as fanout, each step's process spawned afresh (DEMAND_STEP_START=spawn, Dagster's default)
  pool       DEMAND_EXECUTOR=in_process, DEMAND_COMPUTE=processes (the default compute backend):
             the units in one process, ETS's fits and DeepAR's sample paths on a local pool of 2
  dask       DEMAND_EXECUTOR=in_process, DEMAND_COMPUTE=dask on a LocalCluster of 2 worker
             processes: the units in one process, ETS's fits and DeepAR's sample paths on the cluster
  dask_lgbm  as dask, and LightGBM trained by lightgbm.dask across the cluster (lgbm_train_on: dask)
The metrics must be identical across serial, pool, fanout and dask (LightGBM's within float
rounding: a unit on 1 thread sums in another order); dask_lgbm is within a tolerance. `--global-models per_shard` runs LightGBM once per
store (a unit per fold and store) instead of across all series, for the comparison of both. Unit durations (from the fanout run's events)
and the per-unit overhead feed the projection for 8, 32 and 128 workers (docs/scaling.md).

    .venv/bin/python -m benchmarks.fanout --work /tmp/fanout --scale 0.1 --models seasonal_naive ets lightgbm --folds 2

Writes benchmarks/results/fanout.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from demand_assets.forecasting.compute import local_cluster, peak_rss_gb

RESULTS = Path(__file__).resolve().parent / "results" / "fanout.json"
ROOT = Path(__file__).resolve().parent.parent
START = dt.date(2011, 1, 29)


def _shape(scale: float):
    from demand_assets.sources.m5 import M5Shape

    full = M5Shape()
    return M5Shape(departments=tuple((name, max(1, round(items * scale))) for name, items in full.departments))


def _env(work: Path, **extra: str) -> dict[str, str]:
    home = work / "home"
    return dict(
        os.environ,
        DEMAND_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        DEMAND_SOURCE="m5",
        DEMAND_M5_DIR=str(work / "m5_files"),
        DEMAND_PARTITION_START=START.isoformat(),
        **extra,
    )


# Runs a command and prints its process tree's CPU seconds and the peak RSS of its largest
# process, from the kernel's accounting of the waited-for descendants of this fresh wrapper.
_MEASURE = (
    "import json, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'returncode': code, 'cpu_seconds': u.ru_utime + u.ru_stime, 'peak_rss_gb': u.ru_maxrss / 1024**2}))\n"
)


def _machine_cpu_seconds() -> float:
    """CPU time every process on the machine has used since boot (/proc/stat: user, nice, system,
    irq, softirq), in seconds."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _launch(work: Path, assets: str, env: dict[str, str], config: Path | None = None, partition_range: str | None = None) -> dict:
    command = [str(Path(sys.executable).parent / "dg"), "launch", "--assets", assets]
    if config is not None:
        command += ["-c", str(config)]
    if partition_range is not None:
        command += ["--partition-range", partition_range]
    began, cpu_began = time.perf_counter(), _machine_cpu_seconds()
    log = work / f"launch_{int(time.time())}.log"
    with open(log, "w") as stderr:
        done = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    seconds, cpu = time.perf_counter() - began, _machine_cpu_seconds() - cpu_began
    usage = json.loads(done.stdout.strip().splitlines()[-1])
    if usage["returncode"] != 0:
        raise RuntimeError(f"{' '.join(command)} failed, see {log}:\n{log.read_text()[-5000:]}")
    return {
        "seconds": round(seconds, 1),
        # The machine's CPU over the run (nothing else runs during a benchmark): it counts step
        # processes forked by the executor's forkserver and Dask's workers, which the launched
        # tree's own accounting (tree_cpu_seconds: the waited-for children) misses.
        "cpu_seconds": round(cpu, 1),
        "tree_cpu_seconds": round(usage["cpu_seconds"], 1),
        "peak_rss_gb": round(usage["peak_rss_gb"], 3),
    }


def _prepare(work: Path, scale: float) -> dict:
    from demand_assets.sources.m5 import write_m5_files

    shape = _shape(scale)
    began = time.perf_counter()
    counts = write_m5_files(work / "m5_files", shape)
    env = _env(work)
    (work / "home" / "dagster").mkdir(parents=True, exist_ok=True)
    (work / "home" / "dagster" / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    subprocess.run([str(Path(sys.executable).parent / "demand-deploy"), "pools"], env=env, check=True, capture_output=True)
    last = START + dt.timedelta(days=shape.days - 1)
    data = _launch(work, "product_demand,training_dataset", _env(work, DEMAND_EXECUTOR="in_process"), partition_range=f"{START}...{last}")
    return {
        "series": counts["sales_train_evaluation.csv"],
        "days": shape.days,
        "generate_and_data_seconds": round(time.perf_counter() - began, 1),
        "data": data,
    }


def _latest_run(work: Path) -> dict:
    """Step durations and processes of the newest run in the benchmark's instance."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(work / "home" / "dagster")) as instance:
        (run,) = instance.get_runs(limit=1)
        starts, spans, pids = {}, {}, {}
        peaks: dict[str, float] = {}
        for record in instance.get_records_for_run(run.run_id, limit=1_000_000).records:
            entry = record.event_log_entry
            event = entry.dagster_event
            if event is None or not entry.step_key:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                starts[entry.step_key] = entry.timestamp
                pids[entry.step_key] = event.pid
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                spans[entry.step_key] = round(entry.timestamp - starts[entry.step_key], 2)
            elif event.event_type == dg.DagsterEventType.STEP_OUTPUT:
                # each step's process's peak RSS (its own with a process per step), from its output metadata
                peak = event.step_output_data.metadata.get("peak_rss_gb")
                if peak is not None:
                    peaks[entry.step_key] = max(peaks.get(entry.step_key, 0.0), float(peak.value))
        return {"status": run.status.value, "step_seconds": spans, "step_peak_rss_gb": peaks, "processes": len(set(pids.values())), "run_seconds": None}


def _metrics(work: Path) -> list[dict]:
    import polars as pl
    from deltalake import DeltaTable

    table = DeltaTable(str(work / "home" / "delta" / "backtest_metrics")).to_pyarrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.filter(pl.col("FOLD") == -1).select("MODEL", "REGIME", "WAPE", "RMSE", "BIAS", "WRMSSE").sort("MODEL", "REGIME").to_dicts()


def _mode(work: Path, mode: str, config: Path) -> dict:
    extra = {"DEMAND_COMPUTE": "in_process", "DEMAND_EXECUTOR": "in_process"}
    cluster = None
    if mode in ("fanout", "fanout_spawn"):
        extra |= {"DEMAND_EXECUTOR": "multiprocess", "DEMAND_MAX_CONCURRENT": "2", "DEMAND_TRAINING_SLOTS": "2"}
        extra["DEMAND_STEP_START"] = "spawn" if mode == "fanout_spawn" else "forkserver"
    elif mode == "pool":
        extra |= {"DEMAND_COMPUTE": "processes"}
    elif mode == "dask_lgbm":
        run_config = json.loads(config.read_text())
        run_config["ops"]["model_backtest"]["config"]["lgbm_train_on"] = "dask"
        config = config.with_name("backtest_dask_lgbm.yaml")
        config.write_text(json.dumps(run_config))
    with contextlib.ExitStack() as stack:
        if mode in ("dask", "dask_lgbm"):
            # Workers started as docs/scaling.md says (no malloc trim threshold, one arena), and the
            # benchmark's own environment, which the `dg launch` below inherits, left as it was.
            cluster = stack.enter_context(local_cluster(2))
            extra |= {"DEMAND_COMPUTE": "dask", "DEMAND_DASK_ADDRESS": cluster.scheduler_address}
        env = _env(work, **extra)
        subprocess.run([str(Path(sys.executable).parent / "demand-deploy"), "pools"], env=env, check=True, capture_output=True)
        cpu_before = _dask_cpu(cluster)
        out = _launch(work, "model_backtest", env, config)
        if cluster is not None:
            out["dask_workers_cpu_seconds"] = round(_dask_cpu(cluster) - cpu_before, 1)
            out["dask_workers_peak_rss_gb"] = _dask_peak_rss(cluster)  # their CPU is in the machine's cpu_seconds
    out |= _latest_run(work)
    out["metrics"] = _metrics(work)
    print(f"{mode}: {out['seconds']} s wall, {out['cpu_seconds']} CPU s, {out['processes']} processes", flush=True)
    return out


def _dask_cpu(cluster) -> float:
    """CPU seconds used so far by the cluster's worker processes (psutil, as Dask itself reports)."""
    if cluster is None:
        return 0.0
    import psutil

    total = 0.0
    for worker in cluster.workers.values():
        process = psutil.Process(worker.process.pid) if getattr(worker, "process", None) else None
        if process is not None:
            for p in [process, *process.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
    return total


def _dask_peak_rss(cluster) -> list[float]:
    """Each cluster worker's peak RSS in GB so far, as the worker itself reports it
    (`compute.peak_rss_gb`, which every step reports of its own process)."""
    from distributed import Client

    with Client(cluster) as client:
        return list(client.run(peak_rss_gb).values())


def _max_difference(metrics: list[dict], reference: list[dict]) -> float | None:
    """The largest absolute difference of any metric between two runs' rows (None: different rows)."""
    if [(r["MODEL"], r["REGIME"]) for r in metrics] != [(r["MODEL"], r["REGIME"]) for r in reference]:
        return None
    diffs = [abs(a[k] - b[k]) for a, b in zip(metrics, reference, strict=True) for k in a if isinstance(a[k], float) and isinstance(b[k], float)]
    return max(diffs, default=0.0)


def lpt_makespan(durations: list[float], workers: int) -> float:
    """Wall time of `durations` on `workers` by longest-processing-time-first list scheduling
    (what a queue of units on a pool of workers does, within 4/3 of the optimum)."""
    loads = [0.0] * workers
    for d in sorted(durations, reverse=True):
        i = loads.index(min(loads))
        loads[i] += d
    return max(loads)


def measured_per_shard_ratios(keys: tuple[str, ...] = ("scale_1.0_folds_1_seasonal_naive-lightgbm-deepar", "scale_1.0_folds_1_hybrid")) -> dict[str, float]:
    """Per model, the seconds of its ten store units over its pooled unit's, both fanned out (two
    units at once, one thread each) on the same M5-size panel: what one store's model costs as a
    share of the pooled one, times ten. Each key names a pooled run; its per-store twin is the
    same key with `_per_shard`. A model with no measured pair (the hybrid before it was measured)
    is given DeepAR's ratio, a stated assumption."""
    saved = json.loads(RESULTS.read_text())
    ratios = {}
    for key in keys:
        twin = key.replace("_folds_1_", "_folds_1_per_shard_")
        if key not in saved or twin not in saved:
            continue
        pooled, per_store = (saved[k]["modes"]["fanout"]["step_seconds"] for k in (key, twin))
        for model in ("lightgbm", "deepar", "hybrid"):
            whole = sum(v for k, v in pooled.items() if f"[{model}__" in k)
            if whole:
                ratios[model] = round(sum(v for k, v in per_store.items() if f"[{model}__" in k) / whole, 3)
    ratios.setdefault("hybrid", ratios["deepar"])
    return ratios


def measured_ets_units(key: str = "scale_1.0_folds_1_ets") -> list[float]:
    """ETS's ten store units of one fold at M5 size, each measured as a step (fanned out, one
    thread each; `--models ets --modes fanout`), or [] when not measured. They replace the
    one-step figure of m5.json (1,621 s on a 2-process pool, measured before the thread budget),
    which at 3,241 core-seconds a fold is 4.8 times the units' 680."""
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    steps = saved.get(key, {}).get("modes", {}).get("fanout", {}).get("step_seconds", {})
    return [v for k, v in steps.items() if "[ets__" in k]


def project_m5(
    overhead_s: float,
    publish_s: float,
    folds: int = 4,
    stores: int = 10,
    global_models: str = "pooled",
    per_shard_ratio: dict[str, float] | None = None,
    sampling: tuple[float, float, int] | None = None,
) -> dict:
    """Projected wall time of M5's backtest (the default line-up, `folds` folds) on 1 to 128
    workers, from the per-model one-fold step times measured at M5 size (results/m5.json,
    backtest_folds_1; ETS there ran on a 2-process pool, so its core-seconds are twice its wall;
    ETS's store units measured as units, `measured_ets_units`, replace it when present)
    split into units as model_backtest splits them (ETS per store; the global models per store
    too with `global_models` "per_shard", each store's unit costing `per_shard_ratio[model]` /
    `stores` of the pooled unit: the ratio of the ten store units' seconds to the pooled unit's,
    both fanned out at M5 size, from `measured_per_shard_ratios`), plus the measured per-unit
    overhead (a step process starting and reading its slice) and the publishing step.

    `sampling` (serial_s, chunk_s, cluster_workers): DeepAR's sample paths drawn on a Dask
    cluster of `cluster_workers` single-threaded workers instead of in the unit. serial_s is one
    pass's sampling over M5's series in one process (measured), chunk_s one 1,024-series chunk on
    one worker (measured); a pass then takes ceil(chunks / workers) x chunk_s of the unit's wall
    time, and its core-seconds move to the cluster. DeepAR makes one pass a unit, the hybrid
    eight (three cross-fitted windows and the final model, two each)."""
    measured = json.loads((RESULTS.parent / "m5.json").read_text())["phases"]["backtest_folds_1"]["by_model"]
    ets_units = measured_ets_units()
    ratios = per_shard_ratio or {}
    passes = {"deepar": 1, "hybrid": 8}
    units, cluster_core_s = [], 0.0
    for name, out in measured.items():
        base = name.removesuffix("_uncensored_training")
        seconds = out["seconds"] * (2 if base == "ets" else 1)
        if sampling is not None and base in passes:
            serial_s, chunk_s, workers = sampling
            n_chunks = math.ceil(30_490 / 1024) if global_models == "pooled" else math.ceil(30_490 / stores / 1024)
            per_pass = math.ceil(n_chunks / workers) * chunk_s
            n_units = folds * (1 if global_models == "pooled" else stores)
            # pooled: a pass covers every series; per store: the store's own chunks
            seconds -= passes[base] * serial_s
            cluster_core_s += passes[base] * n_chunks * chunk_s * n_units
            extra = passes[base] * per_pass
        else:
            extra = 0.0
        if base == "ets" and ets_units:
            units += [u + overhead_s for u in ets_units] * folds  # its store units, measured as units
        elif base == "ets":
            units += [seconds / stores + overhead_s] * (stores * folds)
        elif base == "seasonal_naive" or global_models == "pooled":
            units += [seconds + extra + overhead_s] * folds
        else:
            units += [seconds * ratios[base] / stores + extra + overhead_s] * (stores * folds)
    total = sum(units)
    out = {
        "global_models": global_models,
        "per_shard_ratio": ratios if global_models == "per_shard" else None,
        "sampling_on_cluster": None if sampling is None else {"serial_pass_s": sampling[0], "chunk_s": sampling[1], "cluster_workers": sampling[2]},
        "cluster_core_hours": round(cluster_core_s / 3600, 2),
        "units": len(units),
        "unit_core_hours": round(total / 3600, 2),
        "longest_unit_s": round(max(units), 1),
        "publish_s": publish_s,
    }
    out["wall_minutes"] = {str(w): round((lpt_makespan(units, w) + publish_s) / 60, 1) for w in (1, 2, 8, 32, 64, 128)}
    out["bound"] = {
        str(w): "critical path (the longest unit)" if lpt_makespan(units, w) <= max(units) * 1.05 else "total work / workers" for w in (8, 32, 64, 128)
    }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--scale", type=float, default=0.1, help="share of M5's items per department (1.0: M5's 30,490 series)")
    parser.add_argument("--models", nargs="*", default=["seasonal_naive", "ets", "lightgbm"])
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--modes", nargs="*", default=["serial", "fanout", "dask"], choices=["serial", "pool", "fanout", "fanout_spawn", "dask", "dask_lgbm"])
    parser.add_argument(
        "--project",
        nargs=2,
        type=float,
        metavar=("OVERHEAD_S", "PUBLISH_S"),
        help="only project M5's four folds (pooled and per-shard global models) from these measured figures and the per-store "
        "units measured at M5 size, into fanout.json",
    )
    parser.add_argument(
        "--sampling",
        nargs=3,
        type=float,
        metavar=("SERIAL_PASS_S", "CHUNK_S", "CLUSTER_WORKERS"),
        help="with --project: also project with DeepAR's sample paths on a Dask cluster of this many workers (one pass's sampling in one "
        "process, and one chunk's on one worker, both measured)",
    )
    parser.add_argument("--history-days", type=int, default=730)
    parser.add_argument(
        "--global-models", choices=["pooled", "per_shard"], default="pooled", help="LightGBM (and the other global models) across all series, or one per store"
    )
    args = parser.parse_args(argv)
    if args.project:
        overhead, publish = args.project
        ratio = measured_per_shard_ratios()
        projections = {g: project_m5(overhead, publish, global_models=g, per_shard_ratio=ratio) for g in ("pooled", "per_shard")}
        if args.sampling:
            serial_s, chunk_s, workers = args.sampling
            for g in ("pooled", "per_shard"):
                projections[f"{g}_sampling_on_cluster"] = project_m5(
                    overhead, publish, global_models=g, per_shard_ratio=ratio, sampling=(serial_s, chunk_s, int(workers))
                )
        saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        RESULTS.write_text(json.dumps(saved | {"projection_m5": projections}, indent=1))
        print(json.dumps(projections, indent=1))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": str(dt.date.today()),
        "scale": args.scale,
        "models": args.models,
        "folds": args.folds,
        "global_models": args.global_models,
    }
    if not (work / "home" / "delta" / "training_dataset").exists():
        results["prepare"] = _prepare(work, args.scale)
        print("prepared", results["prepare"], flush=True)
    config = work / "backtest.yaml"
    config.write_text(
        json.dumps(
            {
                "ops": {
                    "model_backtest": {
                        "config": {
                            "models": args.models,
                            "n_folds": args.folds,
                            "horizon": 28,
                            "history_days": args.history_days,
                            "global_models": args.global_models,
                        }
                    }
                }
            }
        )
    )
    RESULTS.parent.mkdir(exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    key = f"scale_{args.scale}_folds_{args.folds}" + ("" if args.global_models == "pooled" else f"_{args.global_models}")
    if args.models != parser.get_default("models"):
        key += "_" + "-".join(args.models)
    # Modes measured earlier on the same panel and line-up stay; the ones run now replace theirs.
    earlier = previous.get(key, {}).get("modes", {}) if previous.get(key, {}).get("models") == args.models else {}
    results["prepare"] = results.get("prepare") or previous.get(key, {}).get("prepare")
    results["modes"] = earlier
    for mode in args.modes:
        results["modes"][mode] = _mode(work, mode, config)
        previous[key] = results
        RESULTS.write_text(json.dumps(previous, indent=1, default=str))  # each mode saved as it ends
    modes = results["modes"]
    if "serial" in modes:
        reference = modes["serial"]["metrics"]
        results["metrics_identical"] = {mode: out["metrics"] == reference for mode, out in modes.items()}
        # Threads change the order LightGBM sums in: equal within float tolerance, not bit for bit.
        results["metrics_max_abs_difference"] = {mode: _max_difference(out["metrics"], reference) for mode, out in modes.items()}
        for out in modes.values():
            out["speedup_over_serial"] = round(modes["serial"]["seconds"] / out["seconds"], 2)
            out["core_seconds_over_serial"] = round(out["cpu_seconds"] / modes["serial"]["cpu_seconds"], 2)
    previous[key] = results
    RESULTS.write_text(json.dumps(previous, indent=1, default=str))
    print(json.dumps({k: v for k, v in results.items() if k != "modes"}, indent=1, default=str))
    for mode, out in modes.items():
        print(mode, {k: out[k] for k in ("seconds", "cpu_seconds", "processes", "speedup_over_serial", "core_seconds_over_serial") if k in out})


if __name__ == "__main__":
    main()
