"""DeepAR -> LightGBM hybrid (seed 000): LightGBM refines DeepAR's probabilistic forecast.

Alignment, so that stage 2 only ever sees what was available at forecast time:

1. DeepAR is trained on the history up to `origin - k * H` (k = `stage2_windows`).
2. From that one model, out-of-sample DeepAR forecasts are made at the inner origins
   origin - k*H, ..., origin - H, each from the history up to that inner origin only.
3. Stage 2 (LightGBM, direct, one row per series and target day) is trained on those windows:
   features are the DeepAR forecast for the day (mean, p10/p50/p90), the step ahead, the day's
   known covariates, and the target as of the inner origin (last value, 7- and 28-day means);
   the label is the observed target (stockout days weighted zero). LightGBM thus learns the
   residual structure DeepAR leaves: the correction it needs per product, promotion, price,
   spend level and horizon.
4. At prediction time the same DeepAR model forecasts from the full history up to the origin,
   and stage 2 turns that into the final mean and quantiles.
"""

from __future__ import annotations

import datetime as dt
import logging

import lightgbm as lgb
import polars as pl

from demand_assets.forecasting.models.base import quantile_frame
from demand_assets.forecasting.models.boosting import booster_params, category_vocab, encode, train_boosters
from demand_assets.forecasting.models.deepar import DeepARConfig, DeepARForecaster
from demand_assets.forecasting.panel import KEYS, SERIES, TARGET, exogenous_columns, future_frame

__all__ = ["DeepARLightGBMHybrid"]

log = logging.getLogger(__name__)


class DeepARLightGBMHybrid:
    name = "hybrid"

    def __init__(
        self,
        deepar: DeepARConfig | None = None,
        *,
        stage2_windows: int = 2,
        num_boost_round: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_data_in_leaf: int = 20,
        censoring_aware: bool = True,
        seed: int = 0,
    ) -> None:
        self.deepar_config = deepar or DeepARConfig()
        self.stage2_windows = stage2_windows
        self.num_boost_round = num_boost_round
        self.params = booster_params(learning_rate=learning_rate, num_leaves=num_leaves, min_data_in_leaf=min_data_in_leaf, seed=seed)
        self.censoring_aware = censoring_aware
        self.deepar: DeepARForecaster | None = None
        self.models: dict[str, lgb.Booster] = {}
        self.features: list[str] = []
        self.vocab: dict[str, dict[str, int]] = {}

    # ------------------------------------------------------------- stage-2 rows
    def _stage2_rows(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        """DeepAR's forecast for `future` made from `history`, with what was known at its end."""
        origin: dt.date = history["DATE"].max()
        deep = self.deepar.predict(history, future).rename({"MEAN": "DEEPAR_MEAN", "P10": "DEEPAR_P10", "P50": "DEEPAR_P50", "P90": "DEEPAR_P90"})
        recent = history.filter(pl.col("DATE") > origin - dt.timedelta(days=28)).group_by(SERIES).agg(
            pl.col(TARGET).sort_by("DATE").last().cast(pl.Float64).alias("LAST_TARGET"),
            pl.col(TARGET).sort_by("DATE").tail(7).mean().alias("MEAN_7_AT_ORIGIN"),
            pl.col(TARGET).mean().alias("MEAN_28_AT_ORIGIN"),
        )
        return (
            future.join(deep, on=KEYS, how="left")
            .join(recent, on=SERIES, how="left")
            .with_columns((pl.col("DATE") - pl.lit(origin)).dt.total_days().alias("STEP"))
        )

    # ---------------------------------------------------------------------- fit
    def fit(self, train: pl.DataFrame) -> "DeepARLightGBMHybrid":
        h = self.deepar_config.prediction_length
        origin: dt.date = train["DATE"].max()
        first_inner = origin - dt.timedelta(days=self.stage2_windows * h)
        self.deepar = DeepARForecaster(self.deepar_config, censoring_aware=self.censoring_aware).fit(
            train.filter(pl.col("DATE") <= first_inner)
        )
        windows = []
        for k in range(self.stage2_windows, 0, -1):
            inner = origin - dt.timedelta(days=k * h)
            window = self._stage2_rows(train.filter(pl.col("DATE") <= inner), future_frame(train, inner, h))
            labels = train.select(*KEYS, TARGET, "IN_STOCK")
            windows.append(window.join(labels, on=KEYS, how="inner"))
        rows = pl.concat(windows, how="diagonal_relaxed")
        self.vocab = category_vocab(train)
        self.features = [
            *self.vocab, "STEP", "DEEPAR_MEAN", "DEEPAR_P10", "DEEPAR_P50", "DEEPAR_P90",
            "LAST_TARGET", "MEAN_7_AT_ORIGIN", "MEAN_28_AT_ORIGIN", *exogenous_columns(train),
        ]
        self.models = train_boosters(
            rows, self.features, self.vocab, self.params, num_boost_round=self.num_boost_round, censoring_aware=self.censoring_aware
        )
        log.info("hybrid: stage 2 trained on %d out-of-sample DeepAR rows", rows.height)
        return self

    # ------------------------------------------------------------------ predict
    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        if not self.models:
            raise RuntimeError("fit the model before predicting")
        rows = self._stage2_rows(history, future)
        x = encode(rows, self.features, self.vocab)
        preds = {name: model.predict(x) for name, model in self.models.items()}
        return quantile_frame(rows, preds["mean"], preds["p10"], preds["p50"], preds["p90"]).sort(KEYS)
