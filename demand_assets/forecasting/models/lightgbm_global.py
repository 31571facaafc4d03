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
"""

from __future__ import annotations

import datetime as dt
import logging

import lightgbm as lgb
import numpy as np
import polars as pl

from demand_assets.features.training_dataset import DEMAND_LAGS, ROLLING_WINDOWS
from demand_assets.forecasting.models.base import quantile_frame
from demand_assets.forecasting.models.boosting import booster_params, category_vocab, encode, train_boosters
from demand_assets.forecasting.panel import KEYS, SERIES, TARGET, exogenous_columns

__all__ = ["LightGBMForecaster"]

log = logging.getLogger(__name__)
_HISTORY_DAYS = max(max(DEMAND_LAGS), max(ROLLING_WINDOWS))


class LightGBMForecaster:
    name = "lightgbm"

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
    ) -> None:
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

    # ------------------------------------------------------------------ features
    def _target_features(self) -> list[str]:
        return [*(f"DEMAND_LAG_{k}" for k in DEMAND_LAGS), *(f"DEMAND_ROLL_MEAN_{w}" for w in ROLLING_WINDOWS)]

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
        )
        log.info("lightgbm: trained %d boosters on %d rows x %d features", len(self.models), train.height, len(self.features))
        return self

    # ------------------------------------------------------------------ predict
    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        if not self.models:
            raise RuntimeError("fit the model before predicting")
        origin: dt.date = history["DATE"].max()
        series = future.select(SERIES).unique().sort(SERIES)
        horizon = (future["DATE"].max() - origin).days
        # Target matrix: the last _HISTORY_DAYS observed days, then the horizon to fill in.
        first = origin - dt.timedelta(days=_HISTORY_DAYS - 1)
        days = pl.DataFrame({"DATE": pl.date_range(first, origin, eager=True)})
        past = (
            series.join(days, how="cross")
            .join(history.select(*KEYS, TARGET), on=KEYS, how="left")
            .sort(*SERIES, "DATE")[TARGET]
            .cast(pl.Float64)
            .to_numpy()
            .reshape(series.height, _HISTORY_DAYS)
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
            today = _HISTORY_DAYS + h - 1
            target_feats = {f"DEMAND_LAG_{k}": y[idx, today - k] for k in DEMAND_LAGS}
            for w in ROLLING_WINDOWS:
                window = y[idx, today - w : today]
                # Same rule as the training dataset: null unless every day of the window is known.
                target_feats[f"DEMAND_ROLL_MEAN_{w}"] = np.where(np.isnan(window).any(axis=1), np.nan, window.mean(axis=1))
            x = self._matrix(rows.with_columns(pl.Series(k, v) for k, v in target_feats.items()))
            preds = {name: model.predict(x) for name, model in self.models.items()}
            y[idx, today] = np.clip(preds["mean"], 0.0, None)
            outputs.append(quantile_frame(rows, preds["mean"], preds["p10"], preds["p50"], preds["p90"]))
        return pl.concat(outputs).sort(KEYS)
