"""The model training dataset: one row per DATE x COUNTRY x PRODUCT.

Every feature of a row is something a forecaster knows when the day starts: target lags and
rolling means end the day before, spend is the day's planned spend, channel response enters
only lagged (it is an outcome of the day), macro indicators and price/promo are known covariates.
A table source's declared covariates follow the same rule: KNOWN_<NAME> enters on its own day,
OBSERVED_<NAME> only as OBSERVED_<NAME>_LAG_k (k in COVARIATE_LAGS), never on the same day.
A row depends only on the LOOKBACK_DAYS before it, so a day built alone equals the same day
built inside a year-long backfill.

A weekly source (`contracts.cadence`: one row per series and week, on the week's day) has rows
on its week days only, and its lags and windows are whole weeks, still named in days
(`lag_plan`): DEMAND_LAG_7 is last week, DEMAND_LAG_364 the same week a year earlier,
DEMAND_ROLL_MEAN_28 the mean of the 4 weeks before; IS_HOLIDAY says a holiday falls in the week.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from contracts.cadence import DAILY, Cadence
from contracts.columns import SERIES, TARGET
from demand_assets.features.calendar import holiday_flags
from demand_assets.features.engagement import engagement_features

__all__ = [
    "CHANNEL_LOOKBACK_DAYS",
    "COVARIATE_LAGS",
    "DEMAND_LAGS",
    "LOOKBACK_DAYS",
    "LagPlan",
    "RESPONSE_LAGS",
    "ROLLING_WINDOWS",
    "SPEND_LAGS",
    "build_training_dataset",
    "lag_plan",
    "listed_rows",
]

DEMAND_LAGS: tuple[int, ...] = (1, 7, 14, 28)
ROLLING_WINDOWS: tuple[int, ...] = (7, 28)
SPEND_LAGS: tuple[int, ...] = (7,)
RESPONSE_LAGS: tuple[int, ...] = (1, 7)
# Observed covariates of a table source (OBSERVED_<NAME>): known only once their day is over.
COVARIATE_LAGS: tuple[int, ...] = (1, 7)
# Rolling means end the day before, so a 28-day mean reaches back 28 days, as does lag 28.
LOOKBACK_DAYS = max(max(DEMAND_LAGS), max(ROLLING_WINDOWS))
CHANNEL_LOOKBACK_DAYS = max(max(SPEND_LAGS), max(RESPONSE_LAGS))
# A weekly source: 1, 2, 4 and 52 weeks back (the same week last year carries the annual
# season, the one a weekly series has), means over the 4 and 13 weeks before; observed
# covariates lagged 1 and 4 weeks.
WEEKLY_DEMAND_LAGS: tuple[int, ...] = (7, 14, 28, 364)
WEEKLY_ROLLING_WINDOWS: tuple[int, ...] = (28, 91)
WEEKLY_COVARIATE_LAGS: tuple[int, ...] = (7, 28)


@dataclass(frozen=True)
class LagPlan:
    """The target lags, rolling windows and observed-covariate lags of one cadence, in days
    (whole periods: a weekly source's are multiples of 7)."""

    period_days: int
    lags: tuple[int, ...]
    windows: tuple[int, ...]
    covariate_lags: tuple[int, ...]

    @property
    def lookback_days(self) -> int:
        """Days of history a row's features reach back (a mean ends the period before)."""
        return max(max(self.lags), max(self.windows))

    @property
    def columns(self) -> list[str]:
        return [*(f"DEMAND_LAG_{k}" for k in self.lags), *(f"DEMAND_ROLL_MEAN_{w}" for w in self.windows)]


def lag_plan(period_days: int = 1) -> LagPlan:
    """The lag plan of a daily (1) or weekly (7) source."""
    if period_days == 1:
        return LagPlan(1, DEMAND_LAGS, ROLLING_WINDOWS, COVARIATE_LAGS)
    if period_days == 7:
        return LagPlan(7, WEEKLY_DEMAND_LAGS, WEEKLY_ROLLING_WINDOWS, WEEKLY_COVARIATE_LAGS)
    raise ValueError(f"a period is 1 day or 7, got {period_days}")


def listed_rows(product_history: pl.DataFrame) -> pl.DataFrame:
    """Product demand without its listing-gap days (LISTED false, where a source marks them:
    m5, transactions; see `demand_assets.features.stockouts`), and without the LISTED column.
    A listing gap's zeros are not demand: not a training row, not an evaluation row, not a lag
    (the days after a gap see null lags over it, in training and in recursive forecasts alike)."""
    if "LISTED" not in product_history.columns:
        return product_history
    # Null: a row stored before its source marked listing gaps (the column joined the table later).
    return product_history.filter(pl.col("LISTED").fill_null(True)).drop("LISTED")


def build_training_dataset(
    product_history: pl.DataFrame,
    country: pl.DataFrame | None,
    channel_history: pl.DataFrame | None,
    products: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    cadence: Cadence = DAILY,
    engagement_history: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Rows for [start, end).

    `product_history` covers [start - lookback, end) (LOOKBACK_DAYS for a daily source,
    `lag_plan(7).lookback_days` for a weekly one), `channel_history`
    [start - CHANNEL_LOOKBACK_DAYS, end); missing history days give null lags, never shifted
    ones. `country` and `channel_history` are None for sources without those domains. Listing-gap
    days (LISTED false) are left out (`listed_rows`). `engagement_history` (an event log's
    product_engagement over [start - ENGAGEMENT_LOOKBACK_DAYS, end), else None) adds the lagged
    ENGAGEMENT_* features (`demand_assets.features.engagement`).
    """
    plan = lag_plan(cadence.period_days)
    product_history = listed_rows(product_history)
    first = start - dt.timedelta(days=plan.lookback_days)
    demand = _demand_features(product_history.filter(pl.col("DATE").is_between(first, end, closed="left")), cadence.first_on_or_after(first), end, plan)
    rows = demand.filter(pl.col("DATE").is_between(start, end, closed="left"))
    rows = rows.join(products.select("PRODUCT", "CATEGORY"), on="PRODUCT", how="left")
    rows = rows.with_columns(
        pl.col("DATE").dt.weekday().cast(pl.Int64).alias("DAY_OF_WEEK"),
        pl.col("DATE").dt.week().cast(pl.Int64).alias("WEEK_OF_YEAR"),
        pl.col("DATE").dt.month().cast(pl.Int64).alias("MONTH"),
        pl.col("DATE").dt.ordinal_day().cast(pl.Int64).alias("DAY_OF_YEAR"),
    )
    countries = rows["COUNTRY"].unique().sort().to_list()
    rows = rows.join(holiday_flags(countries, start, end, cadence.period_days), on=["DATE", "COUNTRY"], how="left")
    if country is not None:
        macro = country.select("DATE", "COUNTRY", "ECONOMIC_INDEX", "INFLATION_RATE", "UNEMPLOYMENT_RATE")
        rows = rows.join(macro, on=["DATE", "COUNTRY"], how="left")
    if channel_history is not None:
        rows = rows.join(_channel_features(channel_history, start, end), on=["DATE", "COUNTRY"], how="left")
    if engagement_history is not None:
        rows = rows.join(engagement_features(engagement_history, start, end), on=["DATE", *SERIES], how="left")
    base = [
        "DATE",
        "COUNTRY",
        "PRODUCT",
        "CATEGORY",
        TARGET,
        "IN_STOCK",
        "PRICE",
        "PROMO",
        *plan.columns,
        "DAY_OF_WEEK",
        "WEEK_OF_YEAR",
        "MONTH",
        "DAY_OF_YEAR",
        "IS_HOLIDAY",
    ]
    extra = [c for c in rows.columns if c not in base]
    return rows.select(*base, *extra).sort("DATE", "COUNTRY", "PRODUCT")


def _demand_features(history: pl.DataFrame, first: dt.date, end: dt.date, plan: LagPlan) -> pl.DataFrame:
    # A dense grid of periods per series (every day, or every week day from `first`, itself a
    # week day), sorted by series then day, makes a plain shift(k / period) mean "k days
    # earlier" within a series; rows whose look-back would cross into the previous series
    # (DAY_INDEX, in periods, < k / period) are masked to null. Missing history periods stay
    # null, never shifted over.
    p = plan.period_days
    days = pl.DataFrame({"DATE": pl.date_range(first, end, interval=f"{p}d", closed="left", eager=True)}).with_row_index("DAY_INDEX")
    grid = history.select(SERIES).unique().sort(SERIES).join(days, how="cross")
    dense = grid.join(history, on=["DATE", *SERIES], how="left", maintain_order="left")
    target = pl.col(TARGET)
    day = pl.col("DAY_INDEX")
    observed = [c for c in history.columns if c.startswith("OBSERVED_")]
    dense = dense.with_columns(
        *(pl.when(day >= k // p).then(target.shift(k // p)).alias(f"DEMAND_LAG_{k}") for k in plan.lags),
        *(
            pl.when(day >= w // p).then(target.cast(pl.Float64).shift(1).rolling_mean(w // p, min_samples=w // p)).alias(f"DEMAND_ROLL_MEAN_{w}")
            for w in plan.windows
        ),
        *(pl.when(day >= k // p).then(pl.col(c).shift(k // p)).alias(f"{c}_LAG_{k}") for c in observed for k in plan.covariate_lags),
    )
    # Grid rows with no observation (the missing days themselves) are not training rows; an
    # observed covariate's same-day value is not known when the day starts.
    return dense.filter(target.is_not_null()).drop("DAY_INDEX", *observed)


def _channel_features(channel_history: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Wide per DATE x COUNTRY: SPEND_<CH>, SPEND_<CH>_LAG_k, RESPONSE_<CH>_LAG_k."""
    wide = channel_history.pivot(on="CHANNEL", index=["DATE", "COUNTRY"], values=["SPEND", "CHANNEL_RESPONSE"], aggregate_function=None)
    channels = sorted(channel_history["CHANNEL"].unique().to_list())
    wide = wide.rename({f"CHANNEL_RESPONSE_{ch}": f"RESPONSE_{ch}" for ch in channels})
    out = wide.filter(pl.col("DATE").is_between(start, end, closed="left")).select("DATE", "COUNTRY", *(f"SPEND_{ch}" for ch in channels))
    lagged = [(f"SPEND_{ch}", k) for ch in channels for k in SPEND_LAGS] + [(f"RESPONSE_{ch}", k) for ch in channels for k in RESPONSE_LAGS]
    for column, k in lagged:
        shifted = wide.select(pl.col("DATE") + dt.timedelta(days=k), "COUNTRY", pl.col(column).alias(f"{column}_LAG_{k}"))
        out = out.join(shifted, on=["DATE", "COUNTRY"], how="left")
    return out
