"""What a forecaster may see: the column roles of the training dataset.

At a forecast origin (the last day with a known target) a model knows the target history and,
for the horizon, only what is planned or calendared: price, promotion, planned spend, calendar.
Macro indicators are known as of the origin (carried forward). Same-day channel response and
anything derived from the future target are never features of a future day. A table source's
known covariates (KNOWN_<NAME>) are planned like price; its observed covariates enter only
lagged (OBSERVED_<NAME>_LAG_k): a lag that reaches past the origin is carried forward from the
last value known at the origin (engagement counts: the newest value on the same weekday,
`_known_lags_only`). An event log's engagement features (ENGAGEMENT_<WHAT>_LAG_k)
are observed covariates too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from contracts.columns import ENGAGEMENT_PREFIX, KEYS, QUANTILES, SERIES, TARGET

__all__ = [
    "KEYS",
    "planned_future",
    "QUANTILES",
    "SERIES",
    "TARGET",
    "covariate_columns",
    "exogenous_columns",
    "future_frame",
    "history_up_to",
    "sorted_by_date",
    "macro_columns",
]

_CALENDAR = ["DAY_OF_WEEK", "WEEK_OF_YEAR", "MONTH", "DAY_OF_YEAR", "IS_HOLIDAY", "SNAP", "IS_EVENT"]
_MACRO = ["ECONOMIC_INDEX", "INFLATION_RATE", "UNEMPLOYMENT_RATE"]
_OBSERVED_PREFIXES = ("OBSERVED_", ENGAGEMENT_PREFIX)


def _names(frame: pl.DataFrame | Sequence[str]) -> list[str]:
    """A frame's column names, or the names themselves (a stored table's schema, before reading it)."""
    return frame.columns if isinstance(frame, pl.DataFrame) else list(frame)


def macro_columns(frame: pl.DataFrame | Sequence[str]) -> list[str]:
    names = _names(frame)
    return [c for c in _MACRO if c in names]


def covariate_columns(frame: pl.DataFrame | Sequence[str]) -> list[str]:
    """A table source's declared covariates as features: KNOWN_<NAME> (same day) and
    OBSERVED_<NAME>_LAG_k (lagged); an event log's ENGAGEMENT_<WHAT>_LAG_k (lagged)."""
    return [c for c in _names(frame) if c.startswith("KNOWN_") or _observed_lag(c) is not None]


def _observed_lag(column: str) -> int | None:
    """k of an observed covariate's lag column (OBSERVED_<NAME>_LAG_k, ENGAGEMENT_<WHAT>_LAG_k), else None."""
    head, _, lag = column.rpartition("_LAG_")
    return int(lag) if column.startswith(_OBSERVED_PREFIXES) and head and lag.isdigit() else None


def exogenous_columns(frame: pl.DataFrame | Sequence[str]) -> list[str]:
    """Covariates known in advance for every future day (plus macro as of the origin, and a
    table source's observed covariates, lagged): those of them `frame` has. A per-series model's
    unit reads only its input columns, none of these."""
    names = _names(frame)
    spend = [c for c in names if c.startswith("SPEND_")]
    return [*[c for c in ("PRICE", "PROMO", *_CALENDAR) if c in names], *spend, *macro_columns(frame), *covariate_columns(frame)]


