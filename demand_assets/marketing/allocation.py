"""Budget allocation: spread a planning window's budget over country x channel to maximise the
expected incremental revenue inside the window.

Each country x channel spends a constant amount per day over the `days` of the window. Its
revenue is the fitted curve's response on those days x the country's revenue per unit, with
the carry-over of the spend before the window (the last `max_lag` days of history) in the
adstock: a channel that is still saturated from last week gains less from new money.

The objective is separable (a sum of one-dimensional curves) but not concave (Hill curves with
slope > 1 are S-shaped), so a local optimiser alone can stop in the wrong valley. We solve it
globally on a grid by dynamic programming (a knapsack over budget units), then polish the grid
solution with SLSQP under the exact budget and bounds.

With stock caps (`unit_caps`: per country, the incremental units its shelves can still serve in
the window), demand beyond the cap is not credited: spend that would drive demand into a
stockout earns nothing. The knapsack then runs per country first (its best revenue for every
budget level, capped), then across countries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from demand_assets.marketing.curves import ResponseCurve

__all__ = ["AllocationProblem", "Allocation", "BudgetInfeasible", "brute_force_allocation", "credited_revenue", "optimise_allocation", "window_revenue"]

FloatArray = npt.NDArray[np.float64]


class BudgetInfeasible(ValueError):
    """The budget cannot be spent within the bounds."""


@dataclass(frozen=True)
class AllocationProblem:
    keys: tuple[tuple[str, str], ...]  # (country, channel)
    curves: tuple[Sequence[ResponseCurve], ...]  # per key: [point estimate, replicates...]
    history: tuple[FloatArray, ...]  # per key: daily spend before the window (carry-over)
    unit_revenue: FloatArray  # per key: revenue per incremental unit
    current: FloatArray  # per key: current daily spend
    lower: FloatArray  # per key: daily spend bounds
    upper: FloatArray
    budget: float  # total over the window
    days: int
    # Country -> the most incremental units the window can credit (stock headroom); None: no cap.
    unit_caps: dict[str, float] | None = None

    def __post_init__(self) -> None:
        n = len(self.keys)
        for name in ("curves", "history", "unit_revenue", "current", "lower", "upper"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs one entry per key ({n})")
        if self.days < 1:
            raise ValueError(f"the planning window needs at least one day, got {self.days}")
        if np.any(self.lower < 0) or np.any(self.upper < self.lower):
            bad = [self.keys[i] for i in np.flatnonzero((self.lower < 0) | (self.upper < self.lower))]
            raise BudgetInfeasible(f"rule 'bounds': lower must be >= 0 and <= upper; offending country x channel: {bad}")
        daily = self.budget / self.days
        if self.lower.sum() > daily * (1 + 1e-9) or self.upper.sum() < daily * (1 - 1e-9):
            raise BudgetInfeasible(
                f"rule 'budget within bounds': a budget of {self.budget:,.2f} over {self.days} days is {daily:,.2f} a day, "
                f"but the bounds allow {self.lower.sum():,.2f} to {self.upper.sum():,.2f} a day"
            )

    @property
    def daily_budget(self) -> float:
        return self.budget / self.days

    def revenue_cap(self, country: str) -> float | None:
        """The country's credit limit in revenue: its unit cap x its revenue per unit."""
        if self.unit_caps is None or country not in self.unit_caps:
            return None
        i = next(i for i, k in enumerate(self.keys) if k[0] == country)
        return float(self.unit_caps[country]) * float(self.unit_revenue[i])


def _key_revenue(curve: ResponseCurve, history: FloatArray, daily: float, days: int, unit_revenue: float) -> float:
    path = np.concatenate([history, np.full(days, daily)])
    return float(curve.response(path)[len(history) :].sum() * unit_revenue)


def window_revenue(problem: AllocationProblem, daily_spend: FloatArray, draw: int = 0) -> FloatArray:
    """Incremental revenue in the window per key, under curve replicate `draw` (0: point)."""
    return np.array(
        [
            _key_revenue(problem.curves[i][draw], problem.history[i], float(daily_spend[i]), problem.days, float(problem.unit_revenue[i]))
            for i in range(len(problem.keys))
        ]
    )


def credited_revenue(problem: AllocationProblem, daily_spend: FloatArray, draw: int = 0) -> float:
    """Total incremental revenue the window credits: per country, capped at its credit limit
    (demand the shelves could not serve is not credited)."""
    per_key = window_revenue(problem, daily_spend, draw)
    total = 0.0
    for country in {k[0] for k in problem.keys}:
        revenue = float(sum(per_key[i] for i, k in enumerate(problem.keys) if k[0] == country))
        cap = problem.revenue_cap(country)
        total += min(revenue, cap) if cap is not None else revenue
    return total


@dataclass(frozen=True)
class Allocation:
    daily_spend: FloatArray
    revenue: FloatArray  # per key, point estimate, uncapped
    current_revenue: FloatArray  # per key, current allocation, uncapped
    uplift_draws: FloatArray  # total credited uplift under each replicate
    method: str
    credited: float  # total credited revenue (after the stock caps)
    current_credited: float

    @property
    def uplift(self) -> float:
        return float(self.credited - self.current_credited)


