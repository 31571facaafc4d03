"""Public holidays per country, from the `holidays` package."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Sequence

import holidays
import polars as pl

__all__ = ["holiday_calendar", "holiday_flags"]

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=256)
def _holidays(country: str, year: int) -> frozenset[dt.date]:
    try:
        return frozenset(holidays.country_holidays(country, years=year).keys())
    except NotImplementedError:
        # A market that is not an ISO country (an M5 store, say) has no public-holiday calendar.
        log.warning("no public-holiday calendar for %r; IS_HOLIDAY is false for it", country)
        return frozenset()


def holiday_calendar(countries: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
    """DATE x COUNTRY with IS_HOLIDAY for [start, end)."""
    dates = pl.date_range(start, end, interval="1d", closed="left", eager=True)
    frames = []
    for country in countries:
        days = frozenset().union(*(_holidays(country, y) for y in range(start.year, end.year + 1)))
        frames.append(pl.DataFrame({"DATE": dates, "COUNTRY": country}).with_columns(pl.col("DATE").is_in(sorted(days)).alias("IS_HOLIDAY")))
    return pl.concat(frames) if frames else pl.DataFrame(schema={"DATE": pl.Date, "COUNTRY": pl.String, "IS_HOLIDAY": pl.Boolean})


def holiday_flags(countries: Sequence[str], start: dt.date, end: dt.date, period_days: int = 1) -> pl.DataFrame:
    """DATE x COUNTRY with IS_HOLIDAY for [start, end): for a daily source, the day is a public
    holiday; for a weekly one (`period_days` 7), a holiday falls in the week ending on DATE (the
    row stands for that week: Thanksgiving lands on the Friday that ends its week)."""
    if period_days == 1:
        return holiday_calendar(countries, start, end)
    days = holiday_calendar(countries, start - dt.timedelta(days=period_days - 1), end).sort("COUNTRY", "DATE")
    in_week = pl.col("IS_HOLIDAY").cast(pl.Int8).rolling_max(period_days, min_samples=1).over("COUNTRY").cast(pl.Boolean)
    return days.with_columns(in_week.alias("IS_HOLIDAY")).filter(pl.col("DATE") >= start)
