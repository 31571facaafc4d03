"""The compute resource: per-series work (ETS fits) and batched inference (DeepAR's sample paths,
the TCN's forward passes) give the same results in process, on a local process pool and on a
real Dask cluster (a `distributed.LocalCluster` of 2 worker processes); LightGBM trained by
lightgbm.dask on that cluster agrees with the local fit within a stated tolerance; a failing
series is named; a wrong scheduler address fails fast, naming the setting."""

import datetime as dt
import json
import logging
import re
import time

import dagster as dg
import numpy as np
import polars as pl
import pytest

from contracts import Table
from demand_assets.definitions import ALL_ASSETS
from demand_assets.domains.models import ForecastingConfig
from demand_assets.forecasting.compute import (
    DASK_WORKER_ENVIRON,
    DASK_WORKER_SHELL,
    DaskExecutor,
    InProcess,
    ItemFailed,
    ProcessPool,
    _allocator_environ,
    local_cluster,
)
from demand_assets.forecasting.models import deepar as deepar_module
from demand_assets.forecasting.models import tcn as tcn_module
from demand_assets.forecasting.models.deepar import DeepARConfig, DeepARForecaster
from demand_assets.forecasting.models.ets import ETSForecaster
from demand_assets.forecasting.models.hybrid import DeepARLightGBMHybrid
from demand_assets.forecasting.models.lightgbm_global import LightGBMForecaster
from demand_assets.forecasting.models.tcn import TCNForecaster, TCNSettings
from demand_assets.forecasting.panel import future_frame
from demand_assets.forecasting.registry import ForecasterPyfunc
from demand_assets.forecasting.shards import PerShard
from demand_assets.forecasting.suite import SuiteSettings, model_factories
from resources import ComputeResource, DeltaStore, resources_from_env
from tests.conftest import materialize_range, small_resources
from tests.forecasting_panel import small_panel

ORIGIN = dt.date(2024, 1, 31)
TINY_DEEPAR = DeepARConfig(
    prediction_length=14, context_length=28, hidden_size=8, num_layers=1, batch_size=16, num_batches_per_epoch=3, max_epochs=1, num_samples=20
)


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2) as local:  # distributed is a dependency: a missing one fails here, it is never skipped
        yield local


@pytest.fixture(scope="module")
def panel():
    dataset, _ = small_panel(n_countries=3, n_products=10)  # 30 series
    train = dataset.filter(pl.col("DATE") <= ORIGIN)
    return train, future_frame(dataset, ORIGIN, 14)


def _square_unless_seven(item: int, offset: int) -> int:
    if item == 7:
        raise ValueError("seven is not allowed")
    return item * item + offset


def test_ets_forecasts_are_identical_in_process_on_a_process_pool_and_on_a_dask_cluster(cluster, panel):
    """Bitwise identical: each series is fitted by the same code on the same values wherever it
    runs, and the results come back in the series' order (no float tolerance needed)."""
    train, future = panel
    assert train.select("COUNTRY", "PRODUCT").n_unique() == 30

    def forecast(executor) -> pl.DataFrame:
        return ETSForecaster(history_days=120, min_series_per_job=1, executor=executor).predict(train, future)

    reference = forecast(InProcess())
    lines: list[str] = []
    with ComputeResource(backend="dask", dask_address=cluster.scheduler_address).executor(progress=lines.append) as dask:
        assert dask.workers() == 2
        on_dask = forecast(dask)
    on_pool = forecast(ProcessPool(max_workers=2))
    assert on_pool.equals(reference)
    assert on_dask.equals(reference)
    assert lines and lines[-1].startswith("ets series: 30/30 done") and f"dask at {cluster.scheduler_address}, 2 worker threads" in lines[-1]


def test_results_keep_the_input_order_and_progress_is_reported_per_batch(cluster):
    items = list(range(8, 108))
    expected = [i * i + 1 for i in items]
    # (the process pool's order is covered by the ETS comparison above; each pool costs a spawn)
    for executor in (InProcess(), DaskExecutor(cluster.scheduler_address)):
        lines: list[str] = []
        with executor:
            assert executor.map(_square_unless_seven, items, args=(1,), what="squares", progress=lines.append) == expected
        done = [int(line.split(": ")[1].split("/")[0]) for line in lines]
        assert len(done) >= 8 and done == sorted(done) and done[-1] == 100  # about eight batches a worker, each reported


