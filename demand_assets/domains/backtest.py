"""model_backtest: the rolling-origin backtest as units of work that an executor runs in parallel.

The asset is a graph of three kinds of step (issue 19, point 1):

- `plan_backtest` reads the training window's version and its series, tunes LightGBM when asked,
  and emits one unit per model x fold, and for the models fitted per series (seasonal naive,
  ETS) per shard of the series (by COUNTRY, or hash buckets), as Dagster dynamic outputs;
- `backtest_unit` (one step per unit, in the `model_training` pool) reads its slice of that
  version of the training dataset, fits and forecasts, and returns the forecasts;
- `publish_backtest` scores all units together and writes backtest_forecasts, backtest_metrics
  and backtest_settings (each one Delta transaction), and the MLflow runs.

The set of units depends on run config (the line-up, folds, shards) and on the data (the
countries), which static partitions cannot know when the code location loads; dynamic outputs
are computed at run time, and each unit is still a step: its own process under the
multiprocess executor, its own pod under k8s_job_executor, retried alone (its retry policy,
or the UI's "re-execute from failure"), and shown with its duration in the run's timeline. The
tables change only when every unit has succeeded: a failed unit leaves the last backtest whole.
"""

import datetime as dt
import json
import os
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from contracts import Table
from demand_assets.domains.model_runs import BACKTEST_METRICS, log_backtest_runs, tune_in_mlflow
from demand_assets.domains.raw import product_demand_truth
from demand_assets.domains.training import training_dataset
from demand_assets.forecasting.backtest import (
    SCORING_COLUMNS,
    Fold,
    Unit,
    backtest_unit,
    plan_units,
    rolling_origin_folds,
    score_backtest,
    wrmsse_by_model,
)
from demand_assets.forecasting.compute import peak_rss_gb
from demand_assets.forecasting.metrics import Regime
from demand_assets.forecasting.shards import shard_filter, shard_labels
from demand_assets.forecasting.suite import ALL_MODELS, UNCENSORED_SUFFIX, SuiteSettings, input_columns, line_up, model_factories
from demand_assets.reporting import figure_to_markdown, forecast_band_figure, frame_to_markdown, metric_comparison_figure
from resources import ComputeResource, DeltaStore, DemandSourceResource, MlflowTracking

__all__ = ["MODEL_TRAINING_POOL", "BacktestPlan", "ForecastingConfig", "model_backtest"]

_SUITE = SuiteSettings()  # the model settings' defaults are defined once, on SuiteSettings

# Training is the heavy work: steps that train models (every backtest unit, the champion's
# refit, the per-SKU models) share this concurrency pool, so at most its limit run at once
# across all runs (DEMAND_TRAINING_SLOTS, set on the instance by `demand-deploy pools`).
MODEL_TRAINING_POOL = "model_training"


