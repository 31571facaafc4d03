"""What a forecaster may see: the column roles of the training dataset.

At a forecast origin (the last day with a known target) a model knows the target history and,
for the horizon, only what is planned or calendared: price, promotion, planned spend, calendar.
Macro indicators are known as of the origin (carried forward). Same-day channel response and
anything derived from the future target are never features of a future day.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

__all__ = [
    "KEYS",
    "QUANTILES",
    "SERIES",
    "TARGET",
    "exogenous_columns",
    "future_frame",
    "macro_columns",
]

TARGET = "PRODUCT_DEMAND"
SERIES = ["COUNTRY", "PRODUCT"]
KEYS = ["DATE", *SERIES]
QUANTILES = (0.1, 0.5, 0.9)
_CALENDAR = ["DAY_OF_WEEK", "WEEK_OF_YEAR", "MONTH", "DAY_OF_YEAR", "IS_HOLIDAY"]
_MACRO = ["ECONOMIC_INDEX", "INFLATION_RATE", "UNEMPLOYMENT_RATE"]


def macro_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in _MACRO if c in frame.columns]


def exogenous_columns(frame: pl.DataFrame) -> list[str]:
    """Covariates known in advance for every future day (plus macro as of the origin)."""
    spend = [c for c in frame.columns if c.startswith("SPEND_")]
    return ["PRICE", "PROMO", *[c for c in _CALENDAR if c in frame.columns], *spend, *macro_columns(frame)]


def future_frame(dataset: pl.DataFrame, origin: dt.date, horizon: int) -> pl.DataFrame:
    """Rows of (origin, origin + horizon] with only what is known at the origin.

    Target, censoring flag, lags, rolling means and response columns are dropped; macro
    indicators are replaced by their value on the origin day.
    """
    end = origin + dt.timedelta(days=horizon)
    rows = dataset.filter((pl.col("DATE") > origin) & (pl.col("DATE") <= end))
    keep = [*KEYS, *[c for c in ("CATEGORY",) if c in dataset.columns], *exogenous_columns(dataset)]
    rows = rows.select(keep)
    macro = macro_columns(dataset)
    if macro:
        as_of = dataset.filter(pl.col("DATE") == origin).select(*SERIES, *macro)
        rows = rows.drop(macro).join(as_of, on=SERIES, how="left")
    return rows.select(keep).sort(KEYS)
