"""Optuna search over LightGBM's main knobs, scored by backtest WAPE on the given folds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optuna
import polars as pl

from demand_assets.forecasting.backtest import Fold, run_backtest
from demand_assets.forecasting.models.lightgbm_global import LightGBMForecaster

__all__ = ["tune_lightgbm"]


def tune_lightgbm(
    dataset: pl.DataFrame,
    folds: Sequence[Fold],
    *,
    n_trials: int,
    num_boost_round: int,
    regime: str = "in_stock",
    seed: int = 0,
    on_trial: Callable[[int, dict, float], None] | None = None,
    period_days: int = 1,
) -> tuple[dict, float]:
    """Best (params, WAPE) after `n_trials` TPE trials; `on_trial(number, params, wape)` is
    called after each (to log it, say)."""

    def objective(trial: optuna.Trial) -> float:
        params = {
            "num_leaves": trial.suggest_int("num_leaves", 15, 127, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 200, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.6, 1.0),
        }
        result = run_backtest(
            dataset,
            {"lightgbm": lambda: LightGBMForecaster(num_boost_round=num_boost_round, seed=seed, period_days=period_days, **params)},
            folds,
            progress=lambda _: None,
            period_days=period_days,
        )
        wape = result.metrics.filter((pl.col("FOLD") == -1) & (pl.col("REGIME") == regime))["WAPE"][0]
        if on_trial is not None:
            on_trial(trial.number, params, wape)
        return wape

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    return study.best_params, study.best_value
