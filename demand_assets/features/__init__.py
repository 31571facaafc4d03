"""Feature engineering for the training dataset (pure polars, no Dagster)."""

from demand_assets.features.calendar import holiday_calendar
from demand_assets.features.training_dataset import (
    CHANNEL_LOOKBACK_DAYS,
    DEMAND_LAGS,
    LOOKBACK_DAYS,
    RESPONSE_LAGS,
    ROLLING_WINDOWS,
    SPEND_LAGS,
    build_training_dataset,
)

__all__ = [
    "CHANNEL_LOOKBACK_DAYS",
    "DEMAND_LAGS",
    "LOOKBACK_DAYS",
    "RESPONSE_LAGS",
    "ROLLING_WINDOWS",
    "SPEND_LAGS",
    "build_training_dataset",
    "holiday_calendar",
]
