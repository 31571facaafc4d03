"""Model assets: a rolling-origin backtest of every model, and the registered champion."""

import dataclasses
import datetime as dt
import logging
import time

import dagster as dg
import mlflow
import polars as pl

from demand_assets.domains.drift import write_drift_reference
from demand_assets.domains.training import training_dataset
from demand_assets.forecasting.backtest import rolling_origin_folds, run_backtest, wrmsse_by_model
from demand_assets.forecasting.metrics import wape
from demand_assets.forecasting.panel import future_frame
from demand_assets.monitoring.promotion import PromotionDecision, decide_promotion
from demand_assets.forecasting.registry import CHAMPION_ALIAS, ForecasterPyfunc, choose_champion
from demand_assets.forecasting.suite import ALL_MODELS, BASELINE, UNCENSORED_SUFFIX, SuiteSettings, model_factories
from demand_assets.reporting import figure_to_markdown, forecast_band_figure, frame_to_markdown, metric_comparison_figure
from resources import DeltaStore, DemandSourceResource, MonitoringSettings
from resources.mlflow_tracking import MlflowTracking

__all__ = ["ForecastingConfig", "champion_model", "model_backtest"]

log = logging.getLogger(__name__)
_METRICS = ["WAPE", "RMSE", "MASE", "BIAS", "PINBALL_P10", "PINBALL_P50", "PINBALL_P90", "COVERAGE_P10_P90", "WRMSSE"]


class ForecastingConfig(dg.Config):
    """Which models, how they are backtested, and how hard they train."""

    models: list[str] = list(ALL_MODELS) + ["lightgbm" + UNCENSORED_SUFFIX]
    n_folds: int = 4
    horizon: int = 28
    step: int = 0  # days between fold origins; 0 means one horizon
    history_days: int = 730  # training window, ending on the newest stored day
    champion_regime: str = "in_stock"  # the days WAPE is judged on when choosing the champion
    # Training settings: defaults come from SuiteSettings, the one place they are defined.
    lgbm_rounds: int = SuiteSettings.lgbm_rounds
    lgbm_quantile_rows: int = SuiteSettings.lgbm_quantile_rows
    ets_history_days: int = SuiteSettings.ets_history_days
    deepar_epochs: int = SuiteSettings.deepar_epochs
    deepar_batches_per_epoch: int = SuiteSettings.deepar_batches_per_epoch
    deepar_hidden_size: int = SuiteSettings.deepar_hidden_size
    deepar_samples: int = SuiteSettings.deepar_samples
    hybrid_windows: int = SuiteSettings.hybrid_windows
    optuna_trials: int = 0  # > 0: tune LightGBM on the last fold first, then backtest with the best

    def suite(self, lgbm_params: dict | None = None) -> SuiteSettings:
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(SuiteSettings) if f.name in type(self).model_fields}
        return SuiteSettings(**shared | {"models": tuple(self.models), "lgbm_params": tuple(sorted((lgbm_params or {}).items()))})


def _training_window(store: DeltaStore, config: ForecastingConfig) -> tuple[pl.DataFrame, pl.DataFrame | None, dict[str, str]]:
    """The newest `history_days` of the training dataset (and truth), with lineage tags."""
    end = store.last_date("training_dataset")
    start = end - dt.timedelta(days=config.history_days - 1)
    dataset = store.read_window("training_dataset", start, end + dt.timedelta(days=1))
    truth = None
    if store.exists("product_demand_truth"):
        truth = store.read_window("product_demand_truth", start, end + dt.timedelta(days=1))
    tags = {
        "partition_range": f"{dataset['DATE'].min()}...{end}",
        "delta_version.training_dataset": str(store.version("training_dataset")),
    }
    if truth is not None:
        tags["delta_version.product_demand_truth"] = str(store.version("product_demand_truth"))
    return dataset, truth, tags


