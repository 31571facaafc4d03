"""Names every table and model share, defined once: the series keys, the target, the forecast
quantile levels. `demand_assets.forecasting.panel` re-exports them for the models."""

from __future__ import annotations

__all__ = ["KEYS", "QUANTILES", "QUANTILE_COLUMNS", "SERIES", "TARGET"]

TARGET = "PRODUCT_DEMAND"  # observed daily unit sales per country x product
SERIES = ["COUNTRY", "PRODUCT"]  # one time series per country x product
KEYS = ["DATE", *SERIES]
QUANTILES = (0.1, 0.5, 0.9)  # the forecast band every model reports
QUANTILE_COLUMNS = ("P10", "P50", "P90")
