"""Names every table and model share, defined once: the series keys, the target, the forecast
quantile levels. `demand_assets.forecasting.panel` re-exports them for the models."""

from __future__ import annotations

__all__ = ["ENGAGEMENT_FEATURES", "ENGAGEMENT_PREFIX", "KEYS", "QUANTILES", "QUANTILE_COLUMNS", "SERIES", "TARGET"]

TARGET = "PRODUCT_DEMAND"  # observed daily unit sales per country x product
SERIES = ["COUNTRY", "PRODUCT"]  # one time series per country x product
KEYS = ["DATE", *SERIES]
QUANTILES = (0.1, 0.5, 0.9)  # the forecast band every model reports
QUANTILE_COLUMNS = ("P10", "P50", "P90")
# The training dataset's features from an event log's engagement, each ending the day before
# (demand_assets/features/engagement.py builds them): counts 1 and 7 days earlier, means over
# the 7 and 28 days before, and the 28-day cart-to-purchase rate.
ENGAGEMENT_PREFIX = "ENGAGEMENT_"
ENGAGEMENT_FEATURES = (
    *(f"{ENGAGEMENT_PREFIX}{c}_LAG_{k}" for c in ("VIEWS", "CARTS") for k in (1, 7)),
    *(f"{ENGAGEMENT_PREFIX}{c}_MEAN_{w}_LAG_1" for c in ("VIEWS", "CARTS") for w in (7, 28)),
    f"{ENGAGEMENT_PREFIX}CART_RATE_28_LAG_1",
)