class ForecastingConfig(dg.Config):
    """Which models, how they are backtested, how hard they train, and how the work is split."""

    models: list[str] = Field(
        default=[*ALL_MODELS, "lightgbm" + UNCENSORED_SUFFIX],
        min_length=1,
        description=f"the line-up: any of {', '.join(ALL_MODELS)}, each optionally + {UNCENSORED_SUFFIX} (trained as if stockouts were demand)",
    )
    n_folds: int = Field(default=4, ge=1, le=52, description="rolling-origin folds")
    horizon: int = Field(default=_SUITE.horizon, ge=1, le=366, description="days forecast from each fold's origin")
    step: int = Field(default=0, ge=0, description="days between fold origins; 0: one horizon")
    history_days: int = Field(default=730, ge=56, description="training window in days, ending on the newest stored day")
    champion_regime: Regime = Field(default="in_stock", description="the days WAPE is judged on when choosing the champion: all, in_stock or true")
    lgbm_rounds: int = Field(default=_SUITE.lgbm_rounds, ge=1, description="LightGBM boosting rounds")
    lgbm_quantile_rows: int = Field(default=_SUITE.lgbm_quantile_rows, ge=1000, description="rows sampled to train LightGBM's quantile boosters")
    ets_history_days: int = Field(default=_SUITE.ets_history_days, ge=28, description="days of history each per-series ETS is fitted on")
    deepar_epochs: int = Field(default=_SUITE.deepar_epochs, ge=1, description="DeepAR training epochs")
    deepar_batches_per_epoch: int = Field(default=_SUITE.deepar_batches_per_epoch, ge=1, description="DeepAR batches per epoch")
    deepar_hidden_size: int = Field(default=_SUITE.deepar_hidden_size, ge=1, description="DeepAR LSTM hidden size")
    deepar_samples: int = Field(default=_SUITE.deepar_samples, ge=10, description="DeepAR sample paths per series for the quantiles")
    hybrid_windows: int = Field(default=_SUITE.hybrid_windows, ge=1, description="inner windows the hybrid cross-fits DeepAR on for its residual booster")
    optuna_trials: int = Field(default=0, ge=0, description="> 0: tune LightGBM with Optuna on the newest fold first, then backtest with the best")
    shard_by: Literal["country", "series_hash"] = Field(
        default="country",
        description="how ETS's units (and the global models' when global_models is per_shard) split the series: one shard per COUNTRY (a store, for M5), or series_shards hash buckets",
    )
    series_shards: int = Field(default=8, ge=1, le=4096, description="hash buckets of series when shard_by is series_hash")
    global_models: Literal["pooled", "per_shard"] = Field(
        default="pooled",
        description="pooled: LightGBM, DeepAR and the hybrid each learn one model across every series (one unit per fold); per_shard: one "
        "model per shard of shard_by (M5's winners trained LightGBM per store), one unit per fold and shard, and the champion refits per shard",
    )

    lgbm_train_on: Literal["local", "dask"] = Field(
        default="local",
        description="where LightGBM's boosters train: local (the unit's process) or dask (lightgbm.dask across the compute resource's Dask "
        "cluster, DEMAND_COMPUTE=dask, each worker holding a slice of the rows: for training sets larger than one worker's memory)",
    )

    def suite(self, lgbm_params: dict | None = None, *, period_days: int = 1, models: tuple[str, ...] | None = None) -> SuiteSettings:
        """The model settings; `period_days` and `models` (the line-up a weekly source can run) come from the source."""
        shared = {name: getattr(self, name) for name in SuiteSettings.__dataclass_fields__ if name in type(self).model_fields}
        return SuiteSettings(
            **shared
            | {
                "models": tuple(self.models) if models is None else models,
                "lgbm_params": tuple(sorted((lgbm_params or {}).items())),
                "period_days": period_days,
            }
        )


@dataclass(frozen=True)
class BacktestPlan:
    """What every unit and the publishing step agree on: one version of the training dataset,
    one window, the folds, the settings and the shards."""

    models: tuple[str, ...]
    left_out: dict[str, str]
    folds: tuple[Fold, ...]
    suite_json: str
    tuned: dict
    n_folds: int
    horizon: int
    history_days: int
    champion_regime: str
    window_start: dt.date
    window_end: dt.date
    dataset_version: int
    truth_version: int | None
    shard_by: str
    shards: tuple[str, ...]
    cadence: str
    units: tuple[Unit, ...] = field(default=())

    @property
    def suite(self) -> SuiteSettings:
        return SuiteSettings.from_json(self.suite_json)

    @property
    def tags(self) -> dict[str, str]:
        tags = {"partition_range": f"{self.window_start}...{self.window_end}", "delta_version.training_dataset": str(self.dataset_version)}
        if self.truth_version is not None:
            tags["delta_version.product_demand_truth"] = str(self.truth_version)
        return tags

    def read(self, store: DeltaStore, shard: int = -1, columns: list[str] | None = None, *, model: str | None = None) -> pl.DataFrame:
        """The plan's window of the training dataset at the plan's version: one shard, or all;
        every column, or `columns`, or the columns `model` reads (`input_columns`)."""
        if model is not None:
            columns = input_columns(model, store.scan(Table.TRAINING_DATASET, version=self.dataset_version).collect_schema().names())
        where = shard_filter(self.shard_by, self.shards, shard)
        end = self.window_end + dt.timedelta(days=1)
        return store.read_window(Table.TRAINING_DATASET, self.window_start, end, columns, version=self.dataset_version, where=where)

    def truth(self, store: DeltaStore) -> pl.DataFrame | None:
        if self.truth_version is None:
            return None
        end = self.window_end + dt.timedelta(days=1)
        return store.read_window(Table.PRODUCT_DEMAND_TRUTH, self.window_start, end, version=self.truth_version)


@dataclass(frozen=True)
class UnitResult:
    unit: Unit
    forecasts: pl.DataFrame
    timing: dict
    host: str
    pid: int
    seconds: float
    series: int
    peak_rss_gb: float = 0.0  # the unit's process's peak so far (its own where a unit is a process)


