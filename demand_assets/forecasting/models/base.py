"""The forecaster interface and the shape of a forecast."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import polars as pl

from demand_assets.forecasting.panel import KEYS

__all__ = ["Forecaster", "quantile_frame"]


class Forecaster(Protocol):
    """Fit on the training dataset up to an origin; forecast the rows of a future frame.

    `predict(history, future)` returns one row per row of `future` with KEYS and MEAN, P10,
    P50, P90 (non-negative, ordered). `history` is the training dataset up to the origin,
    which recursive models need to continue their lags.
    """

    def fit(self, train: pl.DataFrame) -> "Forecaster": ...

    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame: ...


def quantile_frame(keys: pl.DataFrame, mean, p10, p50, p90) -> pl.DataFrame:
    """Assemble a forecast: clip at zero (demand is non-negative) and sort the quantiles so
    separately fitted quantile models never cross."""
    q = np.sort(np.clip(np.column_stack([p10, p50, p90]).astype(np.float64), 0.0, None), axis=1)
    return keys.select(KEYS).with_columns(
        pl.Series("MEAN", np.clip(np.asarray(mean, dtype=np.float64), 0.0, None)),
        pl.Series("P10", q[:, 0]),
        pl.Series("P50", q[:, 1]),
        pl.Series("P90", q[:, 2]),
    )
