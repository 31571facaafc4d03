"""What the model assets publish to MLflow: a run per backtested model with its metrics per
fold and regime, timings and forecast bands, a comparison run, and the Optuna study."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlflow
import polars as pl

from demand_assets.forecasting.backtest import BacktestResult, Fold
from demand_assets.forecasting.metrics import Regime
from demand_assets.reporting import forecast_band_figure, metric_comparison_figure
from resources import MlflowTracking

__all__ = ["BACKTEST_METRICS", "log_backtest_runs", "tune_in_mlflow"]

BACKTEST_METRICS = ["WAPE", "RMSE", "MASE", "BIAS", "PINBALL_P10", "PINBALL_P50", "PINBALL_P90", "COVERAGE_P10_P90", "WRMSSE"]


def log_backtest_runs(
    tracking: MlflowTracking, result: BacktestResult, folds: Sequence[Fold], series: list[tuple[str, str]], params: dict, tags: dict[str, str]
) -> dict[str, str]:
    """One MLflow run per model (params, overall and per-fold metrics, timings, the last fold's
    bands for `series`) and one comparison run; returns model -> run URL."""
    last_fold = result.forecasts.filter(pl.col("FOLD") == folds[-1].index)
    links = {}
    for model in result.metrics["MODEL"].unique(maintain_order=True).to_list():
        with tracking.run(f"backtest/{model}", tags=tags | {"model": model, "stage": "backtest"}) as run:
            mlflow.log_params({"model": model, **params})
            for row in result.metrics.filter(pl.col("MODEL") == model).iter_rows(named=True):
                for metric in BACKTEST_METRICS:
                    if row.get(metric) is not None and row[metric] == row[metric]:  # skip missing and NaN
                        name = f"{row['REGIME']}_{metric.lower()}"
                        if row["FOLD"] == -1:
                            mlflow.log_metric(name, row[metric])
                        else:
                            mlflow.log_metric(f"fold_{name}", row[metric], step=row["FOLD"])
            timing = result.timings.filter(pl.col("MODEL") == model)
            mlflow.log_metric("fit_seconds_mean", float(timing["FIT_SECONDS"].mean()))
            mlflow.log_metric("predict_seconds_mean", float(timing["PREDICT_SECONDS"].mean()))
            mlflow.log_figure(forecast_band_figure(last_fold.filter(pl.col("MODEL") == model), series, f"{model}: last fold"), f"{model}_forecast_bands.png")
            links[model] = tracking.run_url(run.info.run_id)
    overall = result.metrics.filter(pl.col("FOLD") == -1)
    with tracking.run("backtest/comparison", tags=tags | {"stage": "backtest"}):
        mlflow.log_figure(metric_comparison_figure(overall, "WAPE", "MODEL", "REGIME"), "wape_by_model_and_regime.png")
        mlflow.log_table(overall.to_pandas(), "overall_metrics.json")
    return links


def tune_in_mlflow(
    tracking: MlflowTracking,
    dataset: pl.DataFrame,
    folds: Sequence[Fold],
    *,
    n_trials: int,
    rounds: int,
    regime: Regime,
    tags: dict[str, str],
    log: Callable[[str], None],
    period_days: int = 1,
) -> dict:
    """Optuna over LightGBM on the newest fold, every trial logged to one MLflow run."""
    from demand_assets.forecasting.tuning import tune_lightgbm

    with tracking.run("tuning/lightgbm", tags=tags | {"stage": "tuning", "model": "lightgbm"}):

        def on_trial(number: int, params: dict, wape: float) -> None:
            mlflow.log_metric(f"trial_{regime}_wape", wape, step=number)
            log(f"optuna trial {number + 1}/{n_trials}: WAPE {wape:.4f} with {params}")

        best, value = tune_lightgbm(dataset, folds[-1:], n_trials=n_trials, num_boost_round=rounds, regime=regime, on_trial=on_trial, period_days=period_days)
        mlflow.log_params({f"best_{k}": v for k, v in best.items()})
        mlflow.log_metric(f"best_{regime}_wape", value)
    return best