@dg.op(
    ins={"training_dataset": dg.In(dg.Nothing), "product_demand_truth": dg.In(dg.Nothing)},
    out={"plan": dg.Out(BacktestPlan), "units": dg.DynamicOut(Unit)},
    tags={"kind": "plan"},
)
def plan_backtest(context: dg.OpExecutionContext, config: ForecastingConfig, source: DemandSourceResource, store: DeltaStore, mlflow_tracking: MlflowTracking):
    """The backtest's units: every model x fold, and shards of the series for the per-series
    models; tunes LightGBM first when `optuna_trials` > 0."""
    cadence = source.open().cadence
    p = cadence.period_days
    models, left_out = line_up(config.models, p)
    if not models:
        raise dg.Failure(description=f"no model of {config.models} can forecast a weekly series: {left_out}", allow_retries=False)
    for name, why in left_out.items():
        context.log.warning(f"{name} is left out of this weekly source's backtest: {why}")
    version = store.version(Table.TRAINING_DATASET)
    if version is None:
        raise dg.Failure(description="no training_dataset yet: materialize training_dataset first", allow_retries=False)
    scan = store.scan(Table.TRAINING_DATASET, version=version)
    end = scan.select(pl.col("DATE").max()).collect().item()
    start = end - dt.timedelta(days=config.history_days - 1)
    series = scan.filter(pl.col("DATE").is_between(start, end)).select("COUNTRY", "PRODUCT").unique().collect()
    first = scan.filter(pl.col("DATE") >= start).select(pl.col("DATE").min()).collect().item()
    folds = rolling_origin_folds(end, n_folds=config.n_folds, horizon=config.horizon, step=config.step or None, period_days=p)
    shards = shard_labels(series, config.shard_by, config.series_shards)
    plan = BacktestPlan(
        models=models,
        left_out=left_out,
        folds=tuple(folds),
        suite_json="",
        tuned={},
        n_folds=config.n_folds,
        horizon=config.horizon,
        history_days=config.history_days,
        champion_regime=config.champion_regime,
        window_start=first,
        window_end=end,
        dataset_version=version,
        truth_version=store.version(Table.PRODUCT_DEMAND_TRUTH),
        shard_by=config.shard_by,
        shards=tuple(shards),
        cadence=cadence.describe(),
    )
    tuned = {}
    if config.optuna_trials > 0 and "lightgbm" in config.models:
        tuned = tune_in_mlflow(
            mlflow_tracking,
            plan.read(store),
            folds,
            n_trials=config.optuna_trials,
            rounds=config.lgbm_rounds,
            regime=config.champion_regime,
            tags=plan.tags,
            log=context.log.info,
            period_days=p,
        )
    suite = config.suite(tuned, period_days=p, models=models)
    units = plan_units(models, folds, len(shards), suite.sharded)
    plan = replace(plan, suite_json=suite.to_json(), tuned=tuned, units=tuple(units))
    context.log.info(
        f"backtest of {list(models)} ({cadence.frequency}) on {series.height:,} series, {first}..{end} (training_dataset v{version}), "
        f"folds {[str(f.test_start) for f in folds]}: {len(units)} units, {len(shards)} shards by {config.shard_by} for the per-series models"
        + (" and the global models (per_shard)" if config.global_models == "per_shard" else "")
    )
    yield dg.Output(plan, "plan", metadata={"units": len(units), "shards": len(shards), "training_dataset_version": version, "peak_rss_gb": peak_rss_gb()})
    for unit in units:
        yield dg.DynamicOutput(unit, output_name="units", mapping_key=unit.key)


@dg.op(
    ins={"plan": dg.In(BacktestPlan), "unit": dg.In(Unit)},
    pool=MODEL_TRAINING_POOL,
    retry_policy=dg.RetryPolicy(max_retries=1, delay=5),
    tags={"kind": "train"},
)
def backtest_unit_step(context: dg.OpExecutionContext, plan: BacktestPlan, unit: Unit, store: DeltaStore, compute: ComputeResource) -> UnitResult:
    """Fit one model on one fold (and shard) of the plan's training window, and forecast its test
    window. Per-series fits (ETS) run where the `compute` resource says, and the step's libraries
    use the resource's thread budget (cores shared by the training steps that may run at once)."""
    started = time.perf_counter()
    dataset = plan.read(store, unit.shard, model=unit.model)
    fold = plan.folds[unit.fold]
    shard = f" shard {unit.shard + 1}/{len(plan.shards)} ({plan.shards[unit.shard]})" if unit.shard >= 0 else ""
    n_series = dataset.select("COUNTRY", "PRODUCT").n_unique()
    context.log.info(f"unit {unit.key}: {unit.model}, fold {unit.fold + 1}/{len(plan.folds)}{shard}, {n_series:,} series, {dataset.height:,} rows")
    with compute.training_step(progress=context.log.info) as executor:
        factory = model_factories(plan.suite, executor)[unit.model]
        forecasts, timing = backtest_unit(dataset, unit.model, factory, fold, progress=context.log.info, n_folds=len(plan.folds))
    seconds = time.perf_counter() - started
    host, pid = socket.gethostname(), os.getpid()
    peak = peak_rss_gb()
    metadata = {
        "host": host,
        "pid": pid,
        "threads": compute.threads(),
        "series": n_series,
        "rows": dataset.height,
        "seconds": round(seconds, 2),
        "peak_rss_gb": peak,
    }
    context.add_output_metadata(metadata | timing)
    return UnitResult(unit, forecasts, timing, host, pid, seconds, n_series, peak)