@dg.asset(
    group_name="models",
    kinds={"lightgbm", "pytorch", "mlflow", "deltalake"},
    deps=[training_dataset, "product_demand_truth"],
)
def model_backtest(context: dg.AssetExecutionContext, config: ForecastingConfig, source: DemandSourceResource, store: DeltaStore, mlflow_tracking: MlflowTracking):
    """Rolling-origin backtest of every model (seasonal naive, ETS, LightGBM, DeepAR, the
    DeepAR-to-LightGBM hybrid, and LightGBM trained as if stockouts were demand) over the newest
    `history_days` of the training dataset: K folds of H days. Metrics per model and fold in
    three regimes: all days, in-stock days, and true uncensored demand (synthetic source);
    where the source knows M5's hierarchy (state, store, category, department, item), also
    M5's WRMSSE (on all days). Writes backtest_forecasts and backtest_metrics (Delta) and one
    MLflow run per model."""
    dataset, truth, tags = _training_window(store, config)
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=config.n_folds, horizon=config.horizon, step=config.step or None)
    context.log.info(f"backtesting {config.models} on {dataset.height:,} rows, folds: {[str(f.test_start) for f in folds]}")
    tuned = _tune(context, config, dataset, folds, mlflow_tracking, tags) if config.optuna_trials > 0 and "lightgbm" in config.models else {}
    result = run_backtest(dataset, model_factories(config.suite(tuned)), folds, truth=truth, progress=context.log.info)
    hierarchy = source.open().catalog().hierarchy()
    if hierarchy is not None:
        scores = wrmsse_by_model(dataset, result.forecasts, folds, hierarchy).with_columns(pl.lit("all").alias("REGIME"))
        result.metrics = result.metrics.join(scores, on=["MODEL", "FOLD", "REGIME"], how="left")
        context.log.info("WRMSSE (all folds): " + ", ".join(f"{m} {w:.3f}" for m, w in scores.filter(pl.col("FOLD") == -1).select("MODEL", "WRMSSE").iter_rows()))
    forecasts_written = store.overwrite("backtest_forecasts", result.forecasts)
    metrics_written = store.overwrite("backtest_metrics", result.metrics)

    overall = result.metrics.filter(pl.col("FOLD") == -1)
    comparison = metric_comparison_figure(overall, "WAPE", "MODEL", "REGIME", "Backtest WAPE by model: all days, in-stock days, true demand")
    bias = metric_comparison_figure(overall, "BIAS", "MODEL", "REGIME", "Backtest bias by model (negative: under-forecast)")
    last_fold = result.forecasts.filter(pl.col("FOLD") == folds[-1].index)
    top = last_fold.group_by("COUNTRY", "PRODUCT").agg(pl.col("ACTUAL").sum()).sort("ACTUAL", descending=True).head(3)
    series = list(zip(top["COUNTRY"], top["PRODUCT"]))

    run_links = {}
    for model in config.models:
        with mlflow_tracking.run(f"backtest/{model}", tags=tags | {"model": model, "stage": "backtest"}) as run:
            mlflow.log_params({"model": model, "n_folds": config.n_folds, "horizon": config.horizon, **config.suite(tuned).__dict__} | {"models": ",".join(config.models)})
            for row in result.metrics.filter(pl.col("MODEL") == model).iter_rows(named=True):
                for metric in _METRICS:
                    if row.get(metric) is not None and row[metric] == row[metric]:  # skip missing and NaN
                        name = f"{row['REGIME']}_{metric.lower()}"
                        if row["FOLD"] == -1:
                            mlflow.log_metric(name, row[metric])
                        else:
                            mlflow.log_metric(f"fold_{name}", row[metric], step=row["FOLD"])
            timing = result.timings.filter(pl.col("MODEL") == model)
            mlflow.log_metric("fit_seconds_mean", float(timing["FIT_SECONDS"].mean()))
            mlflow.log_metric("predict_seconds_mean", float(timing["PREDICT_SECONDS"].mean()))
            band = forecast_band_figure(last_fold.filter(pl.col("MODEL") == model), series, f"{model}: last fold")
            mlflow.log_figure(band, f"{model}_forecast_bands.png")
            run_links[model] = mlflow_tracking.run_url(run.info.run_id)
    mlflow_comparison = metric_comparison_figure(overall, "WAPE", "MODEL", "REGIME")
    with mlflow_tracking.run("backtest/comparison", tags=tags | {"stage": "backtest"}):
        mlflow.log_figure(mlflow_comparison, "wape_by_model_and_regime.png")
        mlflow.log_table(overall.to_pandas(), "overall_metrics.json")

    table = overall.select("MODEL", "REGIME", *[m for m in _METRICS if m in overall.columns]).sort("REGIME", "WAPE")
    best_model = table.filter(pl.col("REGIME") == config.champion_regime).sort("WAPE")["MODEL"][0]
    band = forecast_band_figure(last_fold.filter(pl.col("MODEL") == best_model), series, f"{best_model} (best on {config.champion_regime} days): last fold")
    return dg.MaterializeResult(
        metadata={
            "metrics": dg.MetadataValue.md(frame_to_markdown(table, max_rows=60)),
            "wape_by_model_and_regime": dg.MetadataValue.md(figure_to_markdown(comparison, "WAPE by model and regime")),
            "bias_by_model_and_regime": dg.MetadataValue.md(figure_to_markdown(bias, "bias by model and regime")),
            "forecast_bands": dg.MetadataValue.md(figure_to_markdown(band, "forecast bands")),
            "timings": dg.MetadataValue.md(frame_to_markdown(result.timings.group_by("MODEL").agg(pl.col("FIT_SECONDS").mean(), pl.col("PREDICT_SECONDS").mean()).sort("MODEL"))),
            "lightgbm_tuned_params": dg.MetadataValue.json(tuned),
            "folds": dg.MetadataValue.md("\n".join(f"- fold {f.index}: train to {f.origin}, test {f.test_start} .. {f.test_end - dt.timedelta(days=1)}" for f in folds)),
            "mlflow_runs": dg.MetadataValue.md("\n".join(f"- [{m}]({u})" for m, u in run_links.items())),
            "backtest_metrics_version": metrics_written.version,
            "backtest_forecasts_rows": forecasts_written.rows,
            **{f"lineage/{k}": v for k, v in tags.items()},
        }
    )


