"""Per-request local forecasts for POST /predict: models fitted on the uploaded history itself.

Two halves, both pure (polars and numpy; no Dagster, no resources):

* **The calendar.** `periods_from_daily` turns daily rows (COUNTRY, PRODUCT, DATE, UNITS) into a
  gap-free panel of periods that every product carries to the end of the upload: a product that
  last sold in November still reports zero weeks until the upload's last day, so its next
  periods start after the upload ends, not after its last sale. A weekly period the upload only
  partly covers (its first or last week) is dropped and reported in the `PeriodCalendar`, never
  counted as a full week. `periods_from_weekly_rows` does the same for an upload that already
  holds one row per product and week (any weekday; the period is the Monday of its week).
* **The models.** `LOCAL_MODELS`: `seasonal_naive` (the same period one season ago: 7 days, 52
  weeks; the last value while the history is shorter than a season), `mean_last_4` (the mean of
  the last four periods, the project's reference), `ets` (exponential smoothing: additive
  weekly seasonality for daily series of 16 days or more, simple smoothing otherwise) and
  `theta` (the standard Theta method, deseasonalized when two seasons are available). ETS and
  Theta are the models statsmodels' `ExponentialSmoothing` and `ThetaModel` fit, written in numpy
  so that every series and backtest window is fitted in one vectorised pass over time (a grid of
  smoothing parameters instead of an optimiser): about a millisecond per series and model,
  backtest included, where statsmodels took half a second. `forecast_local` backtests the
  candidates on the last few horizons of each
  series (rolling origin: K windows of H periods, each forecast from everything before it) and,
  with `model="auto"`, picks per series the one with the lowest mean absolute error over
  `BACKTEST_FOLDS` windows, the better naive model on ties (or unless another beats it by
  `AUTO_MARGIN`). P10/P90 are the chosen model's
  point forecast plus the empirical 10% and 90% quantiles of its backtest errors, clipped at 0.
  An external forecaster (the registered TCN) joins the same backtest through `External`, and
  with uploaded covariates so does `lightgbm`, the global model of `forecasting.covariates`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

from demand_assets.forecasting.covariates import COVARIATE_MODELS, Covariates, boosted_forecasts

__all__ = [
    "AUTO_MARGIN",
    "BACKTEST_FOLDS",
    "COVARIATE_MARGIN",
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
    "point_forecasts",
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
# auto takes the global covariate model only when its backtest error is below the best other
# candidate's by this fraction: one model fitted on all series picks up more of the windows' noise
# than a local one. Measured on the covariate uploads of benchmarks/predict_real.py (the same
# data, so tuned in sample): 0 / 0.05 / 0.1 gave auto with covariates -13.6 / -13.6 / -11.1% WAPE
# against auto without on Walmart, -0.3 / -0.9 / -0.2% on M5 daily, +3.4 / +2.5 / +0.9% on M5 weekly.
COVARIATE_MARGIN = 0.05
# ETS and Theta fits read at most this many recent periods (three years weekly, a year daily).
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
#
# ETS and Theta are fitted in numpy, many series at once: every (series, backtest window) is one
# row of a padded matrix, and one recursive pass over time runs the smoothing for every row and
# every candidate smoothing parameter of a grid at once; each row then keeps the parameter with
# the lowest one-step-ahead squared error over its own history. A backtest window's row holds
# only the periods before its origin, so no window sees its actuals.

# The smoothing parameter grid of simple exponential smoothing (ETS and Theta): dense near 0,
# where demand series usually sit, then every 0.0125 up to 1.
SES_ALPHAS = np.concatenate([np.geomspace(0.001, 0.05, 24, endpoint=False), np.linspace(0.05, 1.0, 77)])
# Additive-seasonal ETS (daily series): level alpha x seasonal gamma, gamma as a share of 1 - alpha.
SEASONAL_ALPHAS = np.concatenate([np.geomspace(0.005, 0.05, 6, endpoint=False), np.linspace(0.05, 0.95, 19)])
SEASONAL_GAMMA_SHARES = np.array([0.0, 0.01, 0.03, 0.06, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0])
# Rows fitted together at most (bounds the memory of a pass: rows x grid x season).
BATCH_ROWS = 2048
# Theta's seasonality test: the squared lag-m autocorrelation statistic against chi2(1) at 10%.
THETA_SEASONALITY_CRITICAL = 2.705543454095404


def point_forecast(model: str, y: np.ndarray, horizon: int, frequency: Frequency) -> np.ndarray:
    """The next `horizon` values of `y` (one series, oldest first, no gaps) by a local model."""
    return point_forecasts(model, [y], horizon, frequency)[0]


def point_forecasts(model: str, histories: Sequence[np.ndarray], horizon: int, frequency: Frequency) -> np.ndarray:
    """(len(histories), horizon): `point_forecast` of every history, fitted together."""
    ys = [np.asarray(y, dtype=np.float64) for y in histories]
    if any(y.size == 0 for y in ys):
        raise ValueError("a series needs at least one period of history")
    if model not in LOCAL_MODELS:
        raise ValueError(f"unknown local model {model!r}; one of {list(LOCAL_MODELS)}")
    out = np.empty((len(ys), horizon))
    season = SEASON_LENGTH[frequency]
    if model == "seasonal_naive":
        for i, y in enumerate(ys):
            out[i] = y[-1] if y.size < season else y[y.size - season + np.arange(horizon) % season]
        return out
    if model == "mean_last_4":
        for i, y in enumerate(ys):
            out[i] = y[-4:].mean()
        return out
    ys = [y[-FIT_WINDOW[frequency] :] for y in ys]
    fallback = np.array([y[-4:].mean() for y in ys])
    out[:] = fallback[:, None]
    fit = [i for i, y in enumerate(ys) if y.size >= 3 and np.ptp(y) > 0.0]
    for start in range(0, len(fit), BATCH_ROWS):
        rows = fit[start : start + BATCH_ROWS]
        batch = [ys[i] for i in rows]
        with np.errstate(all="ignore"):
            out[rows] = ets_forecasts(batch, horizon, season if frequency == "daily" else None) if model == "ets" else theta_forecasts(batch, horizon, season)
    return np.where(np.isfinite(out), np.clip(out, 0.0, None), fallback[:, None])


def ets_forecasts(ys: Sequence[np.ndarray], horizon: int, season: int | None) -> np.ndarray:
    """(len(ys), horizon) exponential smoothing forecasts, no trend: with additive seasonality
    of `season` periods for a series of two seasons and two periods or more (and at least 16), simple
    exponential smoothing otherwise. Simple smoothing picks alpha and the initial level by least
    squares (the initial level in closed form for every alpha of the grid); seasonal smoothing
    starts from the heuristic level and seasonals of Hyndman & Athanasopoulos (section 2.6, as
    statsmodels' "heuristic") and picks alpha and gamma on a grid."""
    out = np.empty((len(ys), horizon))
    seasonal = [i for i, y in enumerate(ys) if season is not None and y.size >= max(2 * season + 2, 10 + 2 * (season // 2))]
    simple = sorted(set(range(len(ys))) - set(seasonal))
    if simple:
        level = _ses_estimated([ys[i] for i in simple])
        out[simple] = level[:, None]
    if seasonal:
        assert season is not None
        out[seasonal] = _seasonal_ets([ys[i] for i in seasonal], horizon, season)
    return out


def theta_forecasts(ys: Sequence[np.ndarray], horizon: int, season: int) -> np.ndarray:
    """(len(ys), horizon) forecasts of the standard Theta method (Assimakopoulos & Nikolopoulos
    2000, as Hyndman & Billah 2003 and statsmodels' `ThetaModel` compute it): simple exponential
    smoothing started at the first value plus half the OLS slope b0 of a linear trend,
    `ses + b0 / 2 * (h - 1 + 1/alpha - (1 - alpha)^n / alpha)`. A series of two seasons or more
    whose lag-`season` autocorrelation passes a 10% test is first deseasonalized by a classical
    decomposition (multiplicative for positive series, additive otherwise) and reseasonalized
    after."""
    prepared = [_deseasonalize(y, season) for y in ys]
    xs = [x for x, _, _ in prepared]
    level, alpha = _ses_known(xs)
    out = np.empty((len(ys), horizon))
    steps = np.arange(horizon, dtype=np.float64)
    for i, (x, factors, multiplicative) in enumerate(prepared):
        n = x.size
        t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        b0 = float(t @ x / (t @ t))
        a = alpha[i]
        drift = steps + (1.0 / a - (1.0 - a) ** n / a if a > 0 else 0.0)
        fc = level[i] + 0.5 * b0 * drift
        if factors is not None:
            s = factors[(n + np.arange(horizon)) % season]
            fc = fc * s if multiplicative else fc + s
        out[i] = fc
    return out


def _ragged(ys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows longest first, left-aligned and zero-padded: (order, padded (R, T), lengths in
    that order, how many rows are still running at each t). A pass over time updates only the
    rows still running, so each row's state ends at its own last period."""
    lengths = np.array([y.size for y in ys])
    order = np.argsort(-lengths, kind="stable")
    lengths = lengths[order]
    padded = np.zeros((len(ys), int(lengths[0])))
    for row, i in enumerate(order):
        padded[row, : lengths[row]] = ys[i]
    running = (lengths[:, None] > np.arange(padded.shape[1])).sum(axis=0)
    return order, padded, lengths, running


def _scales(ys: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([max(float(np.mean(np.abs(y))), 1e-12) for y in ys])


def _unsort(order: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[order] = values
    return out


def _ses_estimated(ys: Sequence[np.ndarray]) -> np.ndarray:
    """The last level of simple exponential smoothing with alpha (grid) and initial level (exact)
    minimising the one-step squared error. With the initial level l0 the one-step forecast of
    y_t is c_t + (1 - alpha)^t l0, c the smoothing started at 0, so the squared error is a
    quadratic in l0 whose minimum the pass accumulates for every alpha at once."""
    scale = _scales(ys)
    order, y, n, running = _ragged([v / s for v, s in zip(ys, scale, strict=True)])
    a = SES_ALPHAS[None, :]
    c = np.zeros((y.shape[0], a.size))
    srr, swr = np.zeros_like(c), np.zeros_like(c)
    w = np.ones_like(a)
    for t in range(y.shape[1]):
        k = running[t]
        r = y[:k, t, None] - c[:k]
        srr[:k] += r * r
        swr[:k] += w * r
        c[:k] += a * r
        w = w * (1.0 - a)
    decay = (1.0 - a) ** 2
    sww = (1.0 - decay ** n[:, None]) / (1.0 - decay)  # sum of (1 - alpha)^2t over t < n; alpha > 0
    sse = srr - swr * swr / sww
    best = np.argmin(sse, axis=1)
    rows = np.arange(y.shape[0])
    l0 = swr[rows, best] / sww[rows, best]
    level = c[rows, best] + (1.0 - SES_ALPHAS[best]) ** n * l0
    return _unsort(order, level) * scale


def _ses_known(ys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(last level, alpha) of simple exponential smoothing started at each row's first value,
    alpha on the grid minimising the one-step squared error."""
    scale = _scales(ys)
    order, y, n, running = _ragged([v / s for v, s in zip(ys, scale, strict=True)])
    a = SES_ALPHAS[None, :]
    level = np.repeat(y[:, :1], a.size, axis=1)
    sse = np.zeros_like(level)
    for t in range(1, y.shape[1]):
        k = running[t]
        r = y[:k, t, None] - level[:k]
        sse[:k] += r * r
        level[:k] += a * r
    best = np.argmin(sse, axis=1)
    rows = np.arange(y.shape[0])
    return _unsort(order, level[rows, best]) * scale, _unsort(order, SES_ALPHAS[best])


def _heuristic_start(y: np.ndarray, season: int) -> tuple[float, np.ndarray]:
    """Initial level and additive seasonals: the centred moving average of the first cycles
    (at most 5), the mean detrended value per position, and the level of a line through the
    first 10 trend values, extrapolated to the period before the series."""
    min_obs = 10 + 2 * (season // 2)
    cycles = max(min(5, y.size // season), math.ceil(min_obs / season))
    head = y[: season * cycles]
    if season % 2:
        trend = np.convolve(head, np.ones(season) / season, mode="valid")
        offset = season // 2
    else:
        trend = np.convolve(head, np.r_[0.5, np.ones(season - 1), 0.5] / season, mode="valid")
        offset = season // 2
    detrended = np.full(season * cycles, np.nan)
    detrended[offset : offset + trend.size] = head[offset : offset + trend.size] - trend
    seasonals = np.nanmean(detrended.reshape(cycles, season), axis=0)
    seasonals -= seasonals.mean()
    t = np.arange(1.0, 11.0)
    _, intercept = np.polyfit(t, trend[:10], 1)
    return float(intercept), seasonals


def _seasonal_ets(ys: Sequence[np.ndarray], horizon: int, season: int) -> np.ndarray:
    """Additive-seasonal exponential smoothing without trend, grid over alpha x gamma:
    e = y - l - s, l += alpha e, s += gamma e."""
    scale = _scales(ys)
    starts = [_heuristic_start(v / s, season) for v, s in zip(ys, scale, strict=True)]
    order, y, n, running = _ragged([v / s for v, s in zip(ys, scale, strict=True)])
    alpha = np.repeat(SEASONAL_ALPHAS, SEASONAL_GAMMA_SHARES.size)
    gamma = np.tile(SEASONAL_GAMMA_SHARES, SEASONAL_ALPHAS.size) * (1.0 - alpha)
    a, g = alpha[None, :], gamma[None, :]
    level = np.repeat(np.array([starts[i][0] for i in order])[:, None], alpha.size, axis=1)
    seasonals = np.repeat(np.stack([starts[i][1] for i in order]).T[:, :, None], alpha.size, axis=2)  # (season, R, grid)
    sse = np.zeros_like(level)
    for t in range(y.shape[1]):
        k = running[t]
        s = seasonals[t % season, :k]
        r = y[:k, t, None] - level[:k] - s
        sse[:k] += r * r
        level[:k] += a * r
        s += g * r
    best = np.argmin(sse, axis=1)
    rows = np.arange(y.shape[0])
    positions = (n[:, None] + np.arange(horizon)[None, :]) % season  # (R, horizon)
    out = level[rows, best][:, None] + seasonals[positions, rows[:, None], best[:, None]]
    return _unsort(order, out) * scale[:, None]


def _deseasonalize(y: np.ndarray, season: int) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(the series to smooth, the `season` seasonal factors or None, multiplicative) as
    statsmodels' `ThetaModel` with `deseasonalize=True` decides them: two seasons or more, a
    lag-`season` autocorrelation test at 10%, then `seasonal_decompose` (a centred 2 x m moving
    average for the trend, the mean detrended value per position, normalised), multiplicative
    for a positive series unless a factor comes out <= 0."""
    if season <= 1 or y.size < 2 * season:
        return y, None, False
    d = y - y.mean()
    denominator = d @ d
    rho = np.correlate(d, d, mode="full")[d.size - 1 : d.size + season] / denominator
    if y.size * rho[-1] ** 2 / np.sum(rho[:-1] ** 2) <= THETA_SEASONALITY_CRITICAL:
        return y, None, False
    half = season // 2
    weights = np.ones(season) / season if season % 2 else np.r_[0.5, np.ones(season - 1), 0.5] / season
    trend = np.full(y.size, np.nan)
    trend[half : y.size - half] = np.convolve(y, weights, mode="valid")
    multiplicative = bool(y.min() > 0)
    for mult in (True, False) if multiplicative else (False,):
        detrended = y / trend if mult else y - trend
        padded = np.full(math.ceil(y.size / season) * season, np.nan)
        padded[: y.size] = detrended
        factors = np.nanmean(padded.reshape(-1, season), axis=0)
        factors = factors / factors.mean() if mult else factors - factors.mean()
        if not mult or factors.min() > 0:
            tiled = factors[np.arange(y.size) % season]
            return (y / tiled if mult else y - tiled), factors, mult
    raise AssertionError("unreachable")


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
    COUNTRY, PRODUCT, MODEL, FOLDS (backtest windows scored), REASON, COVARIATES (those the
    chosen model read) and one MAE_<model> column per candidate (null when it could not be
    scored)."""

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
    point: dict[str, np.ndarray] = field(default_factory=dict)  # local model -> its final point forecast


def forecast_local(
    panel: pl.DataFrame,
    horizon: int,
    frequency: Frequency,
    *,
    model: str = "auto",
    external: Mapping[str, External] | None = None,
    folds: int = BACKTEST_FOLDS,
    margin: float = AUTO_MARGIN,
    covariates: Covariates | None = None,
) -> LocalForecast:
    """Forecast every series of `panel` (COUNTRY, PRODUCT, PERIOD, UNITS; gap-free periods) for
    `horizon` periods after its last by `model`: one of `LOCAL_MODELS`, `lightgbm` (the global
    model of `forecasting.covariates`, which reads `covariates`), a name in `external`, or
    "auto", which picks per series from all of them by a rolling-origin backtest (`lightgbm`
    among them when there are covariates)."""
    external = dict(external or {})
    if horizon < 1:
        raise ValueError("horizon must be at least 1")
    series = _series(panel)
    if not series:
        raise ValueError("nothing to forecast: the history has no complete period")
    step = dt.timedelta(days=STEP_DAYS[frequency])
    last_period = max(s.last for s in series)
    # The global model reads one calendar: it takes part in auto when the upload has covariates
    # and every series runs to the same last period (always so for an upload, see the calendar).
    aligned = all(s.last == last_period for s in series)
    with_covariates = covariates is not None and bool(covariates.names)
    boosted = [*COVARIATE_MODELS] if aligned and with_covariates else []
    candidates = [*LOCAL_MODELS, *boosted, *external] if model == "auto" else [model]
    unknown = [c for c in candidates if c not in LOCAL_MODELS and c not in COVARIATE_MODELS and c not in external]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; one of {['auto', *LOCAL_MODELS, *COVARIATE_MODELS, *external]}")
    if model in COVARIATE_MODELS and not aligned:
        raise ValueError(f"{model} needs every series to end at the same period")
    # Every local model is fitted once per (series, window): the backtest windows (k = 1..folds,
    # each from the periods before its origin) and the final forecast (k = 0), all series together.
    tasks = [(s, k) for s in series for k in range(folds + 1) if k == 0 or s.y.size - k * horizon >= MIN_TRAIN]
    histories = [s.y[: s.y.size - k * horizon] for s, k in tasks]
    for name in candidates:
        if name not in LOCAL_MODELS:
            continue
        for (s, k), point in zip(tasks, point_forecasts(name, histories, horizon, frequency), strict=True):
            if k == 0:
                s.point[name] = point
            else:
                cut = s.y.size - k * horizon
                s.errors.setdefault(name, []).append(s.y[cut : cut + horizon] - point)
    for name in candidates:
        if name in COVARIATE_MODELS:
            _backtest_boosted(series, horizon, frequency, covariates or Covariates(panel.select(*KEYS, "PERIOD").clear()), folds)
    for k in range(1, folds + 1):
        for name, ext in external.items():
            if name in candidates:
                _backtest_external(series, name, ext, panel, last_period - step * (k * horizon), horizon, k * horizon)
    for name, ext in external.items():
        if name in candidates:
            _final_external(series, name, ext, panel, horizon)
    rows: dict[str, list] = {"COUNTRY": [], "PRODUCT": [], "PERIOD": [], "STEP": [], "MODEL": []}
    quantiles, choices = [], []
    for s in series:
        chosen, reason = _choose(s, candidates, model, margin)
        if chosen in external:
            if chosen not in s.final:
                raise ValueError(f"{chosen} gave no forecast for {s.country} x {s.product}")
            q = s.final[chosen]
        else:
            if chosen not in s.point:
                raise ValueError(f"{chosen} could not forecast {s.country} x {s.product}: too little history ({s.y.size} periods)")
            q = _quantiles(s.point[chosen], s.errors.get(chosen, []))
        quantiles.append(np.sort(np.clip(q, 0.0, None), axis=1))
        rows["COUNTRY"] += [s.country] * horizon
        rows["PRODUCT"] += [s.product] * horizon
        rows["PERIOD"] += [s.last + step * (i + 1) for i in range(horizon)]
        rows["STEP"] += list(range(1, horizon + 1))
        rows["MODEL"] += [chosen] * horizon
        scored = {f"MAE_{c}": _mae(s.errors.get(c)) for c in candidates}
        used = list(covariates.names) if covariates is not None and chosen in COVARIATE_MODELS else []
        choices.append(
            {
                "COUNTRY": s.country,
                "PRODUCT": s.product,
                "MODEL": chosen,
                "FOLDS": len(s.errors.get(chosen, [])),
                "REASON": reason,
                "COVARIATES": used,
                **scored,
            }
        )
    q = np.concatenate(quantiles)
    forecasts = pl.DataFrame(
        {**{k: rows[k] for k in ("COUNTRY", "PRODUCT", "PERIOD", "STEP")}, "P10": q[:, 0], "P50": q[:, 1], "P90": q[:, 2], "MODEL": rows["MODEL"]},
        schema_overrides={"COUNTRY": pl.String, "PRODUCT": pl.String, "PERIOD": pl.Date, "STEP": pl.Int64, "MODEL": pl.String},
    )
    schema = {"COVARIATES": pl.List(pl.String), **{f"MAE_{c}": pl.Float64 for c in candidates}}
    return LocalForecast(forecasts, pl.DataFrame(choices, schema_overrides=schema))


def _backtest_boosted(series: list[_Series], horizon: int, frequency: Frequency, covariates: Covariates, folds: int) -> None:
    """The global model's backtest errors (windows k = 1..folds) and final point forecast
    (k = 0) per series, from `boosted_forecasts` (two fits: before the earliest window, and on
    everything)."""
    name = COVARIATE_MODELS[0]
    cuts = [k * horizon for k in range(folds + 1)]
    keys = [(s.country, s.product) for s in series]
    with np.errstate(all="ignore"):
        out = boosted_forecasts([s.y for s in series], keys, series[0].last, horizon, frequency, covariates, cuts, MIN_TRAIN)
    for k, cut in enumerate(cuts):
        for i, s in enumerate(series):
            point = out[cut][i]
            if s.y.size - cut < MIN_TRAIN or not np.isfinite(point).all():
                continue
            if k == 0:
                s.point[name] = point
            else:
                s.errors.setdefault(name, []).append(s.y[s.y.size - cut : s.y.size - cut + horizon] - point)


def _series(panel: pl.DataFrame) -> list[_Series]:
    grouped = panel.sort(*KEYS, "PERIOD").group_by(KEYS, maintain_order=True).agg(pl.col("PERIOD").max().alias("LAST"), pl.col("UNITS").cast(pl.Float64))
    return [_Series(r["COUNTRY"], r["PRODUCT"], r["LAST"], np.asarray(r["UNITS"], dtype=np.float64)) for r in grouped.iter_rows(named=True)]


def _by_series(frame: pl.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """(country, product) -> (steps, 3) P10, P50, P90 ordered by STEP."""
    out = {}
    for (country, product), rows in frame.sort("STEP").group_by(KEYS, maintain_order=True):
        out[(str(country), str(product))] = rows.select("P10", "P50", "P90").to_numpy().astype(np.float64)
    return out


def _external_forecasts(ext: External, history: pl.DataFrame, horizon: int, min_periods: int) -> dict[tuple[str, str], np.ndarray] | None:
    """The external model's quantiles per series that have at least `min_periods` periods, or
    None when none has or the model cannot forecast them (too little history and the like)."""
    lengths = history.group_by(KEYS).agg(pl.len().alias("N"))
    history = history.join(lengths.filter(pl.col("N") >= min_periods).select(KEYS), on=KEYS)
    if history.is_empty():
        return None
    try:
        return _by_series(ext.forecast(history, horizon))
    except ValueError:
        return None


def _backtest_external(series: list[_Series], name: str, ext: External, panel: pl.DataFrame, origin: dt.date, horizon: int, cut: int) -> None:
    out = _external_forecasts(ext, panel.filter(pl.col("PERIOD") <= origin), horizon, max(ext.min_history, MIN_TRAIN))
    if out is None:
        return
    for s in series:
        q = out.get((s.country, s.product))
        if q is None or q.shape[0] < horizon or s.y.size - cut < MIN_TRAIN:
            continue
        actual = s.y[s.y.size - cut : s.y.size - cut + horizon]
        s.errors.setdefault(name, []).append(actual - q[:horizon, 1])


def _final_external(series: list[_Series], name: str, ext: External, panel: pl.DataFrame, horizon: int) -> None:
    out = _external_forecasts(ext, panel, horizon, ext.min_history)
    if out is None:
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
        fitted = c in s.point if c in LOCAL_MODELS or c in COVARIATE_MODELS else c in s.final
        if len(errors) == folds and fitted:
            mae = _mae(errors)
            if mae is not None:
                scores[c] = mae
    naive = min((c for c in NAIVE_MODELS if c in scores), key=lambda c: scores[c])
    best = min(scores, key=lambda c: scores[c])
    window = f"{folds} backtest window(s)"
    if best in COVARIATE_MODELS:
        others = {c: v for c, v in scores.items() if c not in COVARIATE_MODELS}
        runner_up = min(others, key=lambda c: others[c])
        if scores[best] >= others[runner_up] * (1.0 - COVARIATE_MARGIN):
            best = runner_up
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
