"""A global LightGBM over all series: Tweedie mean plus p10/p50/p90 quantile models.

Multi-step strategy: recursive. The models are trained one day ahead on the training dataset's
features (target lags 1/7/14/28, rolling means 7/28, calendar, price, promotion, planned spend,
macro as of the day). To forecast day origin + h, target lags and rolling means are computed
from the history continued with the model's own mean forecasts for days origin + 1 .. h - 1;
everything else comes from the future frame, which holds only what is known at the origin. No
future target value can reach a feature. Same-day and lagged channel *response* are outcomes,
not plans, so they are not features.

Quantiles: p10/p50/p90 boosters train on a seeded sample of at most `quantile_max_rows` rows
(default 500,000; the mean booster always sees every row). Below that size, as on the default
demo panel, nothing changes; on large panels it keeps training time in hand (see
benchmarks/training_time.py).

Censoring (sales are capped by stock on stockout days): stockout days get zero sample weight, so the model learns demand from
in-stock days rather than learning that stockouts sell nothing.

A weekly series (`period_days` 7: one row a week, on its week day) uses the weekly lag plan
(`demand_assets.features.training_dataset.lag_plan`): lags of 1, 2, 4 and 52 weeks and means
over 4 and 13 weeks, still named and indexed in days, and is forecast week by week.

Training on a Dask cluster (`train_on="dask"`, with the step's Dask executor): the boosters are
trained by `lightgbm.dask` across the cluster's workers, each holding a slice of the rows
(`boosting.train_on_dask`), for a training set larger than one worker's memory. Prediction is
local either way.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import polars as pl

from demand_assets.features.training_dataset import LagPlan, lag_plan
from demand_assets.forecasting.compute import DaskExecutor, Executor
from demand_assets.forecasting.models.base import quantile_frame
from demand_assets.forecasting.models.boosting import CATEGORICAL, booster_params, category_vocab, encode, train_boosters
from demand_assets.forecasting.panel import KEYS, SERIES, TARGET, exogenous_columns

__all__ = ["TRAIN_ON", "LightGBMForecaster"]

# Where the boosters train: in this step's process, or across a Dask cluster's workers.
TRAIN_ON = ("local", "dask")

log = logging.getLogger(__name__)


class LightGBMForecaster:
    name = "lightgbm"
    period_days = 1  # models pickled before weekly sources were daily
    train_on = "local"  # models pickled before Dask training were trained locally
    executor: Executor | None = None

    def __init__(
        self,
        *,
        num_boost_round: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_data_in_leaf: int = 20,
        feature_fraction: float = 0.9,
        tweedie_variance_power: float = 1.2,
        censoring_aware: bool = True,
        quantile_max_rows: int | None = 500_000,
        seed: int = 0,
        num_threads: int = 0,
        period_days: int = 1,
        train_on: str = "local",
        executor: Executor | None = None,
    ) -> None:
        if train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}")
        if train_on == "dask" and not isinstance(executor, DaskExecutor):
            raise ValueError("LightGBM training on dask (lgbm_train_on: dask) needs the dask compute backend: set DEMAND_COMPUTE=dask and DEMAND_DASK_ADDRESS")
        self.train_on = train_on
        self.executor = executor  # the step's Dask executor when train_on is "dask"
        self.period_days = period_days  # days per row: 1, or 7 for a weekly series
        self.num_boost_round = num_boost_round
        self.quantile_max_rows = quantile_max_rows
        self.seed = seed
        self.params = booster_params(
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_data_in_leaf=min_data_in_leaf,
            feature_fraction=feature_fraction,
            seed=seed,
            num_threads=num_threads,
        )
        self.tweedie_variance_power = tweedie_variance_power
        self.censoring_aware = censoring_aware
        self.models: dict[str, lgb.Booster] = {}
        self.features: list[str] = []
        self.vocab: dict[str, dict[str, int]] = {}

    def __getstate__(self) -> dict:
        # A registered model must not carry the step's executor (a Dask client does not pickle).
        return {**self.__dict__, "executor": None}

    @staticmethod
    def input_columns(available: Sequence[str]) -> list[str]:
        """The training dataset's columns fit and predict read, of those `available`: keys, target,
        in-stock flag, categories, the target's lags and rolling means (daily or weekly), and the
        known covariates (at M5 size all 21 columns; a world with channel response reads fewer)."""
        wanted = {*KEYS, TARGET, "IN_STOCK", *CATEGORICAL, *exogenous_columns(available)}
        return [c for c in available if c in wanted or c.startswith(("DEMAND_LAG_", "DEMAND_ROLL_MEAN_"))]

    # ------------------------------------------------------------------ features
    @property
    def lags(self) -> LagPlan:
        return lag_plan(self.period_days)

    def _target_features(self) -> list[str]:
        return self.lags.columns

    def _matrix(self, frame: pl.DataFrame) -> np.ndarray:
        return encode(frame, self.features, self.vocab)

    # ---------------------------------------------------------------------- fit
    def fit(self, train: pl.DataFrame) -> LightGBMForecaster:
        self.vocab = category_vocab(train)
        self.features = [*self.vocab, *self._target_features(), *exogenous_columns(train)]
        self.models = train_boosters(
            train,
            self.features,
            self.vocab,
            self.params,
            num_boost_round=self.num_boost_round,
            censoring_aware=self.censoring_aware,
            tweedie_variance_power=self.tweedie_variance_power,
            quantile_max_rows=self.quantile_max_rows,
            seed=self.seed,
            dask_client=self.executor.client() if self.train_on == "dask" and isinstance(self.executor, DaskExecutor) else None,
        )
        where = f" on dask at {self.executor.address}" if self.train_on == "dask" and isinstance(self.executor, DaskExecutor) else ""
        log.info("lightgbm: trained %d boosters%s on %d rows x %d features", len(self.models), where, train.height, len(self.features))
        return self

    # ------------------------------------------------------------------ predict
    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        if not self.models:
            raise RuntimeError("fit the model before predicting")
        origin: dt.date = history["DATE"].max()
        series = future.select(SERIES).unique().sort(SERIES)
        horizon = (future["DATE"].max() - origin).days
        plan, p = self.lags, self.period_days
        history_days = plan.lookback_days
        # Target matrix, one column a day: the last `history_days` days, then the horizon to
        # fill in (a weekly series has values on its week days only, read every p-th column).
        first = origin - dt.timedelta(days=history_days - 1)
        days = pl.DataFrame({"DATE": pl.date_range(first, origin, eager=True)})
        # Only the look-back days enter the join: at M5 size a join against the whole history
        # (22 M rows) built a hash table of 4 GB, the unit's peak, for 1.7 M rows it can match.
        recent = history.filter(pl.col("DATE") >= first).select(*KEYS, TARGET)
        past = (
            series.join(days, how="cross")
            .join(recent, on=KEYS, how="left")
            .sort(*SERIES, "DATE")[TARGET]
            .cast(pl.Float64)
            .to_numpy()
            .reshape(series.height, history_days)
        )
        y = np.concatenate([past, np.full((series.height, horizon), np.nan)], axis=1)
        future_sorted = future.join(series.with_row_index("_S"), on=SERIES).sort("DATE", "_S")
        outputs = []
        for h in range(1, horizon + 1):
            day = origin + dt.timedelta(days=h)
            rows = future_sorted.filter(pl.col("DATE") == day)
            if rows.height == 0:
                continue
            idx = rows["_S"].to_numpy()
            today = history_days + h - 1
            target_feats = {f"DEMAND_LAG_{k}": y[idx, today - k] for k in plan.lags}
            for w in plan.windows:
                window = y[idx, today - w : today : p]  # the w / p periods before today
                # Same rule as the training dataset: null unless every period of the window is known.
                target_feats[f"DEMAND_ROLL_MEAN_{w}"] = np.where(np.isnan(window).any(axis=1), np.nan, window.mean(axis=1))
            x = self._matrix(rows.with_columns(pl.Series(k, v) for k, v in target_feats.items()))
            preds = {name: model.predict(x) for name, model in self.models.items()}
            y[idx, today] = np.clip(preds["mean"], 0.0, None)
            outputs.append(quantile_frame(rows, preds["mean"], preds["p10"], preds["p50"], preds["p90"]))
        return pl.concat(outputs).sort(KEYS)