def test_a_failing_item_names_its_series_on_every_backend(cluster):
    items = list(range(12))
    labels = [f"series DE/P{i}" for i in items]
    for executor in (InProcess(), ProcessPool(max_workers=2), DaskExecutor(cluster.scheduler_address)):
        with executor, pytest.raises(ItemFailed, match=r"series DE/P7 failed: ValueError: seven is not allowed"):
            executor.map(_square_unless_seven, items, args=(0,), labels=labels)


def test_a_wrong_dask_address_fails_fast_naming_the_setting():
    compute = ComputeResource(backend="dask", dask_address="tcp://127.0.0.1:9", connect_timeout_s=2)
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"DEMAND_DASK_ADDRESS='tcp://127.0.0.1:9' within 2s"):
        with compute.executor() as executor:
            executor.map(_square_unless_seven, [1, 2], args=(0,))
    assert time.perf_counter() - started < 15
    with pytest.raises(ValueError, match="DEMAND_COMPUTE=dask\\) needs DEMAND_DASK_ADDRESS"):
        ComputeResource(backend="dask").executor()


def test_the_backend_and_the_address_come_from_the_environment(monkeypatch):
    assert resources_from_env(resolve=True)["compute"].backend == "processes"  # the default: a local pool
    monkeypatch.setenv("DEMAND_COMPUTE", "dask")
    monkeypatch.setenv("DEMAND_DASK_ADDRESS", "tcp://dask-scheduler:8786")
    compute = resources_from_env(resolve=True)["compute"]
    assert isinstance(compute, ComputeResource)
    assert (compute.backend, compute.dask_address) == ("dask", "tcp://dask-scheduler:8786")
    monkeypatch.setenv("DEMAND_COMPUTE", "spark")
    with pytest.raises(ValueError, match="DEMAND_COMPUTE='spark' is not one of in_process, processes, dask"):
        resources_from_env()


