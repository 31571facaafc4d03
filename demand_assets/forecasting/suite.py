"""The model line-up of a backtest, built from one settings object."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

from demand_assets.forecasting.models.base import Forecaster
from demand_assets.forecasting.models.deepar import DeepARConfig, DeepARForecaster
from demand_assets.forecasting.models.ets import ETSForecaster
from demand_assets.forecasting.models.hybrid import DeepARLightGBMHybrid
from demand_assets.forecasting.models.lightgbm_global import LightGBMForecaster
from demand_assets.forecasting.models.seasonal_naive import SeasonalNaive

__all__ = ["ALL_MODELS", "BASELINE", "UNCENSORED_SUFFIX", "SuiteSettings", "model_factories"]

BASELINE = "seasonal_naive"
ALL_MODELS = (BASELINE, "ets", "lightgbm", "deepar", "hybrid")
# "<model>_uncensored_training" trains <model> as if stockout days were ordinary demand: the
# naive-training reference the censoring-aware models are compared with.
UNCENSORED_SUFFIX = "_uncensored_training"


@dataclass(frozen=True)
class SuiteSettings:
    models: tuple[str, ...] = ALL_MODELS
    horizon: int = 28
    censoring_aware: bool = True
    lgbm_rounds: int = 300
    lgbm_quantile_rows: int = 500_000  # quantile boosters train on at most this many rows
    ets_history_days: int = 365
    deepar_epochs: int = 10
    deepar_batches_per_epoch: int = 30
    deepar_hidden_size: int = 32
    deepar_samples: int = 200
    hybrid_windows: int = 3
    seed: int = 0
    lgbm_params: tuple[tuple[str, float], ...] = ()  # tuned overrides, e.g. (("num_leaves", 63),)

    def to_json(self) -> str:
        """The settings as JSON, the record a refit reads back (`from_json`)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SuiteSettings:
        values = json.loads(text)
        values["models"] = tuple(values["models"])
        values["lgbm_params"] = tuple(tuple(p) for p in values["lgbm_params"])
        return cls(**values)


def model_factories(s: SuiteSettings) -> dict[str, Callable[[], Forecaster]]:
    """Name -> zero-argument factory of a fresh, unfitted model."""
    deepar = DeepARConfig(
        prediction_length=s.horizon,
        context_length=2 * s.horizon,
        hidden_size=s.deepar_hidden_size,
        max_epochs=s.deepar_epochs,
        num_batches_per_epoch=s.deepar_batches_per_epoch,
        num_samples=s.deepar_samples,
        seed=s.seed,
    )

    def builders(aware: bool) -> dict[str, Callable[[], Forecaster]]:
        return {
            BASELINE: lambda: SeasonalNaive(censoring_aware=False),
            "ets": lambda: ETSForecaster(history_days=s.ets_history_days, censoring_aware=aware),
            "lightgbm": lambda: LightGBMForecaster(
                num_boost_round=s.lgbm_rounds, quantile_max_rows=s.lgbm_quantile_rows, censoring_aware=aware, seed=s.seed, **dict(s.lgbm_params)
            ),
            "deepar": lambda: DeepARForecaster(deepar, censoring_aware=aware),
            "hybrid": lambda: DeepARLightGBMHybrid(
                deepar,
                stage2_windows=s.hybrid_windows,
                num_boost_round=max(50, s.lgbm_rounds // 2),
                censoring_aware=aware,
                seed=s.seed,
            ),
        }

    aware, naive = builders(s.censoring_aware), builders(False)
    factories = {}
    for name in s.models:
        base = name.removesuffix(UNCENSORED_SUFFIX)
        if base not in aware:
            raise ValueError(f"unknown model {name!r}; choose from {sorted(aware)} (optionally + {UNCENSORED_SUFFIX!r})")
        factories[name] = naive[base] if name.endswith(UNCENSORED_SUFFIX) else aware[base]
    return factories
