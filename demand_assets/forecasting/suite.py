"""The model line-up of a backtest, built from one settings object.

`period_days` is the source's period (1, or 7 for a weekly table): every model is built for it
(seasonal naive repeats last week, ETS has no season, LightGBM uses week lags, DeepAR steps in
weeks), and the models that cannot forecast a weekly series (`DAILY_ONLY`) are left out of a
weekly line-up by name (`line_up`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from demand_assets.forecasting.compute import Executor
from demand_assets.forecasting.models.base import Forecaster
from demand_assets.forecasting.models.deepar import WEEKLY_LAGS, DeepARConfig, DeepARForecaster
from demand_assets.forecasting.models.ets import ETSForecaster
from demand_assets.forecasting.models.hybrid import DeepARLightGBMHybrid
from demand_assets.forecasting.models.lightgbm_global import LightGBMForecaster
from demand_assets.forecasting.models.seasonal_naive import SeasonalNaive
from demand_assets.forecasting.shards import PerShard

__all__ = [
    "ALL_MODELS",
    "BASELINE",
    "DAILY_ONLY",
    "PER_SERIES",
    "SPLIT_BY_SHARD",
    "UNCENSORED_SUFFIX",
    "input_columns",
    "SuiteSettings",
    "fits_per_series",
    "line_up",
    "model_factories",
]

BASELINE = "seasonal_naive"
ALL_MODELS = (BASELINE, "ets", "lightgbm", "deepar", "hybrid")
# "<model>_uncensored_training" trains <model> as if stockout days were ordinary demand: the
# naive-training reference the censoring-aware models are compared with.
UNCENSORED_SUFFIX = "_uncensored_training"
# Models with no honest weekly form, and why: a weekly source's backtest leaves them out by name.
DAILY_ONLY = {
    "hybrid": "daily only: its stage-2 features are daily constructs (the last 7 and 28 days' means, the same weekday's mean, the last 7 days' residuals)",
}

# Models fitted series by series: their forecasts for a series depend on that series alone, so
# the backtest splits them into shards of series (identical results); the global models
# (LightGBM, DeepAR, the hybrid) learn across series and train on all of them.
PER_SERIES = frozenset({BASELINE, "ets"})
# Of those, the ones worth a unit per shard: seasonal naive forecasts M5's 30,490 series in under
# a second, less than a step's process takes to start, so it keeps one unit per fold.
SPLIT_BY_SHARD = frozenset({"ets"})


def input_columns(name: str, available: Sequence[str]) -> list[str]:
    """The training dataset's columns model `name` reads, of those `available` (the stored
    table's), in their stored order: a unit or refit reads only those. At M5 size the seasonal
    naive unit held 5.2 GB with all 21 columns and 2.8 GB with its 5; DeepAR reads 10."""
    readers: dict[str, Callable[[Sequence[str]], list[str]]] = {
        BASELINE: SeasonalNaive.input_columns,
        "ets": ETSForecaster.input_columns,
        "lightgbm": LightGBMForecaster.input_columns,
        "deepar": DeepARForecaster.input_columns,
        "hybrid": DeepARLightGBMHybrid.input_columns,
    }
    return readers[name.removesuffix(UNCENSORED_SUFFIX)](available)


def fits_per_series(name: str) -> bool:
    return name.removesuffix(UNCENSORED_SUFFIX) in PER_SERIES


def line_up(models: tuple[str, ...] | list[str], period_days: int) -> tuple[tuple[str, ...], dict[str, str]]:
    """The models a source of this period can run, and those left out with the reason."""
    if period_days == 1:
        return tuple(models), {}
    left_out = {m: DAILY_ONLY[m.removesuffix(UNCENSORED_SUFFIX)] for m in models if m.removesuffix(UNCENSORED_SUFFIX) in DAILY_ONLY}
    return tuple(m for m in models if m not in left_out), left_out


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
    period_days: int = 1  # the source's period: 1 (daily) or 7 (a weekly table); `horizon` stays in days
    # How the series are split into shards (`shards.shard_labels`), and whether the global models
    # learn across every series ("pooled") or once per shard ("per_shard", as M5's winners did).
    shard_by: str = "country"
    series_shards: int = 8
    global_models: str = "pooled"
    # Where LightGBM's boosters train: "local" (the step's process) or "dask" (lightgbm.dask across
    # the compute resource's Dask cluster, for a training set larger than one worker's memory).
    lgbm_train_on: str = "local"

    def sharded(self, name: str) -> bool:
        """Whether the backtest splits `name`'s work by shard: ETS always (the same forecasts
        either way), the global models when they are fitted per shard, seasonal naive never."""
        base = name.removesuffix(UNCENSORED_SUFFIX)
        if base in PER_SERIES:
            return base in SPLIT_BY_SHARD
        return self.global_models == "per_shard"

    def to_json(self) -> str:
        """The settings as JSON, the record a refit reads back (`from_json`)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SuiteSettings:
        values = json.loads(text)
        values["models"] = tuple(values["models"])
        values["lgbm_params"] = tuple(tuple(p) for p in values["lgbm_params"])
        return cls(**values)