def _tune(context, config: ForecastingConfig, dataset: pl.DataFrame, folds, mlflow_tracking: MlflowTracking, tags: dict) -> dict:
    """Optuna over LightGBM on the newest fold, every trial logged to one MLflow run."""
    from demand_assets.forecasting.tuning import tune_lightgbm

    with mlflow_tracking.run("tuning/lightgbm", tags=tags | {"stage": "tuning", "model": "lightgbm"}):
        def on_trial(number: int, params: dict, wape: float) -> None:
            mlflow.log_metric(f"trial_{config.champion_regime}_wape", wape, step=number)
            context.log.info(f"optuna trial {number + 1}/{config.optuna_trials}: WAPE {wape:.4f} with {params}")

        best, value = tune_lightgbm(
            dataset, folds[-1:], n_trials=config.optuna_trials, num_boost_round=config.lgbm_rounds,
            regime=config.champion_regime, on_trial=on_trial,
        )
        mlflow.log_params({f"best_{k}": v for k, v in best.items()})
        mlflow.log_metric(f"best_{config.champion_regime}_wape", value)
    return best


def _compare_with_incumbent(
    context, store: DeltaStore, mlflow_tracking: MlflowTracking, dataset: pl.DataFrame, overall: pl.DataFrame,
    challenger: str | None, challenger_reason: str, regime: str,
) -> tuple[PromotionDecision, str | None]:
    """The challenger against the current champion on the same backtest days (see
    demand_assets.monitoring.promotion); returns the decision and the incumbent's version."""
    version = mlflow_tracking.champion_version(CHAMPION_ALIAS)
    if version is None or challenger is None:
        return decide_promotion(
            challenger=challenger, challenger_reason=challenger_reason, incumbent=None if version is None else "current champion",
            challenger_wape=None, incumbent_wape=None, frozen_incumbent=False, compared_on="-",
        ), version
    tags = mlflow_tracking.version_tags(version)
    incumbent, trained_until = tags.get("model", "unknown"), dt.date.fromisoformat(tags["trained_until"])
    forecasts = store.read_all("backtest_forecasts")
    windows = forecasts.group_by("FOLD").agg(pl.col("DATE").min().alias("START"), pl.col("DATE").max().alias("END")).sort("FOLD")
    fresh = windows.filter(pl.col("START") > trained_until)

    def in_stock_wape(frame: pl.DataFrame) -> float:
        scored = frame.filter(pl.col("IN_STOCK")) if regime == "in_stock" else frame
        actual = scored["TRUE_DEMAND"] if regime == "true" and "TRUE_DEMAND" in scored.columns else scored["ACTUAL"]
        return wape(actual.to_numpy(), scored["P50"].to_numpy())

    if fresh.is_empty():
        scores = dict(overall.filter(pl.col("REGIME") == regime).select("MODEL", "WAPE").iter_rows())
        compared_on = f"all {windows.height} backtest folds (no fold lies after the champion's training window, which ends {trained_until}; its family refitted per fold stands in)"
        return decide_promotion(
            challenger=challenger, challenger_reason=challenger_reason, incumbent=incumbent,
            challenger_wape=scores.get(challenger), incumbent_wape=scores.get(incumbent), frozen_incumbent=False, compared_on=compared_on,
        ), version

    model = mlflow_tracking.load(version)
    frozen, mine = [], []
    for fold, start, end in fresh.iter_rows():
        origin = start - dt.timedelta(days=1)
        horizon = (end - origin).days
        history = dataset.filter(pl.col("DATE").is_between(origin - dt.timedelta(days=400), origin))
        request = pl.concat([history, future_frame(dataset, origin, horizon)], how="diagonal_relaxed")
        predicted = pl.from_pandas(model.predict(request.to_pandas())).with_columns(pl.col("DATE").cast(pl.Date))
        truth = forecasts.filter((pl.col("FOLD") == fold) & (pl.col("MODEL") == challenger))
        mine.append(truth)
        frozen.append(truth.drop("MEAN", "P10", "P50", "P90").join(predicted.select("DATE", "COUNTRY", "PRODUCT", "MEAN", "P10", "P50", "P90"), on=["DATE", "COUNTRY", "PRODUCT"]))
        context.log.info(f"scored the frozen champion v{version} ({incumbent}) on fold {fold} ({start}..{end})")
    compared_on = f"{regime} days of folds {fresh['FOLD'].to_list()} ({fresh['START'].min()}..{fresh['END'].max()}), after the champion's training window"
    return decide_promotion(
        challenger=challenger, challenger_reason=challenger_reason, incumbent=incumbent,
        challenger_wape=in_stock_wape(pl.concat(mine)), incumbent_wape=in_stock_wape(pl.concat(frozen)),
        frozen_incumbent=True, compared_on=compared_on,
    ), version