def test_workers_on_dasks_default_allocator_setting_are_warned_about_and_the_documented_workers_are_not(tmp_path):
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which made DeepAR's sampling
    1.7x slower: a client names it and the fix. `dask scheduler` and `dask worker` started as
    docs/scaling.md says (DASK_WORKER_SHELL) give workers without it, and `local_cluster` starts its
    workers the same way without leaving their variables in this process's environment."""
    import os
    import shlex
    import subprocess
    import sys

    import distributed

    before = dict(os.environ)
    with local_cluster(1) as ours:
        assert dict(os.environ) == before
        lines: list[str] = []
        with DaskExecutor(ours.scheduler_address, progress=lines.append) as dask:
            assert dask.workers() == 1 and lines == []
            (found,) = dask.client().run(_allocator_environ).values()  # read on the worker
            assert found == {"MALLOC_TRIM_THRESHOLD_": None, "MALLOC_ARENA_MAX": DASK_WORKER_ENVIRON["MALLOC_ARENA_MAX"]}
    try:
        with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.WARNING) as default:
            with DaskExecutor(default.scheduler_address, progress=lines.append) as dask:
                dask.workers()
    finally:  # a plain LocalCluster's nanny leaves its workers' variables in this process
        os.environ.clear()
        os.environ.update(before)
    (line,) = lines
    assert line.startswith("warning: 1 of 1 Dask workers") and "MALLOC_TRIM_THRESHOLD_=65536" in line
    assert "start the workers with " + DASK_WORKER_SHELL in line

    bin_dir = os.path.dirname(sys.executable)
    shell_env = dict(before) | dict(pair.split("=", 1) for pair in shlex.split(line.split("start the workers with ")[1].split(" (docs")[0]))
    scheduler_file = tmp_path / "scheduler.json"
    started = [
        subprocess.Popen([f"{bin_dir}/dask", "scheduler", "--scheduler-file", str(scheduler_file), "--port", "0", "--no-dashboard"], stderr=subprocess.DEVNULL),
        subprocess.Popen(
            [f"{bin_dir}/dask", "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
            env=shell_env,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        for _ in range(300):  # the scheduler writes its address once it listens
            if scheduler_file.exists() and scheduler_file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        lines.clear()
        with DaskExecutor(address, progress=lines.append) as dask:
            assert dask.workers() == 1 and lines == []
            (found,) = dask.client().run(_allocator_environ).values()
            assert found == {"MALLOC_TRIM_THRESHOLD_": None, "MALLOC_ARENA_MAX": "1"}
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=30)


def test_a_pickled_model_leaves_the_steps_executor_behind():
    """A registered model is pickled into MLflow; the step's Dask client must not go with it."""
    import pickle

    dask = DaskExecutor("tcp://127.0.0.1:9")  # never connected: a model keeps the executor, not a client
    models = [
        ETSForecaster(executor=dask),
        DeepARForecaster(TINY_DEEPAR, executor=dask),
        DeepARLightGBMHybrid(TINY_DEEPAR, executor=dask),
        TCNForecaster(TCNSettings(epochs=1), executor=dask),
        LightGBMForecaster(train_on="dask", executor=dask),
    ]
    for model in models:
        restored = pickle.loads(pickle.dumps(model))
        assert restored.executor is None and model.executor is dask, type(model).__name__


def test_the_suite_hands_the_steps_executor_to_every_model_that_batches_work():
    executor = InProcess()
    built = {name: factory() for name, factory in model_factories(SuiteSettings(models=("ets", "deepar", "hybrid", "lightgbm")), executor).items()}
    assert all(built[name].executor is executor for name in ("ets", "deepar", "hybrid"))
    assert built["lightgbm"].executor is None  # trains in its own process unless lgbm_train_on is dask
    with pytest.raises(ValueError, match=r"lgbm_train_on: dask\) needs the dask compute backend: set DEMAND_COMPUTE=dask"):
        model_factories(SuiteSettings(models=("lightgbm",), lgbm_train_on="dask"), executor)["lightgbm"]()


def test_a_loaded_champion_runs_its_batched_work_on_the_steps_executor():
    """demand_forecast hands its compute executor to the loaded model (and a per-shard model's shards)."""
    executor = InProcess()
    per_shard = PerShard(lambda: DeepARForecaster(TINY_DEEPAR), "country", 2, "deepar")
    per_shard.labels, per_shard.models = ["DE", "FR"], {0: DeepARForecaster(TINY_DEEPAR), 1: DeepARForecaster(TINY_DEEPAR)}
    ForecasterPyfunc(per_shard, "deepar").use_executor(executor)
    assert all(m.executor is executor for m in per_shard.models.values())
    tcn = TCNForecaster(TCNSettings(epochs=1))
    ForecasterPyfunc(tcn, "tcn", frequency="weekly").use_executor(executor)
    assert tcn.executor is executor


def test_deepar_sample_paths_are_identical_in_process_on_a_process_pool_and_on_a_dask_cluster(cluster, panel, monkeypatch):
    """Inference in chunks of series, each seeded by its index: the chunks do not depend on the
    backend, so neither do the sample paths (bitwise)."""
    monkeypatch.setattr(deepar_module, "SAMPLE_CHUNK", 3)  # 10 chunks of the 30 series: enough for a pool of 2
    train, future = panel
    model = DeepARForecaster(TINY_DEEPAR).fit(train)
    reference = model.predict(train, future)
    model.executor = ProcessPool(max_workers=2)
    on_pool = model.predict(train, future)
    lines: list[str] = []
    with DaskExecutor(cluster.scheduler_address, progress=lines.append) as dask:
        model.executor = dask
        on_dask = model.predict(train, future)
    assert reference.height == future.height and reference["MEAN"].sum() > 0
    assert on_pool.equals(reference) and on_dask.equals(reference)
    assert lines[-1].startswith("deepar sample-path chunks (3 series each): 10/10 done") and "dask at" in lines[-1]
    # predict summarises each chunk where it is drawn: the same as summarising all paths at once
    model.executor = None
    keys, paths = model.predict_samples(train, future)
    assert paths.shape[:2] == (30, TINY_DEEPAR.num_samples)
    at_once = deepar_module.summary_frame(keys, *deepar_module.summary(paths), origin=train["DATE"].max(), future=future)
    assert at_once.equals(reference)


def test_tcn_forward_passes_are_identical_in_process_on_a_process_pool_and_on_a_dask_cluster(cluster, monkeypatch):
    monkeypatch.setattr(tcn_module, "FORWARD_CHUNK", 4)  # 60 series: 15 chunks, enough for a pool of 2
    rng = np.random.default_rng(0)
    panel = pl.DataFrame(
        [{"COUNTRY": f"C{s % 3}", "PRODUCT": f"P{s}", "PERIOD": p, "UNITS": float(rng.poisson(3 + s % 9))} for s in range(60) for p in range(20)]
    )
    model = TCNForecaster(TCNSettings(epochs=2)).fit(panel)
    reference = model.predict_steps(panel)
    model.executor = ProcessPool(max_workers=2)
    on_pool = model.predict_steps(panel)
    lines: list[str] = []
    with DaskExecutor(cluster.scheduler_address, progress=lines.append) as dask:
        model.executor = dask
        on_dask = model.predict_steps(panel)
    assert reference.height == 60 * 4 and reference["P50"].sum() > 0
    assert on_pool.equals(reference) and on_dask.equals(reference)
    assert lines[-1].startswith("tcn forward chunks (4 series each): 15/15 done")


def test_lightgbm_trained_on_dask_agrees_with_the_local_fit_within_the_stated_tolerance(cluster, panel, caplog):
    """lightgbm.dask across the cluster's 2 workers, each holding half the rows. Not bitwise (each
    worker bins its features from its own rows): the stated tolerance is forecasts within 10% of
    the local ones on average and a total within 3%, on this 30-series panel."""
    train, future = panel
    local = LightGBMForecaster(num_boost_round=60).fit(train).predict(train, future)
    caplog.set_level(logging.INFO)
    with DaskExecutor(cluster.scheduler_address) as dask:
        model = LightGBMForecaster(num_boost_round=60, train_on="dask", executor=dask).fit(train)
        on_dask = model.predict(train, future)
    assert set(model.models) == {"mean", "p10", "p50", "p90"}
    assert any("booster on dask: 60 rounds" in r.message and "across 2 workers" in r.message for r in caplog.records)
    joined = local.join(on_dask, on=["DATE", "COUNTRY", "PRODUCT"], suffix="_DASK")
    assert joined.height == future.height
    mean, mean_dask = joined["MEAN"].to_numpy(), joined["MEAN_DASK"].to_numpy()
    assert not np.array_equal(mean, mean_dask)  # really trained elsewhere, not the local booster again
    assert np.abs(mean - mean_dask).sum() / np.abs(mean).sum() < 0.10
    assert abs(mean_dask.sum() / mean.sum() - 1) < 0.03
    assert np.corrcoef(mean, mean_dask)[0, 1] > 0.98


@pytest.mark.slow  # materializes four months of the small world, then two backtests (about 20 s)
def test_model_backtest_sends_its_ets_fits_where_the_compute_resource_says(cluster, tmp_path):
    """The asset end to end: the same stored backtest forecasts in process and on the cluster,
    and the step's log shows the fits ran on Dask."""
    resources = small_resources(tmp_path / "delta")
    assert materialize_range(resources, "2023-11-01", "2024-02-29").success
    config = ForecastingConfig(models=["ets"], n_folds=1, horizon=14, history_days=100, ets_history_days=90)

    def backtest(compute: ComputeResource) -> tuple[pl.DataFrame, list[str]]:
        instance = dg.DagsterInstance.ephemeral()
        result = dg.materialize(
            ALL_ASSETS,
            resources=resources | {"compute": compute},
            selection=["model_backtest"],
            run_config=dg.RunConfig(ops={"model_backtest": config}),
            instance=instance,
        )
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
        return DeltaStore(root_uri=str(tmp_path / "delta")).read_all(Table.BACKTEST_FORECASTS), messages

    reference, _ = backtest(ComputeResource(backend="in_process"))
    on_dask, messages = backtest(ComputeResource(backend="dask", dask_address=cluster.scheduler_address))
    assert reference.height > 0 and on_dask.equals(reference)
    # One unit per country (the per-series models' shards), each fitting its series on Dask.
    done = [re.match(r"ets series: (\d+)/(\d+) done", m) for m in messages if "dask at" in m]
    finished = [int(m.group(2)) for m in done if m and m.group(1) == m.group(2)]
    assert sorted(finished) == [12, 12], messages


def test_tcn_forward_passes_do_not_depend_on_the_processs_thread_budget(monkeypatch):
    """A step's budget (2 threads in process) and a pool or Dask worker's (1) give the same
    forecasts bit for bit: the convolutions would sum in another order on 2 threads."""
    import torch

    monkeypatch.setattr(tcn_module, "FORWARD_CHUNK", 4)  # chunks as the backends get them

    rng = np.random.default_rng(0)
    panel = pl.DataFrame(
        [{"COUNTRY": f"C{s % 3}", "PRODUCT": f"P{s}", "PERIOD": p, "UNITS": float(rng.poisson(3 + s % 9))} for s in range(60) for p in range(20)]
    )
    model = TCNForecaster(TCNSettings(epochs=2)).fit(panel)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        on_two = model.predict_steps(panel)
        torch.set_num_threads(1)
        on_one = model.predict_steps(panel)
    finally:
        torch.set_num_threads(before)
    assert on_two["P50"].sum() > 0
    assert on_two.equals(on_one)
