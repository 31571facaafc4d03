"""Covariates for POST /predict and `lightgbm`, the per-request model that can use them.

Pure (polars, numpy, lightgbm; no Dagster, no resources).

* **`Covariates`**: per-period values of the numeric columns an upload carries beside its
  target, for the history and the forecast periods. A `known` covariate (price, promotion,
  holiday, markdown) is given for the periods to forecast and is read at the period forecast; an
  `observed` one (CPI, temperature, fuel price) is known only up to the forecast origin and is
  read there, lagged by the step ahead. `covariate_periods` puts dated rows on the forecast's
  calendar: the mean of a period's rows (a daily promotion flag becomes the share of promoted
  days of the week).
* **`lightgbm`**: one gradient-boosted model over all series of the upload (global, as in
  mlforecast), fitted per request. Direct multi-step: a training row is (series, origin, step h)
  and its features are what is known at the origin: the last 8 periods, the mean of the last 4,
  the same period one and two seasons ago (52 weeks; 7 days) where the origin has seen it, the
  step, the calendar of the target period, known covariates at the target period (and against
  their mean over the 13 periods to the origin), observed covariates at the origin (and against
  their mean). Targets and lags are divided by the series' mean over the 13 periods to the origin,
  so stores of a million and items of three units share one model (squared error, each row
  weighted by its scale). `boosted_forecasts` fits it twice per request: on the periods before
  the earliest backtest window (that fit forecasts every window, each from its own origin) and
  on everything (that fit forecasts).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

__all__ = [
    "COVARIATE_MODELS",
    "MAX_TRAIN_ROWS",
    "Covariates",
    "boosted_forecasts",
    "covariate_periods",
]

COVARIATE_MODELS = ("lightgbm",)
KEYS = ["COUNTRY", "PRODUCT"]
# Lags of the target read at the origin, and the window (periods) of the scale and the covariate means.
TARGET_LAGS = 8
RECENT = 13
SEASON = {"daily": 7, "weekly": 52}
# Training targets come from at most this many recent periods (three years weekly, a year daily),
# and at most this many (series, origin, step) rows are drawn from them (evenly, at random with a
# fixed seed): it bounds a request's fitting time, not its accuracy on a 45-series upload.
TRAIN_WINDOW = {"daily": 365, "weekly": 156}
MAX_TRAIN_ROWS = 20_000
# Small trees, few rounds, one thread: a per-request model on a few thousand rows, fitted twice
# per request. Squared error on the scaled target, weighted by the scale (errors count in the
# series' units, tempered); measured on the Walmart uploads of benchmarks/predict_real.py, the
# absolute-error objective (what the backtest scores) was no more accurate there and took four
# times as long (LightGBM renews every leaf by a percentile), and two threads on a busy 2-core
# machine were slower than one.
LGB_PARAMS = {
    "objective": "l2",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "max_bin": 63,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "deterministic": True,
    "force_row_wise": True,
    "seed": 0,
    "num_threads": 1,
}
LGB_ROUNDS = 100
# The scaled target is capped: one sale of 40 after a quiet quarter would otherwise be a squared
# error that the rest of the panel pays for.
MAX_SCALED_TARGET = 20.0
# Fewer (series, origin, step) rows than this before a cut: no fit, the model sits out.
MIN_FIT_ROWS = 50


@dataclass(frozen=True)
class Covariates:
    """`values`: COUNTRY, PRODUCT, PERIOD and one Float64 column per covariate, for history and
    forecast periods (null where the upload gave none). `known` are read at the period forecast,
    `observed` at the forecast origin."""

    values: pl.DataFrame
    known: tuple[str, ...] = ()
    observed: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.known, *self.observed)


def covariate_periods(rows: pl.DataFrame, columns: Sequence[str], frequency: str) -> pl.DataFrame:
    """COUNTRY, PRODUCT, PERIOD and `columns` from dated rows (COUNTRY, PRODUCT, DATE, `columns`):
    the mean of each covariate over its period's rows (Monday weeks for weekly), nulls skipped."""
    period = pl.col("DATE").dt.truncate("1w") if frequency == "weekly" else pl.col("DATE")
    return rows.group_by(*KEYS, period.alias("PERIOD")).agg(pl.col(c).cast(pl.Float64).mean() for c in columns).sort(*KEYS, "PERIOD")


