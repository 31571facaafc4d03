"""The backtest as units of work (issue 19, point 1): one step per model x fold (x shard of the
series for the per-series models). The units give the same forecasts as the serial backtest,
run in parallel processes under the multiprocess executor (as `make demo` launches them), a
failed unit is retried alone, and a unit that keeps failing leaves the stored backtest whole."""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
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
    SCORING_COLUMNS,
    Unit,
    backtest_unit,
    plan_units,
    rolling_origin_folds,
    run_backtest,
    score_backtest,
)
from demand_assets.forecasting.models.lightgbm_global import LightGBMForecaster
from demand_assets.forecasting.models.seasonal_naive import SeasonalNaive
from demand_assets.forecasting.panel import KEYS, future_frame, history_up_to
from demand_assets.forecasting.shards import PerShard, shard_filter, shard_labels
from demand_assets.forecasting.suite import SuiteSettings, fits_per_series, input_columns, model_factories
from demand_assets.forecasting.threads import available_cores
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
    # What the backtest splits: ETS by shard; seasonal naive (too quick) and, unless fitted per
    # shard, the global models one unit per fold.
    pooled, per_shard = SuiteSettings(), SuiteSettings(global_models="per_shard")
    assert [m for m in ["seasonal_naive", "ets", "ets_uncensored_training", "lightgbm", "deepar"] if pooled.sharded(m)] == ["ets", "ets_uncensored_training"]
    assert [m for m in ["seasonal_naive", "ets", "lightgbm", "lightgbm_uncensored_training", "hybrid"] if per_shard.sharded(m)] == [
        "ets",
        "lightgbm",
        "lightgbm_uncensored_training",
        "hybrid",
    ]


def test_models_forecast_the_same_from_only_their_input_columns():
    """A unit or refit reads only its model's `input_columns` (DeepAR 10 of M5's 21 columns): the
    forecasts must be those made from the whole dataset. The panel has channel response (an
    outcome, never a feature), so every model reads fewer columns than it has."""
    dataset, _ = small_panel()
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=1, horizon=7)
    names = ("seasonal_naive", "ets", "ets_uncensored_training", "lightgbm", "deepar", "hybrid")
    settings = SuiteSettings(models=names, ets_history_days=120, lgbm_rounds=15, deepar_epochs=1, deepar_batches_per_epoch=3, hybrid_windows=1)
    factories = model_factories(settings)
    for name in names:
        columns = input_columns(name, dataset.columns)
        assert set(columns) <= set(dataset.columns) and {"DATE", "COUNTRY", "PRODUCT", "PRODUCT_DEMAND", "IN_STOCK"} <= set(columns)
        assert len(columns) < len(dataset.columns) and not any(c.startswith("RESPONSE_") for c in columns), name
        whole, _ = backtest_unit(dataset, name, factories[name], folds[0])
        narrow, _ = backtest_unit(dataset.select(columns), name, factories[name], folds[0])
        assert narrow.height == whole.height > 0
        assert narrow.equals(whole), name
    # DeepAR builds its features from the known covariates, never from the target's lags.
    assert not any(c.startswith("DEMAND_LAG_") for c in input_columns("deepar", dataset.columns))
    assert "PRICE" in input_columns("deepar", dataset.columns) and "DEMAND_LAG_7" in input_columns("lightgbm", dataset.columns)


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
    # The publishing step scores on the window's SCORING_COLUMNS only (a quarter of its memory).
    fanned = score_backtest(dataset.select(SCORING_COLUMNS), frames, timings, folds, truth=truth)
    assert fanned.forecasts.equals(serial.forecasts)
    assert fanned.metrics.equals(serial.metrics)


