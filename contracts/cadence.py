"""How often a series has a row: every day, or once a week on one weekday.

The partitions are always days. A daily source has rows on every day; a weekly source (a
`table` declared `frequency: weekly`) has one row per series and week, dated on the week's day:
the row stands for the seven days that end on that day (Walmart's weekly sales are dated on the
Friday that ends each week). Every other day of a weekly source holds no rows by design. A
period is one day or seven; lags, horizons and look-backs stay counted in days, and a weekly
source uses only multiples of seven of them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["DAILY", "WEEKDAYS", "Cadence"]

# ISO weekday (1 = Monday) -> its name, as a declaration or a message spells it.
WEEKDAYS = {1: "Monday", 2: "Tuesday", 3: "Wednesday", 4: "Thursday", 5: "Friday", 6: "Saturday", 7: "Sunday"}


@dataclass(frozen=True)
class Cadence:
    """Daily (`weekday` None) or weekly with its rows on ISO weekday `weekday` (1 = Monday)."""

    weekday: int | None = None

    def __post_init__(self) -> None:
        if self.weekday is not None and self.weekday not in WEEKDAYS:
            raise ValueError(f"a weekly cadence's weekday is an ISO weekday 1..7, got {self.weekday!r}")

    @staticmethod
    def weekly(weekday: int) -> Cadence:
        return Cadence(weekday)

    @property
    def is_weekly(self) -> bool:
        return self.weekday is not None

    @property
    def period_days(self) -> int:
        """Days per period: 1 or 7."""
        return 7 if self.is_weekly else 1

    @property
    def frequency(self) -> str:
        return "weekly" if self.is_weekly else "daily"

    def describe(self) -> str:
        if self.weekday is None:
            return "daily: a row every day"
        return f"weekly: one row per week, on its {WEEKDAYS[self.weekday]} (the week ending that day); other days hold no rows by design"

    def holds(self, day: dt.date) -> bool:
        """Whether `day` carries rows."""
        return self.weekday is None or day.isoweekday() == self.weekday

    def days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """The days of [start, end) that carry rows."""
        return [d for d in (start + dt.timedelta(days=i) for i in range((end - start).days)) if self.holds(d)]

    def first_on_or_after(self, day: dt.date) -> dt.date:
        if self.weekday is None:
            return day
        return day + dt.timedelta(days=(self.weekday - day.isoweekday()) % 7)

    def last_on_or_before(self, day: dt.date) -> dt.date:
        if self.weekday is None:
            return day
        return day - dt.timedelta(days=(day.isoweekday() - self.weekday) % 7)

    def whole_periods(self, days: int) -> int:
        """A span of `days` in whole periods (weekly: 28 days are 4 weeks, 30 days too)."""
        return days // self.period_days


DAILY = Cadence()
