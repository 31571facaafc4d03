"""Model assets: a rolling-origin backtest of every model, and the registered champion.

The backtest records the settings it ran with (`backtest_settings`); champion_model refits
with exactly those, so what is registered is what was backtested.
"""

import datetime as dt
import json
import time

import dagster as dg
import mlflow
import polars as pl
from pydantic import Field

from contracts import Table
from demand_assets.domains.drift import write_drift_reference
from demand_assets.domains.model_runs import BACKTEST_METRICS, log_backtest_runs, tune_in_mlflow
from demand_assets.domains.raw import product_demand_truth
from demand_assets.domains.reads import backtest_record, training_window
from demand_assets.domains.training import training_dataset
from demand_assets.forecasting.backtest import rolling_origin_folds, run_backtest, wrmsse_by_model
from demand_assets.forecasting.metrics import Regime
from demand_assets.forecasting.registry import CHAMPION_ALIAS, ForecasterPyfunc, choose_champion, forecast_request, predict_request
from demand_assets.forecasting.suite import ALL_MODELS, BASELINE, UNCENSORED_SUFFIX, SuiteSettings, line_up, model_factories
from demand_assets.monitoring.promotion import Incumbent, compare_with_incumbent
from demand_assets.reporting import figure_to_markdown, forecast_band_figure, frame_to_markdown, metric_comparison_figure
from resources import ComputeResource, DeltaStore, DemandSourceResource, MlflowTracking, MonitoringSettings

__all__ = ["ForecastingConfig", "champion_model", "model_backtest"]

_SUITE = SuiteSettings()  # the model settings' defaults are defined once, on SuiteSettings


class ForecastingConfig(dg.Config):
    """Which models, how they are backtested, and how hard they train."""

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


# Training is the heavy work: steps that train models (the backtest, the champion's refit, the
# per-SKU models) share this concurrency pool, so at most its limit run at once across all runs
# (1 by default, deploy/dagster.yaml; raise it with `dagster instance concurrency set`).
MODEL_TRAINING_POOL = "model_training"


