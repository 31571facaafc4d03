"""Per-series ETS (statsmodels): additive error, no trend, additive weekly seasonality.

A classical local baseline: one small state-space model per series, with analytic 80%
prediction intervals as p10/p90. Counts are modelled as reals and clipped at zero. When
censoring-aware, stockout days are imputed with the series' recent in-stock mean of the same
weekday before fitting (ETS has no missing-value mask).
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings

import numpy as np
import pandas as pd
import polars as pl
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from demand_assets.forecasting.models.base import quantile_frame
from demand_assets.forecasting.panel import KEYS, SERIES, TARGET

__all__ = ["ETSForecaster"]

log = logging.getLogger(__name__)


class ETSForecaster:
    name = "ets"

    def __init__(self, *, history_days: int = 365, censoring_aware: bool = True, maxiter: int = 200) -> None:
        self.history_days = history_days
        self.censoring_aware = censoring_aware
        self.maxiter = maxiter

    def fit(self, train: pl.DataFrame) -> "ETSForecaster":
        return self  # local models are fitted per series at predict time, on the history given

    def _series_values(self, history: pl.DataFrame) -> pl.DataFrame:
        origin: dt.date = history["DATE"].max()
        recent = history.filter(pl.col("DATE") > origin - dt.timedelta(days=self.history_days)).sort(KEYS)
        y = pl.col(TARGET).cast(pl.Float64)
        if self.censoring_aware:
            same_weekday = [*SERIES, pl.col("DATE").dt.weekday()]
            in_stock_mean = pl.when(pl.col("IN_STOCK")).then(y).rolling_mean(8, min_samples=1).over(same_weekday)
            imputed = pl.when(pl.col("IN_STOCK")).then(y).otherwise(in_stock_mean.forward_fill().over(same_weekday))
            y = imputed.fill_null(y)
        return recent.with_columns(y.alias("Y"))

    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        origin: dt.date = history["DATE"].max()
        values = self._series_values(history)
        horizon = (future["DATE"].max() - origin).days
        index = pd.date_range(origin + dt.timedelta(days=1), periods=horizon, freq="D")
        frames = []
        for (country, product), series in values.group_by(SERIES, maintain_order=True):
            y = pd.Series(series["Y"].to_numpy(), index=pd.DatetimeIndex(series["DATE"].to_list(), freq="D"))
            mean, lower, upper = self._forecast(y, horizon)
            frames.append(
                pl.DataFrame(
                    {"DATE": pl.Series(list(index.date), dtype=pl.Date), "COUNTRY": country, "PRODUCT": product, "MEAN": mean, "LO": lower, "HI": upper}
                )
            )
        out = future.select(KEYS).join(pl.concat(frames), on=KEYS, how="left").fill_null(0.0)
        point = out["MEAN"].to_numpy()
        return quantile_frame(out, point, out["LO"].to_numpy(), point, out["HI"].to_numpy())

    def _forecast(self, y: pd.Series, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(y) < 21 or np.nanstd(y.to_numpy()) == 0:
            # Too short or constant to fit: flat forecast at the recent mean, no spread.
            level = float(np.nanmean(y.to_numpy()[-28:])) if len(y) else 0.0
            flat = np.full(horizon, level)
            return flat, flat, flat
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on intermittent series
            fit = ETSModel(y, error="add", trend=None, seasonal="add", seasonal_periods=7).fit(disp=False, maxiter=self.maxiter)
            frame = fit.get_prediction(start=len(y), end=len(y) + horizon - 1).summary_frame(alpha=0.2)
        return frame["mean"].to_numpy(), frame["pi_lower"].to_numpy(), frame["pi_upper"].to_numpy()
