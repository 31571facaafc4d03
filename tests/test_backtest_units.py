"""The backtest as units of work (issue 19, point 1): one step per model x fold (x shard of the
series for the per-series models). The units give the same forecasts as the serial backtest,
run in parallel processes under the multiprocess executor (as `make demo` launches them), a
failed unit is retried alone, and a unit that keeps failing leaves the stored backtest whole."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from contracts import Table
from demand_assets.definitions import ALL_ASSETS
from demand_assets.domains import backtest as backtest_module
from demand_assets.domains.models import ForecastingConfig
from demand_assets.forecasting.backtest import (
    Unit,
    backtest_unit,
    plan_units,
    rolling_origin_folds,
    run_backtest,
    score_backtest,
    shard_filter,
    shard_labels,
)
from demand_assets.forecasting.models.lightgbm_global import LightGBMForecaster
from demand_assets.forecasting.models.seasonal_naive import SeasonalNaive
from demand_assets.forecasting.suite import fits_per_series
from resources import DeltaStore
from tests.conftest import materialize_range, small_resources
from tests.forecasting_panel import small_panel

ROOT = Path(__file__).resolve().parent.parent
TINY = {"num_boost_round": 20, "quantile_max_rows": 5_000}


def test_units_cover_every_model_and_fold_and_shard_only_the_per_series_models():
    folds = rolling_origin_folds(dt.date(2024, 3, 31), n_folds=2, horizon=7)
    units = plan_units(["seasonal_naive", "ets_uncensored_training", "lightgbm"], folds, 3, fits_per_series)
    assert [u.key for u in units if u.model == "lightgbm"] == ["lightgbm__fold0", "lightgbm__fold1"]
    assert len([u for u in units if u.model == "seasonal_naive"]) == 2 * 3
    assert {u.shard for u in units if u.model == "ets_uncensored_training"} == {0, 1, 2}
    assert len({u.key for u in units}) == len(units)
    # One shard: no split at all.
    assert all(u.shard == -1 for u in plan_units(["seasonal_naive"], folds, 1, fits_per_series))


@pytest.mark.parametrize(("shard_by", "n"), [("country", 0), ("series_hash", 3)])
def test_shards_partition_the_series(shard_by, n):
    dataset, _ = small_panel()
    series = dataset.select("COUNTRY", "PRODUCT").unique()
    labels = shard_labels(series, shard_by, n)
    parts = [series.filter(shard_filter(shard_by, labels, i)) for i in range(len(labels))]
    assert sum(p.height for p in parts) == series.height
    assert pl.concat(parts).unique().height == series.height  # disjoint and complete
    assert all(p.height > 0 for p in parts)
    with pytest.raises(ValueError, match="shard_by must be one of"):
        shard_labels(series, "store", 2)


def test_units_on_shards_give_the_serial_backtests_forecasts_and_metrics():
    dataset, truth = small_panel()
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=2, horizon=7)
    factories = {"seasonal_naive": SeasonalNaive, "lightgbm": lambda: LightGBMForecaster(**TINY)}
    serial = run_backtest(dataset, factories, folds, truth=truth)

    labels = shard_labels(dataset.select("COUNTRY", "PRODUCT").unique(), "country", 0)
    frames, timings = [], []
    for unit in reversed(plan_units(list(factories), folds, len(labels), fits_per_series)):  # any order
        part = dataset.filter(shard_filter("country", labels, unit.shard))
        frame, timing = backtest_unit(part, unit.model, factories[unit.model], folds[unit.fold])
        frames.append(frame)
        timings.append(timing)
    fanned = score_backtest(dataset, frames, timings, folds, truth=truth)
    assert fanned.forecasts.equals(serial.forecasts)
    assert fanned.metrics.equals(serial.metrics)


def _failing_once(real, failures: dict, model: str, times: int):
    """model_factories, except that `model`'s factory raises the first `times` fits."""

    def factories(suite, executor=None):
        built = real(suite, executor)

        class Flaky:
            def __init__(self):
                self.inner = built[model]()

            def fit(self, train):
                failures[model] = failures.get(model, 0) + 1
                if failures[model] <= times:
                    raise RuntimeError(f"{model} fit failed (injected, attempt {failures[model]})")
                self.inner.fit(train)
                return self

            def predict(self, history, future):
                return self.inner.predict(history, future)

        return built | {model: Flaky}

    return factories


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("units") / "delta"
    resources = small_resources(root)
    assert materialize_range(resources, "2023-11-01", "2024-02-29").success
    return resources


LINE_UP = ForecastingConfig(models=["seasonal_naive", "lightgbm"], n_folds=2, horizon=14, history_days=100, lgbm_rounds=20)


def _backtest(resources, instance=None, line_up: ForecastingConfig = LINE_UP) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        selection=["model_backtest"],
        run_config=dg.RunConfig(ops={"model_backtest": line_up}),
        raise_on_error=False,
    )


