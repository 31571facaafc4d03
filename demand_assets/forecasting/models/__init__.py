"""Forecasters: each has fit(train) and predict(history, future) -> quantile forecasts."""

from demand_assets.forecasting.models.base import Forecaster, quantile_frame
from demand_assets.forecasting.models.seasonal_naive import SeasonalNaive

__all__ = ["Forecaster", "SeasonalNaive", "quantile_frame"]