@dataclass
class _Design:
    """The panel on one calendar: Y (S, T) targets, NaN before a series starts; K (S, T + H, k)
    known covariates; O (S, T, o) observed ones; `periods` the T + H dates."""

    y: np.ndarray
    known: np.ndarray
    observed: np.ndarray
    periods: list[dt.date]
    frequency: str
    scale: np.ndarray = field(init=False)
    mean4: np.ndarray = field(init=False)
    recent_known: np.ndarray = field(init=False)
    recent_observed: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        length = self.y.shape[1]
        scale = _recent_mean(self.y, RECENT)
        overall = _recent_mean(self.y, length)
        # A series of zeros so far keeps its units (scale 1) rather than dividing by zero.
        self.scale = np.where(scale > 0, scale, np.where(overall > 0, overall, 1.0))
        self.mean4 = _recent_mean(self.y, 4)
        self.recent_known = _recent_mean(self.known[:, :length], RECENT)
        self.recent_observed = _recent_mean(self.observed, RECENT)


def _design(histories: Sequence[np.ndarray], keys: Sequence[tuple[str, str]], last: dt.date, horizon: int, frequency: str, covariates: Covariates) -> _Design:
    """Every series right-aligned on the calendar that ends at `last` (each history ends there)."""
    step = dt.timedelta(days=7 if frequency == "weekly" else 1)
    length = max(h.size for h in histories)
    periods = [last - step * (length - 1 - i) for i in range(length + horizon)]
    y = np.full((len(histories), length), np.nan)
    for i, h in enumerate(histories):
        y[i, length - h.size :] = h
    index = pl.DataFrame({"COUNTRY": [k[0] for k in keys], "PRODUCT": [k[1] for k in keys], "_ROW": np.arange(len(keys))})
    grid = pl.DataFrame({"PERIOD": periods, "_COL": np.arange(len(periods))})
    cells = covariates.values.join(index, on=KEYS).join(grid, on="PERIOD")
    rows, cols = cells["_ROW"].to_numpy(), cells["_COL"].to_numpy()

    def matrix(names: Sequence[str], width: int) -> np.ndarray:
        out = np.full((len(keys), width, len(names)), np.nan)
        for j, name in enumerate(names):
            values = cells[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
            inside = cols < width
            out[rows[inside], cols[inside], j] = values[inside]
        return out

    return _Design(y, matrix(covariates.known, len(periods)), matrix(covariates.observed, length), periods, frequency)


def _take(m: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """m[s, t] (m is (S, T) or (S, T, k)), NaN where t falls outside 0..T-1."""
    ok = (t >= 0) & (t < m.shape[1])
    out = np.full((s.size, *m.shape[2:]), np.nan)
    out[ok] = m[s[ok], t[ok]]
    return out


def _recent_mean(m: np.ndarray, window: int) -> np.ndarray:
    """(S, T, ...) the mean of the `window` values to and including t, NaN skipped (NaN if none)."""
    filled = np.nan_to_num(m, nan=0.0)
    count = (~np.isnan(m)).astype(np.float64)
    pad = [(0, 0), (1, 0)] + [(0, 0)] * (m.ndim - 2)
    cs, cc = np.cumsum(np.pad(filled, pad), axis=1), np.cumsum(np.pad(count, pad), axis=1)
    lo = np.clip(np.arange(m.shape[1]) + 1 - window, 0, None)
    sums = cs[:, 1:] - cs[:, lo]
    counts = cc[:, 1:] - cc[:, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)


def _features(d: _Design, s: np.ndarray, o: np.ndarray, h: np.ndarray) -> np.ndarray:
    """(N, F) features of the rows (series s, origin o, step h): only what is known at o."""
    t = o + h
    sc = d.scale[s, o]
    cols = [h.astype(np.float64)]
    cols += [_take(d.y, s, o - lag) / sc for lag in range(TARGET_LAGS)]
    cols.append(d.mean4[s, o] / sc)
    season = SEASON[d.frequency]
    back = season * np.ceil(h / season).astype(int)
    cols += [_take(d.y, s, t - back) / sc, _take(d.y, s, t - back - season) / sc]
    if d.frequency == "weekly":
        # The neighbours of last year's week (holidays move by a week); the later one only when
        # the origin has seen it.
        cols += [_take(d.y, s, t - back - 1) / sc, np.where(t - back + 1 <= o, _take(d.y, s, t - back + 1), np.nan) / sc]
    dates = [d.periods[i] for i in t]
    cols.append(np.array([p.isocalendar()[1] for p in dates], dtype=np.float64))
    if d.frequency == "daily":
        cols.append(np.array([p.weekday() for p in dates], dtype=np.float64))
    if d.known.shape[2]:
        at = _take(d.known, s, t)
        cols += [at, at - d.recent_known[s, o]]
    if d.observed.shape[2]:
        at = _take(d.observed, s, o)
        cols += [at, at - d.recent_observed[s, o]]
    return np.column_stack(cols)


def boosted_forecasts(
    histories: Sequence[np.ndarray],
    keys: Sequence[tuple[str, str]],
    last: dt.date,
    horizon: int,
    frequency: str,
    covariates: Covariates,
    cuts: Sequence[int],
    min_train: int = 4,
) -> dict[int, np.ndarray]:
    """cut -> (S, horizon) point forecasts of the global model from each series' origin
    `len - cut` (cut 0: the forecast after the last period), NaN for a series with fewer than
    `min_train` periods before it or when too few rows precede the fit's cut. Every history ends
    at `last` (the upload's end)."""
    d = _design(histories, keys, last, horizon, frequency, covariates)
    n_series, length = d.y.shape
    scale = d.scale
    starts = np.argmax(~np.isnan(d.y), axis=1)
    # Every candidate training row of the final fit; a backtest window keeps those whose target
    # lies before its origin.
    first_target = max(0, length - TRAIN_WINDOW[frequency])
    s_all, t_all = np.nonzero(~np.isnan(d.y))
    keep = t_all >= first_target
    s_all, t_all = s_all[keep], t_all[keep]
    s_rows = np.repeat(s_all, horizon)
    t_rows = np.repeat(t_all, horizon)
    h_rows = np.tile(np.arange(1, horizon + 1), s_all.size)
    o_rows = t_rows - h_rows
    keep = o_rows - starts[s_rows] + 1 >= min_train
    s_rows, o_rows, h_rows = s_rows[keep], o_rows[keep], h_rows[keep]
    if s_rows.size > MAX_TRAIN_ROWS:
        pick = np.sort(np.random.default_rng(0).choice(s_rows.size, MAX_TRAIN_ROWS, replace=False))
        s_rows, o_rows, h_rows = s_rows[pick], o_rows[pick], h_rows[pick]
    x_all = _features(d, s_rows, o_rows, h_rows)
    target = np.minimum(d.y[s_rows, o_rows + h_rows] / scale[s_rows, o_rows], MAX_SCALED_TARGET)
    weight = scale[s_rows, o_rows]
    # Two fits, not one per window: the periods before the earliest backtest window train the
    # model that forecasts every window (each from its own origin's lags), everything trains the
    # one that forecasts. No window sees its actuals, and lightgbm is scored on slightly less
    # training data than it forecasts with: the backtest errs against it, not for it.
    backtest_cut = max((c for c in cuts if c > 0), default=0)
    fits = {cut: _fit(x_all, target, weight, o_rows + h_rows <= length - 1 - cut) for cut in {0, backtest_cut}}
    out = {}
    steps = np.arange(1, horizon + 1)
    for cut in cuts:
        origin = length - 1 - cut
        model = fits[0 if cut == 0 else backtest_cut]
        forecast = np.full((n_series, horizon), np.nan)
        able = np.nonzero(origin - starts + 1 >= min_train)[0]
        if model is not None and able.size:
            s_pred = np.repeat(able, horizon)
            o_pred = np.full(s_pred.size, origin)
            h_pred = np.tile(steps, able.size)
            x_pred = _features(d, s_pred, o_pred, h_pred)
            forecast[able] = (model.predict(x_pred) * scale[s_pred, o_pred]).reshape(able.size, horizon)
        out[cut] = np.clip(forecast, 0.0, None)
    return out


def _fit(x: np.ndarray, target: np.ndarray, weight: np.ndarray, rows: np.ndarray):  # -> lightgbm.Booster | None
    """The booster on the chosen rows; None with fewer than MIN_FIT_ROWS of them."""
    import lightgbm as lgb

    if rows.sum() < MIN_FIT_ROWS:
        return None
    return lgb.train(LGB_PARAMS, lgb.Dataset(x[rows], target[rows], weight=weight[rows]), num_boost_round=LGB_ROUNDS)