def _starts(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    """Step key -> how many times it ran (its start, and each restart after a retry)."""
    counts: dict[str, int] = {}
    for kind in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED):
        for record in instance.get_records_for_run(run_id, of_type=kind).records:
            key = record.event_log_entry.step_key
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_a_failed_unit_is_retried_alone_and_a_unit_that_keeps_failing_changes_nothing(stored, monkeypatch):
    store: DeltaStore = stored["store"]
    instance = dg.DagsterInstance.ephemeral()
    real = backtest_module.model_factories
    failures: dict[str, int] = {}
    # lightgbm's first fit fails: that unit (fold 0) is retried, nothing else runs twice.
    monkeypatch.setattr(backtest_module, "model_factories", _failing_once(real, failures, "lightgbm", 1))
    result = _backtest(stored, instance)
    assert result.success
    starts = _starts(instance, result.run_id)
    assert starts.pop("model_backtest.backtest_unit_step[lightgbm__fold0]") == 2
    assert set(starts.values()) == {1}
    # The plan, 2 lightgbm units (one per fold) and 4 naive ones (per fold and country), the
    # publish: 8 steps, one of them popped above.
    assert len(starts) == 8 - 1
    metadata = result.asset_materializations_for_node("model_backtest")[0].metadata
    assert metadata["unit_count"].value == 6
    version = store.version(Table.BACKTEST_METRICS)
    metrics = store.read_all(Table.BACKTEST_METRICS)

    # A unit that fails on every attempt fails the run; the stored backtest is the last one.
    failures.clear()
    monkeypatch.setattr(backtest_module, "model_factories", _failing_once(real, failures, "lightgbm", 99))
    failed = _backtest(stored, instance)
    assert not failed.success
    assert failures["lightgbm"] >= 2  # at least one unit tried twice
    assert store.version(Table.BACKTEST_METRICS) == version and store.read_all(Table.BACKTEST_METRICS).equals(metrics)


@pytest.mark.slow  # `dg launch` with the multiprocess executor: a process per step (about 90 s)
def test_units_run_in_parallel_processes_and_match_the_in_process_backtest(stored, tmp_path):
    """`make demo`'s path: `dg launch` on the code location with DEMAND_EXECUTOR=multiprocess,
    against a persistent instance whose model_training pool admits 2 units at once; then the
    refit, one process per model, registering in MLflow side by side."""
    line_up = LINE_UP.model_copy(update={"n_folds": 1})  # 3 units: naive on each country, lightgbm
    reference = _backtest(stored, line_up=line_up)
    assert reference.success
    expected = stored["store"].read_all(Table.BACKTEST_METRICS)

    home = tmp_path / "home"
    delta = Path(stored["store"].root_uri)
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    config = tmp_path / "backtest.yaml"
    config.write_text(json.dumps({"ops": {"model_backtest": {"config": line_up.model_dump()}}}))
    env = dict(
        os.environ,
        DEMAND_HOME=str(home),
        DAGSTER_HOME=str(dagster_home),
        DEMAND_DELTA_URI=str(delta),
        MLFLOW_TRACKING_URI=stored["mlflow_tracking"].tracking_uri,
        DEMAND_COUNTRIES="2",
        DEMAND_PRODUCTS="12",
        DEMAND_CHANNELS="3",
        DEMAND_EXECUTOR="multiprocess",
        DEMAND_MAX_CONCURRENT="2",
        DEMAND_TRAINING_SLOTS="2",
    )
    bin_dir = Path(sys.executable).parent
    pools = subprocess.run([bin_dir / "demand-deploy", "pools"], env=env, capture_output=True, text=True, timeout=120)
    assert "model_training 2" in pools.stdout, pools.stdout + pools.stderr
    launched = subprocess.run(
        [bin_dir / "dg", "launch", "--assets", "model_backtest,champion_model", "-c", str(config)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert launched.returncode == 0, launched.stderr[-4000:]
    assert stored["store"].read_all(Table.BACKTEST_METRICS).equals(expected)

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        (run,) = instance.get_runs(limit=1)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        events = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records
        units = {r.event_log_entry.step_key: r.event_log_entry.dagster_event.pid for r in events if "backtest_unit_step[" in r.event_log_entry.step_key}
        assert len(units) == 3 and len(set(units.values())) == 3  # a process of its own per unit
        spans = _step_spans(instance, run.run_id)
        unit_spans = [span for key, span in spans.items() if key in units]
        # Never more units at once than the pool's 2 slots. (Whether two small units overlap at
        # all depends on how fast their processes start; benchmarks/fanout.py measures the speedup.)
        overlaps = max(sum(1 for s in unit_spans if s[0] <= t < s[1]) for t, _ in unit_spans)
        assert 1 <= overlaps <= 2, spans
        # The refit: one step per model, each registering its version from its own process.
        refits = {r.event_log_entry.step_key: r.event_log_entry.dagster_event.pid for r in events if "refit_model[" in r.event_log_entry.step_key}
        assert sorted(refits) == ["champion_model.refit_model[lightgbm]", "champion_model.refit_model[seasonal_naive]"]
        assert len(set(refits.values())) == 2
        champion = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization.metadata
    versions = champion["registered_versions"].value
    assert sorted(versions) == ["lightgbm", "seasonal_naive"] and len(set(versions.values())) == 2
    tracking = stored["mlflow_tracking"]
    assert {tracking.version_tags(v)["model"] for v in versions.values()} == {"lightgbm", "seasonal_naive"}
    # Whether a champion was promoted depends on the scores; the decision names what it chose.
    assert champion["champion_version"].value in [*versions.values(), "none"] and champion["decision"].value


def _step_spans(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    starts, ends = {}, {}
    for record in instance.get_records_for_run(run_id).records:
        entry = record.event_log_entry
        if entry.dagster_event is None or entry.step_key is None:
            continue
        kind = entry.dagster_event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            ends[entry.step_key] = entry.timestamp
    return {key: (starts[key], ends[key]) for key in starts if key in ends}


def test_unit_keys_are_names_dagster_accepts():
    import re

    for unit in (Unit("lightgbm_uncensored_training", 3), Unit("ets", 0, 12)):
        assert re.fullmatch(r"[A-Za-z0-9_]+", unit.key)
