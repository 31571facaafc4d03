"""Budget planning around the optimiser: bounds per country x channel, the stock the shelves
can serve, and the stock itself (from a CSV or days of cover).

`allocation.optimise_allocation` solves one problem; this module builds that problem from the
stored spend history and the planner's settings, and from the forecast and stock when spend
must not drive demand into stockouts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from demand_assets.marketing.allocation import Allocation, AllocationProblem, optimise_allocation, window_revenue
from demand_assets.marketing.summary import Curves

__all__ = ["BudgetPlan", "PlanningSettings", "allocate", "plan_budget", "spare_stock_by_country", "stock_from_cover", "stock_from_csv", "stock_window"]

Key = tuple[str, str]  # (COUNTRY, CHANNEL)


@dataclass(frozen=True)
class PlanningSettings:
    """The planner's bounds: each key's daily spend within [min_ratio, max_ratio] x its current
    spend, unless its channel has absolute bounds in `channel_bounds` (CHANNEL -> (min, max))."""

    planning_days: int = 28
    min_ratio: float = 0.5
    max_ratio: float = 2.0
    channel_bounds: Mapping[str, Sequence[float]] = field(default_factory=dict)
    grid_units: int = 200

    def __post_init__(self) -> None:
        if self.planning_days < 1 or self.min_ratio < 0 or self.max_ratio < self.min_ratio:
            raise ValueError("rule 'planning window and ratios': planning_days >= 1 and 0 <= min_ratio <= max_ratio")


def allocate(
    keys: Sequence[Key],
    curves: Curves,
    spend: Mapping[Key, np.ndarray],
    current: Mapping[Key, float],
    revenue: Mapping[str, float],
    settings: PlanningSettings,
    budget: float,
    spare_stock: Mapping[str, float] | None = None,
) -> tuple[Allocation, AllocationProblem]:
    """The optimal split of `budget` over `keys` and the problem it solved.

    `spend` maps a key to its daily spend (oldest first), `current` to its mean daily spend over
    the last planning_days, `revenue` a country to its unit revenue. With `spare_stock`
    (country -> units left after the forecast), media-driven units are credited only up to what
    the shelves can serve.
    """
    history, lower, upper = [], [], []
    for country, channel in keys:
        now = current[(country, channel)]
        history.append(spend[(country, channel)][-curves[(country, channel)][0].max_lag - 1 :])
        if channel in settings.channel_bounds:
            lo, hi = settings.channel_bounds[channel]
        else:
            lo, hi = settings.min_ratio * now, settings.max_ratio * now
        lower.append(lo)
        upper.append(hi)
    problem = AllocationProblem(
        keys=tuple(keys),
        curves=tuple(curves[k] for k in keys),
        history=tuple(history),
        unit_revenue=np.array([revenue[k[0]] for k in keys]),
        current=np.array([current[k] for k in keys]),
        lower=np.array(lower),
        upper=np.array(upper),
        budget=budget,
        days=settings.planning_days,
    )
    if spare_stock is not None:
        # Media-driven units the shelves can serve: what the current plan already drives (it is in
        # the forecast) plus the stock left over after the forecast.
        media_now = window_revenue(problem, problem.current) / problem.unit_revenue
        caps = {c: float(spare_stock.get(c, 0.0) + sum(media_now[i] for i, k in enumerate(keys) if k[0] == c)) for c in {k[0] for k in keys}}
        problem = dataclasses.replace(problem, unit_caps=caps)
    return optimise_allocation(problem, grid_units=settings.grid_units), problem


def spare_stock_by_country(forecast: pl.DataFrame, stock: pl.DataFrame, planning_days: int) -> dict[str, float]:
    """Country -> stock left after the forecast's demand over the first `planning_days`.

    `forecast`: one demand_forecast origin (COUNTRY, PRODUCT, HORIZON_DAY, MEAN); `stock`:
    COUNTRY, PRODUCT, STOCK_UNITS (a series without stock has none left).
    """
    if int(forecast["HORIZON_DAY"].max()) < planning_days:
        raise ValueError(f"rule 'forecast covers the window': the forecast has {forecast['HORIZON_DAY'].max()} days, planning_days is {planning_days}")
    demand = forecast.filter(pl.col("HORIZON_DAY") <= planning_days).group_by("COUNTRY", "PRODUCT").agg(pl.col("MEAN").sum().alias("DEMAND"))
    spare = demand.join(stock, on=["COUNTRY", "PRODUCT"], how="left").with_columns(
        (pl.col("STOCK_UNITS").fill_null(0.0) - pl.col("DEMAND")).clip(lower_bound=0.0).alias("SPARE")
    )
    return dict(spare.group_by("COUNTRY").agg(pl.col("SPARE").sum()).iter_rows())


def stock_from_csv(path: str) -> pl.DataFrame:
    """COUNTRY, PRODUCT, STOCK_UNITS read from a planner's CSV, refusing missing columns and
    negative stock by name."""
    frame = pl.read_csv(path)
    missing = {"COUNTRY", "PRODUCT", "STOCK_UNITS"} - set(frame.columns)
    if missing:
        raise ValueError(f"rule 'stock columns': {path} lacks {sorted(missing)}")
    negative = frame.filter(pl.col("STOCK_UNITS") < 0)
    if negative.height:
        raise ValueError(f"rule 'STOCK_UNITS >= 0' on column STOCK_UNITS: {negative.height} row(s), e.g. {negative.head(5).to_dicts()}")
    return frame.select("COUNTRY", "PRODUCT", pl.col("STOCK_UNITS").cast(pl.Float64))


def stock_from_cover(recent: pl.DataFrame, cover_days: float) -> pl.DataFrame:
    """COUNTRY, PRODUCT, STOCK_UNITS = `cover_days` x each series' mean in-stock daily sales in
    `recent` (DATE, COUNTRY, PRODUCT, PRODUCT_DEMAND, IN_STOCK)."""
    if cover_days < 0:
        raise ValueError(f"rule 'stock_cover_days >= 0': got {cover_days}")
    return recent.filter(pl.col("IN_STOCK")).group_by("COUNTRY", "PRODUCT").agg((pl.col("PRODUCT_DEMAND").mean() * cover_days).alias("STOCK_UNITS"))


def stock_window(as_of: dt.date) -> tuple[dt.date, dt.date]:
    """The [start, end) of product_demand that days of cover are computed from: the 28 days to as_of."""
    return as_of - dt.timedelta(days=27), as_of + dt.timedelta(days=1)


@dataclass(frozen=True)
class BudgetPlan:
    """The optimal plan: one row per country x channel (current and optimal daily spend, bounds,
    window revenues, marginal ROI at both), the budget, the credited uplift and its bootstrap draws."""

    table: pl.DataFrame
    budget: float
    uplift: float
    uplift_draws: np.ndarray
    notes: tuple[str, ...]


def plan_budget(
    spend: pl.DataFrame,
    curves: Curves,
    revenue: Mapping[str, float],
    settings: PlanningSettings,
    *,
    total_budget: float | None = None,
    fixed_country_totals: bool = False,
    spare_stock: Mapping[str, float] | None = None,
) -> BudgetPlan:
    """Allocate a planning window's budget across every country x channel with a curve.

    `spend`: DATE, COUNTRY, CHANNEL, SPEND, at least the planning window and the longest adstock
    lag; `revenue`: COUNTRY -> unit revenue. The budget defaults to what the current split
    spends over the window; with `fixed_country_totals` each country keeps its share and money
    moves between its channels only.
    """
    days = settings.planning_days
    keys = sorted(k for k in curves if k[0] in revenue)
    series = {key: part.sort("DATE")["SPEND"].to_numpy().astype(np.float64) for key, part in spend.partition_by("COUNTRY", "CHANNEL", as_dict=True).items()}
    current = {key: float(series[key][-days:].mean()) for key in keys}
    current_total = sum(current.values()) * days
    budget = total_budget if total_budget is not None else current_total
    groups = [[k for k in keys if k[0] == country] for country in sorted({k[0] for k in keys})] if fixed_country_totals else [keys]
    rows, uplift_draws, credited, notes = [], [], [], []
    for group in groups:
        share = sum(current[k] for k in group) * days / current_total
        allocation, problem = allocate(group, curves, series, current, revenue, settings, budget * share if fixed_country_totals else budget, spare_stock)
        notes.append(f"allocated {problem.budget:,.0f} over {len(group)} country x channel ({allocation.method}); uplift {allocation.uplift:,.0f}")
        uplift_draws.append(allocation.uplift_draws)
        credited.append(allocation.uplift)
        for i, (country, channel) in enumerate(group):
            point = problem.curves[i][0]
            rows.append(
                {
                    "COUNTRY": country,
                    "CHANNEL": channel,
                    "CURRENT_DAILY_SPEND": float(problem.current[i]),
                    "OPTIMAL_DAILY_SPEND": float(allocation.daily_spend[i]),
                    "LOWER": float(problem.lower[i]),
                    "UPPER": float(problem.upper[i]),
                    "CURRENT_REVENUE": float(allocation.current_revenue[i]),
                    "OPTIMAL_REVENUE": float(allocation.revenue[i]),
                    "MARGINAL_ROI_CURRENT": float(point.marginal(problem.current[i]) * problem.unit_revenue[i]),
                    "MARGINAL_ROI_OPTIMAL": float(point.marginal(allocation.daily_spend[i]) * problem.unit_revenue[i]),
                }
            )
    draws = np.sum(uplift_draws, axis=0) if uplift_draws and len(uplift_draws[0]) else np.zeros(1)
    return BudgetPlan(pl.DataFrame(rows), float(budget), float(sum(credited)), draws, tuple(notes))