def model_factories(s: SuiteSettings, executor: Executor | None = None) -> dict[str, Callable[[], Forecaster]]:
    """Name -> zero-argument factory of a fresh, unfitted model. `executor` is where the
    per-series models (ETS) fit their series and DeepAR (alone or in the hybrid) draws its sample
    paths; None: the model's own default (ETS: a local pool; DeepAR: this process).
    With `global_models` "per_shard" a global model is a `PerShard` of it: one fit per shard."""
    p = s.period_days
    steps = max(1, s.horizon // p)  # the horizon in periods: 28 days are 4 weeks
    deepar = DeepARConfig(
        prediction_length=steps,
        context_length=2 * steps,
        hidden_size=s.deepar_hidden_size,
        max_epochs=s.deepar_epochs,
        num_batches_per_epoch=s.deepar_batches_per_epoch,
        num_samples=s.deepar_samples,
        seed=s.seed,
        **({} if p == 1 else {"lags_seq": WEEKLY_LAGS, "period_days": p}),
    )

    def builders(aware: bool) -> dict[str, Callable[[], Forecaster]]:
        return {
            BASELINE: lambda: SeasonalNaive(censoring_aware=False, period_days=p),
            "ets": lambda: ETSForecaster(history_days=s.ets_history_days, censoring_aware=aware, period_days=p, executor=executor),
            "lightgbm": lambda: LightGBMForecaster(
                num_boost_round=s.lgbm_rounds,
                quantile_max_rows=s.lgbm_quantile_rows,
                censoring_aware=aware,
                seed=s.seed,
                period_days=p,
                train_on=s.lgbm_train_on,
                executor=executor if s.lgbm_train_on == "dask" else None,
                **dict(s.lgbm_params),
            ),
            "deepar": lambda: DeepARForecaster(deepar, censoring_aware=aware, executor=executor),
            "hybrid": lambda: DeepARLightGBMHybrid(
                deepar,
                stage2_windows=s.hybrid_windows,
                num_boost_round=max(50, s.lgbm_rounds // 2),
                censoring_aware=aware,
                seed=s.seed,
                executor=executor,
            ),
        }

    aware, naive = builders(s.censoring_aware), builders(False)
    factories = {}
    for name in s.models:
        base = name.removesuffix(UNCENSORED_SUFFIX)
        if base not in aware:
            raise ValueError(f"unknown model {name!r}; choose from {sorted(aware)} (optionally + {UNCENSORED_SUFFIX!r})")
        if p != 1 and base in DAILY_ONLY:
            raise ValueError(f"{name} cannot forecast a weekly series ({DAILY_ONLY[base]}); leave it out of a weekly line-up (`line_up`)")
        factory = naive[base] if name.endswith(UNCENSORED_SUFFIX) else aware[base]
        if s.global_models == "per_shard" and not fits_per_series(name):
            factory = functools.partial(PerShard, factory, s.shard_by, s.series_shards, name)
        factories[name] = factory
    return factories
