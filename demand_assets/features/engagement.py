"""Engagement features from an event log's product_engagement domain (issue 20, point 2).

Browsing moves before buying: views and carts of the days before a day say something about its
purchases. Every feature ends the day before (nothing same-day: a day's views are only known
once it is over), named ENGAGEMENT_<WHAT>_LAG_k where k is the days between the last day it
covers and the row's day, so the forecasting panel treats it as an observed covariate
(`demand_assets.forecasting.panel`: carried forward from the origin over a horizon):

* ENGAGEMENT_VIEWS_LAG_1/7, ENGAGEMENT_CARTS_LAG_1/7: the count 1 and 7 days earlier;
* ENGAGEMENT_VIEWS_MEAN_7_LAG_1, ..._MEAN_28_LAG_1 (and CARTS): means over the 7 and 28 days
  before;
* ENGAGEMENT_CART_RATE_28_LAG_1: purchases per cart over the 28 days before (null without a
  cart): how often this product's carts convert.

A look-back day with no stored row gives a null, never a shifted value.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from contracts.columns import ENGAGEMENT_PREFIX, SERIES

__all__ = ["ENGAGEMENT_LAGS", "ENGAGEMENT_LOOKBACK_DAYS", "ENGAGEMENT_WINDOWS", "engagement_columns", "engagement_features"]

ENGAGEMENT_LAGS: tuple[int, ...] = (1, 7)
ENGAGEMENT_WINDOWS: tuple[int, ...] = (7, 28)
CART_RATE_WINDOW = 28
ENGAGEMENT_LOOKBACK_DAYS = max(*ENGAGEMENT_LAGS, *ENGAGEMENT_WINDOWS)
_COUNTED = ("VIEWS", "CARTS")


def engagement_columns() -> list[str]:
    """The feature columns `engagement_features` adds, in order (the contract's list of them is
    contracts.columns.ENGAGEMENT_FEATURES; a test holds the two equal)."""
    columns = [
        *(f"{ENGAGEMENT_PREFIX}{c}_LAG_{k}" for c in _COUNTED for k in ENGAGEMENT_LAGS),
        *(f"{ENGAGEMENT_PREFIX}{c}_MEAN_{w}_LAG_1" for c in _COUNTED for w in ENGAGEMENT_WINDOWS),
        f"{ENGAGEMENT_PREFIX}CART_RATE_{CART_RATE_WINDOW}_LAG_1",
    ]
    return columns


def engagement_features(history: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """DATE, COUNTRY, PRODUCT and `engagement_columns()` for [start, end), from product_engagement
    rows covering [start - ENGAGEMENT_LOOKBACK_DAYS, end)."""
    first = start - dt.timedelta(days=ENGAGEMENT_LOOKBACK_DAYS)
    history = history.filter(pl.col("DATE").is_between(first, end, closed="left"))
    days = pl.DataFrame({"DATE": pl.date_range(first, end, interval="1d", closed="left", eager=True)}).with_row_index("DAY_INDEX")
    # A dense grid per series, sorted by series then day: shift(k) is "k days earlier" within a
    # series once the rows whose look-back crosses into the previous series are masked.
    grid = history.select(SERIES).unique().sort(SERIES).join(days, how="cross")
    dense = grid.join(history.select("DATE", *SERIES, *_COUNTED, "PURCHASES"), on=["DATE", *SERIES], how="left", maintain_order="left")
    day = pl.col("DAY_INDEX")

    def mean_before(column: str, w: int) -> pl.Expr:
        return pl.when(day >= w).then(pl.col(column).cast(pl.Float64).shift(1).rolling_mean(w, min_samples=w))

    def sum_before(column: str, w: int) -> pl.Expr:
        return pl.when(day >= w).then(pl.col(column).cast(pl.Float64).shift(1).rolling_sum(w, min_samples=w))

    carts, bought = sum_before("CARTS", CART_RATE_WINDOW), sum_before("PURCHASES", CART_RATE_WINDOW)
    features = dense.with_columns(
        *(pl.when(day >= k).then(pl.col(c).cast(pl.Float64).shift(k)).alias(f"{ENGAGEMENT_PREFIX}{c}_LAG_{k}") for c in _COUNTED for k in ENGAGEMENT_LAGS),
        *(mean_before(c, w).alias(f"{ENGAGEMENT_PREFIX}{c}_MEAN_{w}_LAG_1") for c in _COUNTED for w in ENGAGEMENT_WINDOWS),
        pl.when(carts > 0).then(bought / carts).alias(f"{ENGAGEMENT_PREFIX}CART_RATE_{CART_RATE_WINDOW}_LAG_1"),
    )
    return features.filter(pl.col("DATE").is_between(start, end, closed="left")).select("DATE", *SERIES, *engagement_columns())