@dg.asset(group_name="models", kinds={"mlflow", "deltalake"}, deps=[model_backtest])
def champion_model(
    context: dg.AssetExecutionContext, config: ForecastingConfig, store: DeltaStore, mlflow_tracking: MlflowTracking, monitoring: MonitoringSettings
):
    """Every backtested model, refitted on the whole training window, logged as an MLflow pyfunc
    and registered as a version of the `demand_forecast` model. The challenger is the model with
    the lowest backtest WAPE on in-stock days that also beats seasonal naive; it takes the
    alias `champion` only if it also beats the current champion on the same backtest days
    (the frozen champion on folds after its training window). The decision and its numbers go
    to MLflow and to this asset's metadata; a new champion's training window becomes the
    drift reference."""
    metrics = store.read_all("backtest_metrics")
    overall = metrics.filter(pl.col("FOLD") == -1)
    challenger, challenger_reason = choose_champion(overall, baseline=BASELINE, regime=config.champion_regime)
    dataset, _, tags = _training_window(store, config)
    decision, previous = _compare_with_incumbent(
        context, store, mlflow_tracking, dataset, overall, challenger, challenger_reason, config.champion_regime
    )
    context.log.info(f"promotion decision: {decision.reason}")
    trained_until = str(dataset["DATE"].max())
    factories = model_factories(config.suite())
    versions = {}
    for name in config.models:
        if name.endswith(UNCENSORED_SUFFIX):
            continue  # a reference for the censoring study, never a candidate
        started = time.perf_counter()
        model = factories[name]().fit(dataset)
        context.log.info(f"refitted {name} on {dataset.height:,} rows in {time.perf_counter() - started:.1f}s")
        wape_row = overall.filter((pl.col("MODEL") == name) & (pl.col("REGIME") == config.champion_regime))["WAPE"]
        with mlflow_tracking.run(f"train/{name}", tags=tags | {"model": name, "stage": "train"}) as run:
            mlflow.log_param("model", name)
            if not wape_row.is_empty():
                mlflow.log_metric(f"backtest_{config.champion_regime}_wape", float(wape_row[0]))
            version = mlflow_tracking.log_and_register(
                ForecasterPyfunc(model, name), name,
                tags | {"model": name, "trained_until": trained_until, "mlflow_run": run.info.run_id},
            )
        versions[name] = version
        context.log.info(f"registered {name} as version {version}")
    reference_version = None
    if decision.promote:
        mlflow_tracking.set_champion(versions[challenger], CHAMPION_ALIAS)
        reference_version = write_drift_reference(store, dataset, rows=monitoring.reference_rows, model_version=versions[challenger])
        context.log.info(f"{challenger} v{versions[challenger]} is the champion; its training window is the new drift reference")
    champion = mlflow_tracking.champion_version(CHAMPION_ALIAS)
    numbers = {k: v for k, v in decision.as_dict().items() if isinstance(v, float)}
    with mlflow_tracking.run("champion_selection", tags=tags | {"stage": "promotion"}):
        mlflow.log_params({
            "challenger": challenger or "none", "incumbent": decision.incumbent or "none", "promoted": decision.promote,
            "previous_champion_version": previous or "none", "champion_version": champion or "none",
        })
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
            "drift_reference_version": reference_version if reference_version is not None else "unchanged",
            "registered_versions": dg.MetadataValue.json(versions),
            "registered_model": mlflow_tracking.registered_model,
            **{f"lineage/{k}": v for k, v in tags.items()},
        }
    )