@dg.asset(
    group_name="models",
    kinds={"lightgbm", "pytorch", "mlflow", "deltalake"},
    deps=[training_dataset, product_demand_truth],
    pool=MODEL_TRAINING_POOL,
)
def model_backtest(
    context: dg.AssetExecutionContext,
    config: ForecastingConfig,
    source: DemandSourceResource,
    store: DeltaStore,
    mlflow_tracking: MlflowTracking,
    compute: ComputeResource,
):
    """Rolling-origin backtest of every model (seasonal naive, ETS, LightGBM, DeepAR, the
    DeepAR-to-LightGBM hybrid, and LightGBM trained as if stockouts were demand) over the newest
    `history_days` of the training dataset: K folds of H days. Metrics per model and fold in
    three regimes: all days, in-stock days, and true uncensored demand (synthetic source);
    where the source knows M5's hierarchy (state, store, category, department, item), also
    M5's WRMSSE (on all days). Writes backtest_forecasts, backtest_metrics and the settings it
    ran with (backtest_settings, which champion_model refits with), and one MLflow run per model.
    A weekly source is backtested in whole weeks (28 days: 4 weeks ahead) with the models built
    for weeks; a model with no weekly form (the hybrid) is left out by name (metadata
    `left_out_for_weekly`). Per-series fits (ETS) run where the `compute` resource says: in
    process, a local process pool or a Dask cluster."""
    cadence = source.open().cadence
    p = cadence.period_days
    models, left_out = line_up(config.models, p)
    if not models:
        raise dg.Failure(description=f"no model of {config.models} can forecast a weekly series: {left_out}", allow_retries=False)
    for name, why in left_out.items():
        context.log.warning(f"{name} is left out of this weekly source's backtest: {why}")
    dataset, truth, tags = training_window(store, config.history_days)
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=config.n_folds, horizon=config.horizon, step=config.step or None, period_days=p)
    context.log.info(f"backtesting {list(models)} ({cadence.frequency}) on {dataset.height:,} rows, folds: {[str(f.test_start) for f in folds]}")
    tuned = {}
    if config.optuna_trials > 0 and "lightgbm" in config.models:
        tuned = tune_in_mlflow(
            mlflow_tracking,
            dataset,
            folds,
            n_trials=config.optuna_trials,
            rounds=config.lgbm_rounds,
            regime=config.champion_regime,
            tags=tags,
            log=context.log.info,
            period_days=p,
        )
    suite = config.suite(tuned, period_days=p, models=models)
    with compute.executor(progress=context.log.info) as executor:
        result = run_backtest(dataset, model_factories(suite, executor), folds, truth=truth, progress=context.log.info, period_days=p)
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
                "MODELS": [json.dumps(list(models))],
                "N_FOLDS": [config.n_folds],
                "HORIZON": [config.horizon],
                "HISTORY_DAYS": [config.history_days],
                "CHAMPION_REGIME": [config.champion_regime],
                "SUITE_JSON": [suite.to_json()],
                "WINDOW_START": [dataset["DATE"].min()],
                "WINDOW_END": [dataset["DATE"].max()],
                "TRAINING_DATASET_VERSION": [store.version(Table.TRAINING_DATASET)],
                "METRICS_VERSION": [metrics_written.version],
            }
        ),
    )

    overall = result.metrics.filter(pl.col("FOLD") == -1)
    last_fold = result.forecasts.filter(pl.col("FOLD") == folds[-1].index)
    top = last_fold.group_by("COUNTRY", "PRODUCT").agg(pl.col("ACTUAL").sum()).sort("ACTUAL", descending=True).head(3)
    series = list(zip(top["COUNTRY"], top["PRODUCT"]))
    params = {"n_folds": config.n_folds, "horizon": config.horizon, **suite.__dict__, "models": ",".join(models)}
    run_links = log_backtest_runs(mlflow_tracking, result, folds, series, params, tags)

    table = overall.select("MODEL", "REGIME", *[m for m in BACKTEST_METRICS if m in overall.columns]).sort("REGIME", "WAPE")
    best_model = table.filter(pl.col("REGIME") == config.champion_regime).sort("WAPE")["MODEL"][0]
    band = forecast_band_figure(last_fold.filter(pl.col("MODEL") == best_model), series, f"{best_model} (best on {config.champion_regime} days): last fold")
    comparison = metric_comparison_figure(overall, "WAPE", "MODEL", "REGIME", "Backtest WAPE by model: all days, in-stock days, true demand")
    bias = metric_comparison_figure(overall, "BIAS", "MODEL", "REGIME", "Backtest bias by model (negative: under-forecast)")
    return dg.MaterializeResult(
        metadata={
            "metrics": dg.MetadataValue.md(frame_to_markdown(table, max_rows=60)),
            "wape_by_model_and_regime": dg.MetadataValue.md(figure_to_markdown(comparison, "WAPE by model and regime")),
            "bias_by_model_and_regime": dg.MetadataValue.md(figure_to_markdown(bias, "bias by model and regime")),
            "forecast_bands": dg.MetadataValue.md(figure_to_markdown(band, "forecast bands")),
            "timings": dg.MetadataValue.md(
                frame_to_markdown(result.timings.group_by("MODEL").agg(pl.col("FIT_SECONDS").mean(), pl.col("PREDICT_SECONDS").mean()).sort("MODEL"))
            ),
            "lightgbm_tuned_params": dg.MetadataValue.json(tuned),
            "cadence": cadence.describe(),
            **({"left_out_for_weekly": dg.MetadataValue.json(left_out)} if left_out else {}),
            "folds": dg.MetadataValue.md(
                "\n".join(f"- fold {f.index}: train to {f.origin}, test {f.test_start} .. {f.test_end - dt.timedelta(days=1)}" for f in folds)
            ),
            "mlflow_runs": dg.MetadataValue.md("\n".join(f"- [{m}]({u})" for m, u in run_links.items())),
            "backtest_metrics_version": metrics_written.version,
            "backtest_forecasts_rows": forecasts_written.rows,
            **{f"lineage/{k}": v for k, v in tags.items()},
        }
    )


def _incumbent(tracking: MlflowTracking) -> Incumbent | None:
    version = tracking.champion_version(CHAMPION_ALIAS)
    if version is None:
        return None
    tags = tracking.version_tags(version)
    return Incumbent(tags.get("model", "unknown"), version, dt.date.fromisoformat(tags["trained_until"]))