@dg.op(ins={"plan": dg.In(BacktestPlan), "results": dg.In(list)}, tags={"kind": "publish"})
def publish_backtest(
    context: dg.OpExecutionContext, plan: BacktestPlan, results: list, source: DemandSourceResource, store: DeltaStore, mlflow_tracking: MlflowTracking
):
    """Score every unit's forecasts together and publish: backtest_forecasts, backtest_metrics,
    backtest_settings (champion_model refits with these), and one MLflow run per model."""
    done = {r.unit for r in results}
    missing = [u.key for u in plan.units if u not in done]
    if missing:
        raise dg.Failure(description=f"units without results: {missing}", allow_retries=False)
    dataset = plan.read(store, columns=SCORING_COLUMNS)  # the whole window: only what scoring reads
    folds = list(plan.folds)
    suite = plan.suite
    result = score_backtest(dataset, [r.forecasts for r in results], [r.timing for r in results], folds, truth=plan.truth(store), period_days=suite.period_days)
    hierarchy = source.open().catalog().hierarchy()
    if hierarchy is not None:
        scores = wrmsse_by_model(dataset, result.forecasts, folds, hierarchy).with_columns(pl.lit("all").alias("REGIME"))
        result.metrics = result.metrics.join(scores, on=["MODEL", "FOLD", "REGIME"], how="left")
        context.log.info(
            "WRMSSE (all folds): " + ", ".join(f"{m} {w:.3f}" for m, w in scores.filter(pl.col("FOLD") == -1).select("MODEL", "WRMSSE").iter_rows())
        )
    forecasts_written = store.overwrite(Table.BACKTEST_FORECASTS, result.forecasts)
    metrics_written = store.overwrite(Table.BACKTEST_METRICS, result.metrics)
    store.overwrite(
        Table.BACKTEST_SETTINGS,
        pl.DataFrame(
            {
                "MODELS": [json.dumps(list(plan.models))],
                "N_FOLDS": [plan.n_folds],
                "HORIZON": [plan.horizon],
                "HISTORY_DAYS": [plan.history_days],
                "CHAMPION_REGIME": [plan.champion_regime],
                "SUITE_JSON": [plan.suite_json],
                "WINDOW_START": [plan.window_start],
                "WINDOW_END": [plan.window_end],
                "TRAINING_DATASET_VERSION": [plan.dataset_version],
                "METRICS_VERSION": [metrics_written.version],
            }
        ),
    )

    overall = result.metrics.filter(pl.col("FOLD") == -1)
    last_fold = result.forecasts.filter(pl.col("FOLD") == folds[-1].index)
    top = last_fold.group_by("COUNTRY", "PRODUCT").agg(pl.col("ACTUAL").sum()).sort("ACTUAL", descending=True).head(3)
    series = list(zip(top["COUNTRY"], top["PRODUCT"]))
    params = {"n_folds": plan.n_folds, "horizon": plan.horizon, **suite.__dict__, "models": ",".join(plan.models)}
    run_links = log_backtest_runs(mlflow_tracking, result, folds, series, params, plan.tags)

    table = overall.select("MODEL", "REGIME", *[m for m in BACKTEST_METRICS if m in overall.columns]).sort("REGIME", "WAPE")
    best_model = table.filter(pl.col("REGIME") == plan.champion_regime).sort("WAPE")["MODEL"][0]
    band = forecast_band_figure(last_fold.filter(pl.col("MODEL") == best_model), series, f"{best_model} (best on {plan.champion_regime} days): last fold")
    comparison = metric_comparison_figure(overall, "WAPE", "MODEL", "REGIME", "Backtest WAPE by model: all days, in-stock days, true demand")
    bias = metric_comparison_figure(overall, "BIAS", "MODEL", "REGIME", "Backtest bias by model (negative: under-forecast)")
    units = pl.DataFrame(
        [
            {
                "UNIT": r.unit.key,
                "HOST": r.host,
                "PID": r.pid,
                "SERIES": r.series,
                "SECONDS": round(r.seconds, 1),
                "FIT_SECONDS": round(r.timing["FIT_SECONDS"], 1),
                "PEAK_RSS_GB": r.peak_rss_gb,
            }
            for r in sorted(results, key=lambda r: -r.seconds)
        ]
    )
    context.log.info(f"{len(results)} units: {units['SECONDS'].sum():.0f} s of unit time on {units['PID'].n_unique()} processes")
    return dg.Output(
        None,
        metadata={
            "metrics": dg.MetadataValue.md(frame_to_markdown(table, max_rows=60)),
            "wape_by_model_and_regime": dg.MetadataValue.md(figure_to_markdown(comparison, "WAPE by model and regime")),
            "bias_by_model_and_regime": dg.MetadataValue.md(figure_to_markdown(bias, "bias by model and regime")),
            "forecast_bands": dg.MetadataValue.md(figure_to_markdown(band, "forecast bands")),
            "timings": dg.MetadataValue.md(
                frame_to_markdown(result.timings.group_by("MODEL").agg(pl.col("FIT_SECONDS").mean(), pl.col("PREDICT_SECONDS").mean()).sort("MODEL"))
            ),
            "units": dg.MetadataValue.md(frame_to_markdown(units, max_rows=60)),
            "unit_count": len(results),
            "unit_seconds_total": round(float(units["SECONDS"].sum()), 1),
            "unit_seconds_max": round(float(units["SECONDS"].max()), 1),
            "processes": units["PID"].n_unique(),
            "unit_peak_rss_gb_max": float(units["PEAK_RSS_GB"].max()),
            "peak_rss_gb": peak_rss_gb(),  # this publishing step's process (it reads the whole window to score)
            "shards": dg.MetadataValue.json({"by": plan.shard_by, "labels": list(plan.shards)}),
            "lightgbm_tuned_params": dg.MetadataValue.json(plan.tuned),
            "cadence": plan.cadence,
            **({"left_out_for_weekly": dg.MetadataValue.json(plan.left_out)} if plan.left_out else {}),
            "folds": dg.MetadataValue.md(
                "\n".join(f"- fold {f.index}: train to {f.origin}, test {f.test_start} .. {f.test_end - dt.timedelta(days=1)}" for f in folds)
            ),
            "mlflow_runs": dg.MetadataValue.md("\n".join(f"- [{m}]({u})" for m, u in run_links.items())),
            "backtest_metrics_version": metrics_written.version,
            "backtest_forecasts_rows": forecasts_written.rows,
            **{f"lineage/{k}": v for k, v in plan.tags.items()},
        },
    )