def _knapsack(items: list[tuple[np.ndarray, np.ndarray]], units: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """best[m]: the largest sum of values using exactly m units, one level per item; and the
    per-item choices for backtracking. items: (levels in units, value at each level)."""
    best = np.full(units + 1, -np.inf)
    best[0] = 0.0
    choices = []
    for levels, values in items:
        new = np.full(units + 1, -np.inf)
        arg = np.zeros(units + 1, dtype=int)
        for j, v in zip(levels, values):
            candidate = np.full(units + 1, -np.inf)
            candidate[j:] = best[: units + 1 - j] + v
            better = candidate > new
            new[better] = candidate[better]
            arg[better] = j
        best = new
        choices.append(arg)
    return best, choices


def _backtrack(choices: list[np.ndarray], m: int) -> np.ndarray:
    picked = np.zeros(len(choices), dtype=int)
    for i in range(len(choices) - 1, -1, -1):
        picked[i] = choices[i][m]
        m -= picked[i]
    return picked


def _grid_solve(problem: AllocationProblem, units: int) -> FloatArray:
    """Global optimum on a grid of `units` budget units by dynamic programming: a knapsack over
    the keys of each country, capped at the country's credit limit when there is one, then a
    knapsack over countries."""
    daily = problem.daily_budget
    unit = daily / units
    lo = np.ceil(problem.lower / unit - 1e-9).astype(int)
    hi = np.minimum(np.floor(problem.upper / unit + 1e-9).astype(int), units)
    if lo.sum() > units or hi.sum() < units:
        raise BudgetInfeasible("rule 'budget within bounds': no grid allocation fits the bounds; widen them or refine the grid")
    countries = sorted({k[0] for k in problem.keys})
    members = {c: [i for i, k in enumerate(problem.keys) if k[0] == c] for c in countries}
    inner, outer_items = {}, []
    for country in countries:
        items = []
        for i in members[country]:
            levels = np.arange(lo[i], hi[i] + 1)
            values = np.array([_key_revenue(problem.curves[i][0], problem.history[i], j * unit, problem.days, float(problem.unit_revenue[i])) for j in levels])
            items.append((levels, values))
        best, choices = _knapsack(items, units)
        inner[country] = choices
        cap = problem.revenue_cap(country)
        capped = np.minimum(best, cap) if cap is not None else best
        feasible = np.flatnonzero(np.isfinite(capped))
        outer_items.append((feasible, capped[feasible]))
    best, outer_choices = _knapsack(outer_items, units)
    if not np.isfinite(best[units]):
        raise BudgetInfeasible("rule 'budget within bounds': no grid allocation spends the budget within the bounds")
    per_country = _backtrack(outer_choices, units)
    picked = np.zeros(len(problem.keys), dtype=int)
    for country, m in zip(countries, per_country):
        picked[members[country]] = _backtrack(inner[country], int(m))
    return picked * unit


def optimise_allocation(problem: AllocationProblem, *, grid_units: int = 200) -> Allocation:
    """Maximise the window's credited incremental revenue: grid DP (global), then SLSQP polish."""
    start = _grid_solve(problem, grid_units)
    method = "grid"

    def objective(x: FloatArray) -> float:
        return -credited_revenue(problem, x)

    polished = minimize(
        objective,
        start,
        method="SLSQP",
        bounds=list(zip(problem.lower, problem.upper)),
        constraints=[{"type": "eq", "fun": lambda x: (x.sum() - problem.daily_budget) / max(problem.daily_budget, 1e-12)}],
        options={"maxiter": 200, "ftol": 1e-10},
    )
    x = start
    if polished.success and abs(polished.x.sum() - problem.daily_budget) <= 1e-6 * problem.daily_budget and objective(polished.x) < objective(start):
        x = np.clip(polished.x, problem.lower, problem.upper)
        method = "grid+slsqp"
    # Rescale away rounding so the allocation spends the budget exactly.
    free = (x > problem.lower) & (x < problem.upper)
    gap = problem.daily_budget - x.sum()
    if abs(gap) > 0 and free.any():
        x = x.copy()
        x[free] += gap / free.sum()
        x = np.clip(x, problem.lower, problem.upper)
    n_draws = len(problem.curves[0])
    current = problem.current
    uplift = np.array([credited_revenue(problem, x, d) - credited_revenue(problem, current, d) for d in range(1, n_draws)]) if n_draws > 1 else np.zeros(0)
    return Allocation(
        x, window_revenue(problem, x), window_revenue(problem, current), uplift, method, credited_revenue(problem, x), credited_revenue(problem, current)
    )


def brute_force_allocation(problem: AllocationProblem, step: float) -> tuple[FloatArray, float]:
    """Every allocation on a grid of `step` per key that spends the budget (small problems
    only: the count grows as (budget/step)^(keys-1)); for testing the optimiser."""
    n = len(problem.keys)
    daily = problem.daily_budget
    grids = [np.arange(problem.lower[i], problem.upper[i] + step / 2, step) for i in range(n - 1)]
    best_x, best_v = None, -np.inf
    mesh = np.meshgrid(*grids, indexing="ij")
    for combo in zip(*(m.reshape(-1) for m in mesh)):
        rest = daily - sum(combo)
        if rest < problem.lower[-1] - 1e-9 or rest > problem.upper[-1] + 1e-9:
            continue
        x = np.array([*combo, rest])
        v = credited_revenue(problem, x)
        if v > best_v:
            best_x, best_v = x, v
    if best_x is None:
        raise BudgetInfeasible("no grid allocation spends the budget within the bounds")
    return best_x, best_v