@dg.asset(group_name="models", kinds={"mlflow", "deltalake"}, deps=[model_backtest, training_dataset, product_demand_truth], pool=MODEL_TRAINING_POOL)
def champion_model(context: dg.AssetExecutionContext, store: DeltaStore, mlflow_tracking: MlflowTracking, monitoring: MonitoringSettings):
    """Every backtested model, refitted with the settings it was backtested with (from
    backtest_settings) on the newest training window, logged as an MLflow pyfunc and registered
    as a version of the `demand_forecast` model. The challenger is the model with the lowest
    backtest WAPE on in-stock days that also beats seasonal naive; it takes the alias `champion`
    only if it also beats the current champion on the same backtest days (the frozen champion
    on folds after its training window). The decision and its numbers go to MLflow and to this
    asset's metadata; a new champion's training window becomes the drift reference."""
    models, history_days, regime, suite = backtest_record(store)
    overall = store.read_all(Table.BACKTEST_METRICS).filter(pl.col("FOLD") == -1)
    candidates = [name for name in models if not name.endswith(UNCENSORED_SUFFIX)]  # references are never registered
    challenger, challenger_reason = choose_champion(overall, baseline=BASELINE, regime=regime, candidates=candidates)
    dataset, _, tags = training_window(store, history_days)
    incumbent = _incumbent(mlflow_tracking)
    frozen = None
    if incumbent is not None:
        loaded = mlflow_tracking.load(incumbent.version)
        frozen = lambda origin, horizon: predict_request(loaded, forecast_request(dataset, origin, horizon, history_days=400))  # noqa: E731
    decision = compare_with_incumbent(
        overall=overall,
        forecasts=store.read_all(Table.BACKTEST_FORECASTS),
        challenger=challenger,
        challenger_reason=challenger_reason,
        regime=regime,
        incumbent=incumbent,
        frozen_forecast=frozen,
        progress=context.log.info,
    )
    previous = incumbent.version if incumbent is not None else None
    context.log.info(f"promotion decision: {decision.reason}")
    trained_until = str(dataset["DATE"].max())
    factories = model_factories(suite)
    versions = {}
    for name in candidates:
        started = time.perf_counter()
        model = factories[name]().fit(dataset)
        context.log.info(f"refitted {name} on {dataset.height:,} rows in {time.perf_counter() - started:.1f}s")
        wape_row = overall.filter((pl.col("MODEL") == name) & (pl.col("REGIME") == regime))["WAPE"]
        with mlflow_tracking.run(f"train/{name}", tags=tags | {"model": name, "stage": "train"}) as run:
            mlflow.log_param("model", name)
            if not wape_row.is_empty():
                mlflow.log_metric(f"backtest_{regime}_wape", float(wape_row[0]))
            versions[name] = mlflow_tracking.log_and_register(
                ForecasterPyfunc(model, name),
                name,
                tags | {"model": name, "trained_until": trained_until, "mlflow_run": run.info.run_id},
            )
        context.log.info(f"registered {name} as version {versions[name]}")
    reference_version = None
    if decision.promote and challenger is not None:
        mlflow_tracking.set_champion(versions[challenger], CHAMPION_ALIAS)
        reference_version = write_drift_reference(store, dataset, rows=monitoring.reference_rows, model_version=versions[challenger])
        context.log.info(f"{challenger} v{versions[challenger]} is the champion; its training window is the new drift reference")
    champion = mlflow_tracking.champion_version(CHAMPION_ALIAS)
    numbers = {k: v for k, v in decision.as_dict().items() if isinstance(v, float)}
    with mlflow_tracking.run("champion_selection", tags=tags | {"stage": "promotion"}):
        mlflow.log_params(
            {
                "challenger": challenger or "none",
                "incumbent": decision.incumbent or "none",
                "promoted": decision.promote,
                "previous_champion_version": previous or "none",
                "champion_version": champion or "none",
            }
        )
        mlflow.log_metrics(numbers)
        mlflow.set_tag("decision", decision.reason)
        mlflow.set_tag("compared_on", decision.compared_on)
    return dg.MaterializeResult(
        metadata={
            "decision": decision.reason,
            "promoted": decision.promote,
            "challenger": challenger or "none",
            "incumbent": decision.incumbent or "none",
            "compared_on": decision.compared_on,
            **{k: dg.MetadataValue.float(v) for k, v in numbers.items()},
            "champion_model": (challenger if decision.promote else decision.incumbent) or "none",
            "champion_version": champion or "none",
            "previous_champion_version": previous or "none",
            "trained_until": trained_until,
            "refit_settings": dg.MetadataValue.json(json.loads(suite.to_json())),
            "drift_reference_version": reference_version if reference_version is not None else "unchanged",
            "registered_versions": dg.MetadataValue.json(versions),
            "registered_model": mlflow_tracking.registered_model,
            **{f"lineage/{k}": v for k, v in tags.items()},
        }
    )