def _known_lags_only(rows: pl.DataFrame, origin: dt.date, history: pl.DataFrame | None = None) -> pl.DataFrame:
    """Observed-covariate lags of future days: the stored value where the lagged day is on or
    before the origin (it was observed), else the last known value of the series carried
    forward (a slow indicator such as CPI is best guessed by its newest value). Engagement
    counts (ENGAGEMENT_*) follow a weekly cycle (shoppers browse most on Sundays): with
    `history` (the dataset the rows come from) they take the value observed on the newest day up
    to the origin that falls on the same weekday as the lagged day, instead of the origin day's
    value repeated on every day. (A weekly series' lags fall on its week day: both rules give
    the newest known value.)"""
    lagged = [c for c in rows.columns if _observed_lag(c) is not None]
    if not lagged:
        return rows
    known = [pl.when(pl.col("DATE") - pl.duration(days=_observed_lag(c)) <= pl.lit(origin)).then(pl.col(c)).otherwise(None).alias(c) for c in lagged]
    rows = rows.sort(KEYS).with_columns(known)
    if history is not None:
        for c in [c for c in lagged if c.startswith(ENGAGEMENT_PREFIX)]:
            k = _observed_lag(c)
            assert k is not None
            # Days the lagged day lies past the origin, rounded up to whole weeks: the row that
            # many weeks earlier observed its lag on the same weekday, on or before the origin.
            past = (pl.col("DATE") - pl.lit(origin)).dt.total_days() - k
            source = pl.col("DATE") - pl.duration(days=7 * ((past + 6) // 7))
            window = history.filter(pl.col("DATE").is_between(origin + dt.timedelta(days=k - 6), origin + dt.timedelta(days=k)))
            values = window.select(*SERIES, pl.col("DATE").alias("_SOURCE"), pl.col(c).alias("_SAME_WEEKDAY"))
            rows = (
                rows.with_columns(pl.when(past > 0).then(source).otherwise(None).alias("_SOURCE"))
                .join(values, on=[*SERIES, "_SOURCE"], how="left")
                .with_columns(pl.coalesce(c, "_SAME_WEEKDAY").alias(c))
                .drop("_SOURCE", "_SAME_WEEKDAY")
            )
    return rows.sort(KEYS).with_columns(pl.col(c).forward_fill().over(SERIES) for c in lagged)


def sorted_by_date(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame itself when already in DATE order, else sorted by DATE (stable)."""
    return frame if frame["DATE"].is_sorted() else frame.sort("DATE", maintain_order=True)


def history_up_to(frame: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """Rows with DATE <= `day`: a zero-copy slice when the frame is sorted by DATE (as the
    backtest's panel is), a filtered copy otherwise. At M5 size a copy is gigabytes."""
    dates = frame["DATE"]
    if dates.is_sorted():
        return frame.slice(0, int(dates.search_sorted(day, side="right")))
    return frame.filter(pl.col("DATE") <= day)


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
    return _known_lags_only(rows.select(keep), origin, dataset).sort(KEYS)


def planned_future(dataset: pl.DataFrame, origin: dt.date, horizon: int, *, period_days: int = 1) -> pl.DataFrame:
    """Like `future_frame`, but complete: days not yet in the dataset get a default plan.
    A weekly series (`period_days` 7, `origin` one of its week days) gets its week days only.

    A stored day keeps its stored covariates (the real plan). A day beyond the stored data gets
    the plan a planner would assume without one: the last known price, no promotion, each
    channel's planned spend repeating the last stored week, the calendar and public holidays
    of the day, and macro indicators as of the origin.
    """
    from demand_assets.features.calendar import holiday_flags

    stored = future_frame(dataset, origin, horizon)
    last = dataset.filter(pl.col("DATE") <= origin)
    series = last.select(SERIES).unique().sort(SERIES)
    days = pl.DataFrame(
        {"DATE": pl.date_range(origin + dt.timedelta(days=period_days), origin + dt.timedelta(days=horizon), interval=f"{period_days}d", eager=True)}
    )
    missing = series.join(days, how="cross").join(stored.select(KEYS), on=KEYS, how="anti")
    if missing.is_empty():
        return stored
    latest = last.sort("DATE").group_by(SERIES).agg(pl.all().exclude(SERIES).last())
    spend_cols = [c for c in stored.columns if c.startswith("SPEND_")]
    # Same weekday of the last stored week: origin - 6 .. origin map onto every later week.
    base_spend = [c for c in spend_cols if "_LAG_" not in c]
    week = last.filter(pl.col("DATE") > origin - dt.timedelta(days=7)).select(*SERIES, pl.col("DATE").dt.weekday().alias("_DOW"), *base_spend)
    # A table source's covariates: known ones keep their last value (no plan stored), observed
    # lags their last value known at the origin (`_known_lags_only` below).
    covariates = covariate_columns(dataset)
    planned = (
        missing.join(
            latest.select(*SERIES, "PRICE", *[c for c in ("CATEGORY",) if c in latest.columns], *macro_columns(dataset), *covariates), on=SERIES, how="left"
        )
        .with_columns(pl.lit(False).alias("PROMO"), pl.col("DATE").dt.weekday().alias("_DOW"))
        .join(week, on=[*SERIES, "_DOW"], how="left")
        # With a plan that repeats weekly, spend 7 days earlier is the same weekday's plan.
        .with_columns(pl.col(c.split("_LAG_")[0]).alias(c) for c in spend_cols if "_LAG_" in c)
        .with_columns(
            pl.col("DATE").dt.weekday().cast(pl.Int64).alias("DAY_OF_WEEK"),
            pl.col("DATE").dt.week().cast(pl.Int64).alias("WEEK_OF_YEAR"),
            pl.col("DATE").dt.month().cast(pl.Int64).alias("MONTH"),
            pl.col("DATE").dt.ordinal_day().cast(pl.Int64).alias("DAY_OF_YEAR"),
        )
        .drop("_DOW")
    )
    holidays = holiday_flags(series["COUNTRY"].unique().sort().to_list(), days["DATE"].min(), days["DATE"].max() + dt.timedelta(days=1), period_days)
    planned = planned.join(holidays, on=["DATE", "COUNTRY"], how="left")
    # Source calendars beyond the stored days (M5's SNAP and events) are unknown here: null.
    planned = planned.with_columns(pl.lit(None, stored.schema[c]).alias(c) for c in stored.columns if c not in planned.columns)
    return _known_lags_only(pl.concat([stored, planned.select(stored.columns)], how="vertical_relaxed"), origin, dataset).sort(KEYS)
