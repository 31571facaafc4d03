"""Per-request local forecasts for POST /predict: models fitted on the uploaded history itself.

Two halves, both pure (polars and numpy, statsmodels for ETS and Theta; no Dagster, no resources):

* **The calendar.** `periods_from_daily` turns daily rows (COUNTRY, PRODUCT, DATE, UNITS) into a
  gap-free panel of periods that every product carries to the end of the upload: a product that
  last sold in November still reports zero weeks until the upload's last day, so its next
  periods start after the upload ends, not after its last sale. A weekly period the upload only
  partly covers (its first or last week) is dropped and reported in the `PeriodCalendar`, never
  counted as a full week. `periods_from_weekly_rows` does the same for an upload that already
  holds one row per product and week (any weekday; the period is the Monday of its week).
* **The models.** `LOCAL_MODELS`: `seasonal_naive` (the same period one season ago: 7 days, 52
  weeks; the last value while the history is shorter than a season), `mean_last_4` (the mean of
  the last four periods, the project's reference), `ets` (statsmodels exponential smoothing:
  additive weekly seasonality for daily series with two weeks or more, simple smoothing
  otherwise) and `theta` (statsmodels' Theta method, deseasonalized when two seasons are
  available). `forecast_local` backtests the candidates on the last few horizons of each
  series (rolling origin: K windows of H periods, each forecast from everything before it) and,
  with `model="auto"`, picks per series the one with the lowest mean absolute error over
  `BACKTEST_FOLDS` windows, the better naive model on ties (or unless another beats it by
  `AUTO_MARGIN`). P10/P90 are the chosen model's
  point forecast plus the empirical 10% and 90% quantiles of its backtest errors, clipped at 0.
  An external forecaster (the registered TCN) joins the same backtest through `External`.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

__all__ = [
    "AUTO_MARGIN",
    "BACKTEST_FOLDS",
    "LOCAL_MODELS",
    "NAIVE_MODELS",
    "SEASON_LENGTH",
    "DroppedPeriod",
    "External",
    "LocalForecast",
    "PeriodCalendar",
    "forecast_local",
    "is_weekly_rows",
    "periods_from_daily",
    "periods_from_weekly_rows",
    "point_forecast",
]

Frequency = Literal["daily", "weekly"]
KEYS = ["COUNTRY", "PRODUCT"]
STEP_DAYS = {"daily": 1, "weekly": 7}
SEASON_LENGTH = {"daily": 7, "weekly": 52}
NAIVE_MODELS = ("seasonal_naive", "mean_last_4")
LOCAL_MODELS = (*NAIVE_MODELS, "ets", "theta")
# Rolling-origin windows of H periods at the end of each series that score the candidates.
BACKTEST_FOLDS = 6
# A fold is scored only when this many periods precede it.
MIN_TRAIN = 4
# auto keeps the better naive model unless another model's backtest error is lower by more than
# this fraction (ties go to the naive model). Measured on real series (benchmarks/predict_real.py),
# a margin of 5-10% cost more than it saved: ETS and Theta are usually better, and six windows
# separate them well enough; fewer windows (3) made the per-series choice noisy.
AUTO_MARGIN = 0.0
# statsmodels fits read at most this many recent periods (three years weekly, a year daily).
FIT_WINDOW = {"daily": 365, "weekly": 156}
Z80 = 1.2816


# ---------------------------------------------------------------------------------------------
# The calendar


@dataclass(frozen=True)
class DroppedPeriod:
    period: dt.date
    days_covered: int
    reason: str


@dataclass(frozen=True)
class PeriodCalendar:
    """The periods a forecast was made from: the first and last full period, how many, and the
    partial edge periods that were left out."""

    frequency: str
    first: dt.date | None
    last: dt.date | None
    count: int
    dropped: tuple[DroppedPeriod, ...] = field(default_factory=tuple)


def _calendar(panel: pl.DataFrame, frequency: str, dropped: Sequence[DroppedPeriod] = ()) -> PeriodCalendar:
    periods = panel["PERIOD"].unique().sort()
    if periods.is_empty():
        return PeriodCalendar(frequency, None, None, 0, tuple(dropped))
    return PeriodCalendar(frequency, periods[0], periods[-1], len(periods), tuple(dropped))


def periods_from_daily(
    daily: pl.DataFrame, frequency: Frequency, *, start: dt.date | None = None, end: dt.date | None = None
) -> tuple[pl.DataFrame, PeriodCalendar]:
    """COUNTRY, PRODUCT, PERIOD, UNITS from daily rows (COUNTRY, PRODUCT, DATE, UNITS; several rows
    of a day are summed), and the calendar used.

    The upload covers `start`..`end` (default: its first and last date). Every product is
    zero-filled from its first sale (weekly: from the Monday of that week, or `start`) to `end`.
    Weekly periods start on Monday; a week not wholly inside `start`..`end` is dropped and named
    in the calendar."""
    if frequency not in STEP_DAYS:
        raise ValueError(f"frequency must be 'daily' or 'weekly', got {frequency!r}")
    empty = pl.DataFrame(schema={"COUNTRY": pl.String, "PRODUCT": pl.String, "PERIOD": pl.Date, "UNITS": pl.Float64})
    if daily.is_empty():
        return empty, PeriodCalendar(frequency, None, None, 0)
    start = start or daily["DATE"].min()
    end = end or daily["DATE"].max()
    assert isinstance(start, dt.date) and isinstance(end, dt.date)
    sold = daily.group_by(*KEYS, "DATE").agg(pl.col("UNITS").cast(pl.Float64).sum())
    first = pl.col("DATE").min()
    if frequency == "weekly":
        first = pl.max_horizontal(first.dt.truncate("1w"), pl.lit(start))
    spans = sold.group_by(KEYS).agg(first.alias("_FIRST")).with_columns(pl.lit(end).alias("_LAST"))
    grid = spans.with_columns(pl.date_ranges("_FIRST", "_LAST", interval="1d").alias("DATE")).explode("DATE").select(*KEYS, "DATE")
    filled = grid.join(sold, on=[*KEYS, "DATE"], how="left").with_columns(pl.col("UNITS").fill_null(0.0))
    if frequency == "daily":
        panel = filled.select(*KEYS, pl.col("DATE").alias("PERIOD"), "UNITS").sort(*KEYS, "PERIOD")
        return panel, _calendar(panel, frequency)
    weeks = filled.group_by(*KEYS, pl.col("DATE").dt.truncate("1w").alias("PERIOD")).agg(pl.col("UNITS").sum())
    first_monday, last_monday = _monday(start), _monday(end)
    dropped = []
    if start != first_monday:
        covered = min(7 - start.weekday(), (end - start).days + 1)
        dropped.append(DroppedPeriod(first_monday, covered, f"partial first week: the upload covers {covered} of its 7 days"))
    if end.weekday() != 6 and (last_monday != first_monday or start == first_monday):
        covered = min(end.weekday() + 1, (end - start).days + 1)
        dropped.append(DroppedPeriod(last_monday, covered, f"partial last week: the upload covers {covered} of its 7 days"))
    full = weeks.filter((pl.col("PERIOD") >= start) & (pl.col("PERIOD") + dt.timedelta(days=6) <= end))
    panel = full.select(*KEYS, "PERIOD", "UNITS").sort(*KEYS, "PERIOD")
    return panel, _calendar(panel, frequency, dropped)


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def is_weekly_rows(daily: pl.DataFrame) -> bool:
    """An upload that is already weekly: every date on the same weekday and at most one row per
    product and week (a daily history of several products spans several weekdays)."""
    if daily.is_empty() or daily["DATE"].dt.weekday().n_unique() != 1:
        return False
    per_week = daily.group_by(*KEYS, pl.col("DATE").dt.truncate("1w")).agg(pl.len().alias("N"))
    return int(per_week["N"].max() or 0) == 1 and daily["DATE"].n_unique() > 1


def periods_from_weekly_rows(rows: pl.DataFrame) -> tuple[pl.DataFrame, PeriodCalendar]:
    """COUNTRY, PRODUCT, PERIOD (Monday), UNITS from one row per product and week, zero-filled
    from each product's first week to the upload's last week."""
    weeks = rows.select(*KEYS, pl.col("DATE").dt.truncate("1w").alias("PERIOD"), pl.col("UNITS").cast(pl.Float64))
    end = weeks["PERIOD"].max()
    spans = weeks.group_by(KEYS).agg(pl.col("PERIOD").min().alias("_FIRST")).with_columns(pl.lit(end).alias("_LAST"))
    grid = spans.with_columns(pl.date_ranges("_FIRST", "_LAST", interval="1w").alias("PERIOD")).explode("PERIOD").select(*KEYS, "PERIOD")
    panel = grid.join(weeks, on=[*KEYS, "PERIOD"], how="left").with_columns(pl.col("UNITS").fill_null(0.0)).sort(*KEYS, "PERIOD")
    return panel, _calendar(panel, "weekly")


# ---------------------------------------------------------------------------------------------
# The models


def point_forecast(model: str, y: np.ndarray, horizon: int, frequency: Frequency) -> np.ndarray:
    """The next `horizon` values of `y` (one series, oldest first, no gaps) by a local model."""
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        raise ValueError("a series needs at least one period of history")
    season = SEASON_LENGTH[frequency]
    if model == "seasonal_naive":
        if y.size < season:
            return np.full(horizon, y[-1])
        return np.array([y[y.size - season + (i % season)] for i in range(horizon)])
    if model == "mean_last_4":
        return np.full(horizon, y[-4:].mean())
    if model in ("ets", "theta"):
        y = y[-FIT_WINDOW[frequency] :]
        if y.size < 3 or np.ptp(y) == 0.0:
            return np.full(horizon, y[-4:].mean())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = _ets(y, horizon, season if frequency == "daily" else None) if model == "ets" else _theta(y, horizon, season)
            except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):
                out = np.full(horizon, y[-4:].mean())
        out = np.asarray(out, dtype=np.float64)
        return np.where(np.isfinite(out), np.clip(out, 0.0, None), y[-4:].mean())
    raise ValueError(f"unknown local model {model!r}; one of {list(LOCAL_MODELS)}")


def _ets(y: np.ndarray, horizon: int, season: int | None) -> np.ndarray:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    seasonal = season is not None and y.size >= 2 * season + 2
    model = ExponentialSmoothing(
        y,
        trend=None,
        seasonal="add" if seasonal else None,
        seasonal_periods=season if seasonal else None,
        initialization_method="heuristic" if seasonal and y.size >= 10 + 2 * (season or 0) // 2 else "estimated",
    )
    return np.asarray(model.fit(use_brute=False).forecast(horizon))


def _theta(y: np.ndarray, horizon: int, season: int) -> np.ndarray:
    from statsmodels.tsa.forecasting.theta import ThetaModel

    seasonal = y.size >= 2 * season
    model = ThetaModel(y, period=season if seasonal else 1, deseasonalize=seasonal, method="additive" if (y <= 0).any() else "auto")
    return np.asarray(model.fit().forecast(horizon))


# ---------------------------------------------------------------------------------------------
# Backtest, selection and quantiles


@dataclass(frozen=True)
class External:
    """A forecaster that is not fitted per request (the registered TCN): `forecast(history,
    horizon)` takes a COUNTRY, PRODUCT, PERIOD, UNITS panel and returns COUNTRY, PRODUCT, STEP,
    P10, P50, P90 for the periods after each series' last; it may raise ValueError."""

    forecast: Callable[[pl.DataFrame, int], pl.DataFrame]
    min_history: int = 1