def _forecasting_config(config: dict) -> dict:
    """The asset's run config (a ForecastingConfig, as before the split) goes to the planning step."""
    return {"plan_backtest": {"config": config}}


@dg.graph_asset(
    group_name="models",
    kinds={"lightgbm", "pytorch", "mlflow", "deltalake"},
    ins={
        "training_dataset": dg.AssetIn(training_dataset.key, dagster_type=dg.Nothing),
        "product_demand_truth": dg.AssetIn(product_demand_truth.key, dagster_type=dg.Nothing),
    },
    config=dg.ConfigMapping(config_fn=_forecasting_config, config_schema=ForecastingConfig.to_config_schema()),
)
def model_backtest(training_dataset, product_demand_truth):
    """Rolling-origin backtest of every model (seasonal naive, ETS, LightGBM, DeepAR, the
    DeepAR-to-LightGBM hybrid, and LightGBM trained as if stockouts were demand) over the newest
    `history_days` of the training dataset: K folds of H days, run as one step per model x fold
    (x shard of the series for the per-series models), which the run's executor runs in parallel
    and the `model_training` pool caps. Metrics per model and fold in three regimes: all days,
    in-stock days, and true uncensored demand (synthetic source); where the source knows M5's
    hierarchy, also M5's WRMSSE. Writes backtest_forecasts, backtest_metrics and the settings it
    ran with (backtest_settings, which champion_model refits with), and one MLflow run per model.
    A weekly source is backtested in whole weeks with the models built for weeks; a model with no
    weekly form (the hybrid) is left out by name (metadata `left_out_for_weekly`)."""
    plan, units = plan_backtest(training_dataset=training_dataset, product_demand_truth=product_demand_truth)
    results = units.map(lambda unit: backtest_unit_step(plan, unit))
    return publish_backtest(plan, results.collect())