def test_per_shard_global_models_fit_one_model_per_shard_and_units_match_the_whole_panel_fit():
    """global_models=per_shard: LightGBM gets a unit per shard, and those units give exactly what
    one PerShard model fitted on the whole panel gives, which differs from the pooled model."""
    dataset, truth = small_panel()
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=2, horizon=7)
    tiny = {"models": ("lightgbm",), "lgbm_rounds": 20, "lgbm_quantile_rows": 5_000}
    per_shard = SuiteSettings(**tiny, global_models="per_shard")
    factories = model_factories(per_shard)
    whole = run_backtest(dataset, factories, folds, truth=truth)
    pooled = run_backtest(dataset, model_factories(SuiteSettings(**tiny)), folds, truth=truth)

    labels = shard_labels(dataset.select("COUNTRY", "PRODUCT").unique(), "country", 0)
    units = plan_units(["lightgbm"], folds, len(labels), per_shard.sharded)
    assert sorted(u.key for u in units) == [f"lightgbm__fold{f}__shard{s}" for f in range(2) for s in range(len(labels))]
    frames, timings = [], []
    for unit in units:
        part = dataset.filter(shard_filter("country", labels, unit.shard))
        frame, timing = backtest_unit(part, unit.model, factories[unit.model], folds[unit.fold])
        frames.append(frame)
        timings.append(timing)
    fanned = score_backtest(dataset, frames, timings, folds, truth=truth)
    assert fanned.forecasts.equals(whole.forecasts)
    assert not whole.forecasts["MEAN"].equals(pooled.forecasts["MEAN"])  # a model per country is another model

    origin = dataset["DATE"].max() - dt.timedelta(days=7)
    history, future = history_up_to(dataset, origin), future_frame(dataset, origin, 7)
    model = factories["lightgbm"]().fit(history)
    assert isinstance(model, PerShard) and sorted(model.models) == list(range(len(labels)))
    loaded = pickle.loads(pickle.dumps(model))  # as MLflow stores it: the fitted shards, no factory
    assert loaded.factory is None
    assert loaded.predict(history, future).height == future.height
    assert loaded.predict(history, future).sort(KEYS).equals(model.predict(history, future).sort(KEYS))
    stranger = future.head(3).with_columns(pl.lit("ATLANTIS").alias("COUNTRY"))
    with pytest.raises(ValueError, match="no model for the shard of.*ATLANTIS"):
        model.predict(history, stranger)


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
    # The plan, 2 lightgbm units and 2 naive ones (one per fold; naive is too quick to split by
    # country), the publish: 6 steps, one of them popped above.
    assert len(starts) == 6 - 1
    metadata = result.asset_materializations_for_node("model_backtest")[0].metadata
    assert metadata["unit_count"].value == 4
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
def test_per_shard_global_models_through_the_assets_register_a_model_per_shard(stored):
    """model_backtest with global_models=per_shard runs LightGBM as one step per shard, and
    champion_model refits it the same way: the registered version holds one model per country."""
    line_up = LINE_UP.model_copy(update={"n_folds": 1, "global_models": "per_shard"})
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        ALL_ASSETS,
        resources=stored,
        instance=instance,
        selection=["model_backtest", "champion_model"],
        run_config=dg.RunConfig(ops={"model_backtest": line_up}),
    )
    assert result.success
    steps = set(_starts(instance, result.run_id))
    assert {"model_backtest.backtest_unit_step[lightgbm__fold0__shard0]", "model_backtest.backtest_unit_step[lightgbm__fold0__shard1]"} <= steps
    assert not any("lightgbm__fold0]" in key for key in steps)  # no pooled unit
    settings = stored["store"].read_all(Table.BACKTEST_SETTINGS)
    assert json.loads(settings["SUITE_JSON"][0])["global_models"] == "per_shard"
    versions = result.asset_materializations_for_node("champion_model")[0].metadata["registered_versions"].value
    model = stored["mlflow_tracking"].load(versions["lightgbm"]).unwrap_python_model().forecaster
    assert isinstance(model, PerShard) and sorted(model.labels) == sorted(stored["store"].read_all(Table.TRAINING_DATASET)["COUNTRY"].unique().to_list())
    assert len(model.models) == 2


def test_units_run_in_parallel_processes_and_match_the_in_process_backtest(stored, tmp_path):
    """`make demo`'s path: `dg launch` on the code location with DEMAND_EXECUTOR=multiprocess,
    against a persistent instance whose model_training pool admits 2 units at once; then the
    refit, one process per model, registering in MLflow side by side."""
    line_up = LINE_UP.model_copy(update={"n_folds": 1, "models": ["seasonal_naive", "ets", "lightgbm"]})  # 4 units: naive, ETS on each country, lightgbm
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
        assert len(units) == 4 and len(set(units.values())) == 4  # a process of its own per unit
        # Two units at once on this machine: each holds its libraries to half its cores.
        outputs = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT).records
        budgets = {
            r.event_log_entry.dagster_event.event_specific_data.metadata["threads"].value
            for r in outputs
            if "backtest_unit_step[" in r.event_log_entry.step_key
        }
        assert budgets == {max(1, available_cores() // 2)}
        # Each unit reports its own process's peak memory; the backtest's metadata has the largest.
        peaks = [
            r.event_log_entry.dagster_event.event_specific_data.metadata["peak_rss_gb"].value
            for r in outputs
            if "backtest_unit_step[" in r.event_log_entry.step_key
        ]
        assert len(peaks) == 4 and all(0.1 < peak < 8 for peak in peaks), peaks
        published = instance.get_latest_materialization_event(dg.AssetKey("model_backtest")).asset_materialization.metadata
        assert published["unit_peak_rss_gb_max"].value == max(peaks) and published["peak_rss_gb"].value > 0.1
        spans = _step_spans(instance, run.run_id)
        unit_spans = [span for key, span in spans.items() if key in units]
        # Never more units at once than the pool's 2 slots. (Whether two small units overlap at
        # all depends on how fast their processes start; benchmarks/fanout.py measures the speedup.)
        overlaps = max(sum(1 for s in unit_spans if s[0] <= t < s[1]) for t, _ in unit_spans)
        assert 1 <= overlaps <= 2, spans
        # The refit: one step per model, each registering its version from its own process.
        refits = {r.event_log_entry.step_key: r.event_log_entry.dagster_event.pid for r in events if "refit_model[" in r.event_log_entry.step_key}
        assert sorted(refits) == ["champion_model.refit_model[ets]", "champion_model.refit_model[lightgbm]", "champion_model.refit_model[seasonal_naive]"]
        assert len(set(refits.values())) == 3
        champion = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization.metadata
    versions = champion["registered_versions"].value
    assert sorted(versions) == ["ets", "lightgbm", "seasonal_naive"] and len(set(versions.values())) == 3
    tracking = stored["mlflow_tracking"]
    assert {tracking.version_tags(v)["model"] for v in versions.values()} == {"ets", "lightgbm", "seasonal_naive"}
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
