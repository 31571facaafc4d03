"""Feature engineering for the training dataset (pure polars, no Dagster)."""

from demand_assets.features.calendar import holiday_calendar, holiday_flags
from demand_assets.features.training_dataset import (
    CHANNEL_LOOKBACK_DAYS,
    DEMAND_LAGS,
    LOOKBACK_DAYS,
    RESPONSE_LAGS,
    ROLLING_WINDOWS,
    SPEND_LAGS,
    LagPlan,
    build_training_dataset,
    lag_plan,
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
    "holiday_flags",
    "lag_plan",
    "LagPlan",
]