@dataclass(frozen=True)
class LocalForecast:
    """`forecasts`: COUNTRY, PRODUCT, PERIOD, STEP, P10, P50, P90, MODEL. `choices`: per series
    COUNTRY, PRODUCT, MODEL, FOLDS (backtest windows scored), REASON and one MAE_<model> column
    per candidate (null when it could not be scored)."""

    forecasts: pl.DataFrame
    choices: pl.DataFrame


@dataclass
class _Series:
    country: str
    product: str
    last: dt.date
    y: np.ndarray
    errors: dict[str, list[np.ndarray]] = field(default_factory=dict)  # model -> per fold actual - forecast
    final: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (horizon, 3) P10, P50, P90 of an external


def forecast_local(
    panel: pl.DataFrame,
    horizon: int,
    frequency: Frequency,
    *,
    model: str = "auto",
    external: Mapping[str, External] | None = None,
    folds: int = BACKTEST_FOLDS,
    margin: float = AUTO_MARGIN,
) -> LocalForecast:
    """Forecast every series of `panel` (COUNTRY, PRODUCT, PERIOD, UNITS; gap-free periods) for
    `horizon` periods after its last by `model`: one of `LOCAL_MODELS`, a name in `external`, or
    "auto", which picks per series from all of them by a rolling-origin backtest."""
    external = dict(external or {})
    if horizon < 1:
        raise ValueError("horizon must be at least 1")
    candidates = [*LOCAL_MODELS, *external] if model == "auto" else [model]
    unknown = [c for c in candidates if c not in LOCAL_MODELS and c not in external]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; one of {['auto', *LOCAL_MODELS, *external]}")
    series = _series(panel)
    if not series:
        raise ValueError("nothing to forecast: the history has no complete period")
    step = dt.timedelta(days=STEP_DAYS[frequency])
    last_period = max(s.last for s in series)
    for k in range(1, folds + 1):
        cut = k * horizon
        for s in series:
            if s.y.size - cut < MIN_TRAIN:
                continue
            train, actual = s.y[: s.y.size - cut], s.y[s.y.size - cut : s.y.size - cut + horizon]
            for name in candidates:
                if name in LOCAL_MODELS:
                    s.errors.setdefault(name, []).append(actual - point_forecast(name, train, horizon, frequency))
        for name, ext in external.items():
            if name in candidates:
                _backtest_external(series, name, ext, panel, last_period - step * cut, horizon, cut)
    for name, ext in external.items():
        if name in candidates:
            _final_external(series, name, ext, panel, horizon)
    forecasts, choices = [], []
    for s in series:
        chosen, reason = _choose(s, candidates, model, margin)
        if chosen in external:
            if chosen not in s.final:
                raise ValueError(f"{chosen} gave no forecast for {s.country} x {s.product}")
            q = s.final[chosen]
        else:
            q = _quantiles(point_forecast(chosen, s.y, horizon, frequency), s.errors.get(chosen, []))
        q = np.sort(np.clip(q, 0.0, None), axis=1)
        forecasts.append(
            pl.DataFrame(
                {
                    "COUNTRY": [s.country] * horizon,
                    "PRODUCT": [s.product] * horizon,
                    "PERIOD": [s.last + step * (i + 1) for i in range(horizon)],
                    "STEP": list(range(1, horizon + 1)),
                    "P10": q[:, 0],
                    "P50": q[:, 1],
                    "P90": q[:, 2],
                    "MODEL": [chosen] * horizon,
                },
                schema_overrides={"PERIOD": pl.Date, "STEP": pl.Int64},
            )
        )
        scored = {f"MAE_{c}": _mae(s.errors.get(c)) for c in candidates}
        choices.append({"COUNTRY": s.country, "PRODUCT": s.product, "MODEL": chosen, "FOLDS": len(s.errors.get(chosen, [])), "REASON": reason, **scored})
    return LocalForecast(pl.concat(forecasts), pl.DataFrame(choices, schema_overrides={f"MAE_{c}": pl.Float64 for c in candidates}))


def _series(panel: pl.DataFrame) -> list[_Series]:
    grouped = panel.sort(*KEYS, "PERIOD").group_by(KEYS, maintain_order=True).agg(pl.col("PERIOD").max().alias("LAST"), pl.col("UNITS").cast(pl.Float64))
    return [_Series(r["COUNTRY"], r["PRODUCT"], r["LAST"], np.asarray(r["UNITS"], dtype=np.float64)) for r in grouped.iter_rows(named=True)]


def _by_series(frame: pl.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """(country, product) -> (steps, 3) P10, P50, P90 ordered by STEP."""
    out = {}
    for (country, product), rows in frame.sort("STEP").group_by(KEYS, maintain_order=True):
        out[(str(country), str(product))] = rows.select("P10", "P50", "P90").to_numpy().astype(np.float64)
    return out


def _backtest_external(series: list[_Series], name: str, ext: External, panel: pl.DataFrame, origin: dt.date, horizon: int, cut: int) -> None:
    history = panel.filter(pl.col("PERIOD") <= origin)
    lengths = history.group_by(KEYS).agg(pl.len().alias("N"))
    history = history.join(lengths.filter(pl.col("N") >= max(ext.min_history, MIN_TRAIN)).select(KEYS), on=KEYS)
    if history.is_empty():
        return
    try:
        out = _by_series(ext.forecast(history, horizon))
    except ValueError:
        return
    for s in series:
        q = out.get((s.country, s.product))
        if q is None or q.shape[0] < horizon or s.y.size - cut < MIN_TRAIN:
            continue
        actual = s.y[s.y.size - cut : s.y.size - cut + horizon]
        s.errors.setdefault(name, []).append(actual - q[:horizon, 1])


def _final_external(series: list[_Series], name: str, ext: External, panel: pl.DataFrame, horizon: int) -> None:
    lengths = panel.group_by(KEYS).agg(pl.len().alias("N"))
    history = panel.join(lengths.filter(pl.col("N") >= ext.min_history).select(KEYS), on=KEYS)
    if history.is_empty():
        return
    try:
        out = _by_series(ext.forecast(history, horizon))
    except ValueError:
        return
    for s in series:
        q = out.get((s.country, s.product))
        if q is not None and q.shape[0] >= horizon and np.isfinite(q[:horizon]).all():
            s.final[name] = q[:horizon]


def _mae(errors: list[np.ndarray] | None) -> float | None:
    if not errors:
        return None
    value = float(np.mean(np.abs(np.concatenate(errors))))
    return value if math.isfinite(value) else None


def _choose(s: _Series, candidates: list[str], model: str, margin: float) -> tuple[str, str]:
    if model != "auto":
        return model, "requested"
    folds = max((len(e) for e in s.errors.values()), default=0)
    if folds == 0:
        return "mean_last_4", "too little history for a backtest: the mean of the last 4 periods"
    # Every candidate is compared on the same windows; one missing a window (an external model
    # without enough history there) or without a final forecast is left out.
    scores = {}
    for c in candidates:
        errors = s.errors.get(c, [])
        is_external = c not in LOCAL_MODELS
        if len(errors) == folds and (not is_external or c in s.final):
            mae = _mae(errors)
            if mae is not None:
                scores[c] = mae
    naive = min((c for c in NAIVE_MODELS if c in scores), key=lambda c: scores[c])
    best = min(scores, key=lambda c: scores[c])
    window = f"{folds} backtest window(s)"
    if best == naive or scores[best] >= scores[naive] * (1.0 - margin):
        return naive, f"the better naive model on {window} (no other model lower)"
    return best, f"lowest absolute error on {window} ({scores[best]:.4g} vs {scores[naive]:.4g} for {naive})"


def _quantiles(point: np.ndarray, errors: list[np.ndarray]) -> np.ndarray:
    """(horizon, 3): P10, P50, P90 around `point` from the backtest errors (actual - forecast);
    with fewer than 4 errors, a Poisson-like band."""
    pooled = np.concatenate(errors) if errors else np.empty(0)
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size >= 4:
        lo, hi = np.quantile(pooled, [0.1, 0.9])
        return np.column_stack([point + min(lo, 0.0), point, point + max(hi, 0.0)])
    spread = Z80 * np.sqrt(np.clip(point, 0.0, None))
    return np.column_stack([point - spread, point, point + spread])
