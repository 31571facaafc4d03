"""Rolling-origin backtests: fit at each origin, forecast the next H days, score.

Fold semantics: folds are the last `n_folds` windows of `horizon` days, `step` days apart,
ending on the last day of data. Fold k trains on every day up to and including its origin
(the day before its test window) and is scored on the test window only. Later folds see more
history; no fold ever trains on a day it is scored on. A weekly series (`period_days` 7, its
last day a week day) has folds of whole weeks: horizon and step are rounded down to multiples of
7 days (at least one week), so every origin is a week day and 28 days are 4 weeks.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from demand_assets.forecasting.metrics import REGIMES, bias, interval_coverage, mase, pinball_loss, regime_rows, rmse, wape
from demand_assets.forecasting.models.base import Forecaster
from demand_assets.forecasting.panel import KEYS, SERIES, TARGET, future_frame, history_up_to, sorted_by_date

__all__ = [
    "SCORING_COLUMNS",
    "Fold",
    "BacktestResult",
    "Unit",
    "backtest_unit",
    "plan_units",
    "rolling_origin_folds",
    "run_backtest",
    "score_backtest",
    "score_forecasts",
    "wrmsse_by_model",
]

log = logging.getLogger(__name__)

# The training dataset's columns that scoring reads (`score_backtest`'s series scales and
# `wrmsse_by_model`'s history and weights): the publishing step reads only these of the whole
# window, a quarter of the dataset's 21 columns.
SCORING_COLUMNS = [*KEYS, TARGET, "PRICE"]


@dataclass(frozen=True)
class Fold:
    index: int
    origin: dt.date  # last training day
    test_start: dt.date
    test_end: dt.date  # exclusive

    @property
    def horizon(self) -> int:
        return (self.test_end - self.test_start).days


def rolling_origin_folds(last_date: dt.date, *, n_folds: int = 4, horizon: int = 28, step: int | None = None, period_days: int = 1) -> list[Fold]:
    """The last `n_folds` origins, oldest first; the newest test window ends on `last_date`."""
    if n_folds < 1 or horizon < 1:
        raise ValueError("n_folds and horizon must be >= 1")
    step = step or horizon
    horizon, step = (max(period_days, days // period_days * period_days) for days in (horizon, step))
    folds = []
    for k in range(n_folds):
        test_end = last_date + dt.timedelta(days=1 - (n_folds - 1 - k) * step)
        test_start = test_end - dt.timedelta(days=horizon)
        folds.append(Fold(k, test_start - dt.timedelta(days=1), test_start, test_end))
    return folds


@dataclass
class BacktestResult:
    forecasts: pl.DataFrame  # MODEL, FOLD, DATE, COUNTRY, PRODUCT, MEAN, P10, P50, P90, ACTUAL, IN_STOCK (+ TRUE_DEMAND)
    metrics: pl.DataFrame  # MODEL, FOLD, REGIME, WAPE, RMSE, MASE, BIAS, PINBALL_P10/P50/P90, COVERAGE_P10_P90
    timings: pl.DataFrame  # MODEL, FOLD, FIT_SECONDS, PREDICT_SECONDS


@dataclass(frozen=True)
class Unit:
    """One unit of a backtest: one model, one fold, and one shard of the series (-1: all)."""

    model: str
    fold: int
    shard: int = -1

    @property
    def key(self) -> str:
        """A name Dagster accepts as a mapping key (letters, digits, underscores)."""
        return f"{self.model}__fold{self.fold}" + (f"__shard{self.shard}" if self.shard >= 0 else "")


def plan_units(models: Sequence[str], folds: Sequence[Fold], n_shards: int, sharded: Callable[[str], bool]) -> list[Unit]:
    """Every (model, fold) and, for the models `sharded` says are split by series, every shard;
    the slowest-to-fit models first would be the executor's business, so the order is simply
    model, fold, shard."""
    return [Unit(model, fold.index, shard) for model in models for fold in folds for shard in (range(n_shards) if sharded(model) and n_shards > 1 else [-1])]


def backtest_unit(
    dataset: pl.DataFrame,
    name: str,
    factory: Callable[[], Forecaster],
    fold: Fold,
    *,
    progress: Callable[[str], None] | None = None,
    n_folds: int | None = None,
) -> tuple[pl.DataFrame, dict]:
    """Fit a fresh model on the fold's history of `dataset` (a whole panel or one shard of it)
    and forecast its test window: the forecasts joined with the actuals, and the timing row."""
    dataset = sorted_by_date(dataset)
    # Zero-copy slices of the date-sorted panel: at M5 size a filtered copy is gigabytes.
    train = history_up_to(dataset, fold.origin)
    future = future_frame(dataset, fold.origin, fold.horizon)
    actual = dataset.select(*KEYS, pl.col(TARGET).alias("ACTUAL"), "IN_STOCK").filter(pl.col("DATE").is_between(fold.test_start, fold.test_end, closed="left"))
    model = factory()
    t0 = time.perf_counter()
    model.fit(train)
    t1 = time.perf_counter()
    forecast = model.predict(train, future)
    t2 = time.perf_counter()
    (progress or log.info)(f"backtest {name} fold {fold.index + 1}/{n_folds or '?'} (origin {fold.origin}): fit {t1 - t0:.1f}s, predict {t2 - t1:.1f}s")
    frame = forecast.join(actual, on=KEYS, how="inner").with_columns(pl.lit(name).alias("MODEL"), pl.lit(fold.index).alias("FOLD"))
    return frame, {"MODEL": name, "FOLD": fold.index, "FIT_SECONDS": t1 - t0, "PREDICT_SECONDS": t2 - t1}


def run_backtest(
    dataset: pl.DataFrame,
    models: dict[str, Callable[[], Forecaster]],
    folds: Sequence[Fold],
    *,
    truth: pl.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
    period_days: int = 1,
) -> BacktestResult:
    """Fit a fresh model from each factory at every fold and score its forecasts, in this
    process (the model_backtest asset runs the same units as steps of their own).

    `truth` (DATE, COUNTRY, PRODUCT, TRUE_DEMAND), when the source has it, adds the regime
    scored against uncensored demand. `progress` receives a line per model and fold (an
    orchestrator's logger, say). `period_days` 7 (a weekly series) scales MASE by last week's
    naive error instead of the same weekday's.
    """
    dataset = sorted_by_date(dataset)
    frames, timings = [], []
    for fold in folds:
        for name, factory in models.items():
            frame, timing = backtest_unit(dataset, name, factory, fold, progress=progress, n_folds=len(folds))
            frames.append(frame)
            timings.append(timing)
    return score_backtest(dataset, frames, timings, folds, truth=truth, period_days=period_days)


def score_backtest(
    dataset: pl.DataFrame,
    frames: Sequence[pl.DataFrame],
    timings: Sequence[dict],
    folds: Sequence[Fold],
    *,
    truth: pl.DataFrame | None = None,
    period_days: int = 1,
) -> BacktestResult:
    """Score the units' forecasts together: one table of forecasts (sorted, so the order units
    finished in does not matter), metrics per model and fold in every regime."""
    forecasts = pl.concat(frames, how="diagonal_relaxed").sort("MODEL", "FOLD", *KEYS)
    if truth is not None:
        forecasts = forecasts.join(truth.select(*KEYS, "TRUE_DEMAND"), on=KEYS, how="left")
    scales = _series_scales(dataset, folds, season=max(1, 7 // period_days))
    timing = pl.DataFrame(list(timings)).group_by("MODEL", "FOLD", maintain_order=True).agg(pl.col("FIT_SECONDS").sum(), pl.col("PREDICT_SECONDS").sum())
    return BacktestResult(forecasts, score_forecasts(forecasts, scales), timing.sort("MODEL", "FOLD"))


def _series_scales(dataset: pl.DataFrame, folds: Sequence[Fold], season: int = 7) -> pl.DataFrame:
    """MASE scale per series and fold, from that fold's training history only: the in-sample
    mean absolute error of the seasonal naive forecast (`metrics.seasonal_scale`), null for a
    series with no more than `season` observed days. `season` is in rows: 7 for daily rows (the
    same weekday), 1 for weekly rows (last week). One group-by per fold over the
    date-sorted panel (groups keep row order, hence date order)."""
    dataset = sorted_by_date(dataset)
    frames = []
    for fold in folds:
        hist = history_up_to(dataset, fold.origin).select(*SERIES, pl.col(TARGET).cast(pl.Float64).alias("Y")).drop_nulls("Y")
        y = pl.col("Y")
        frames.append(
            hist.group_by(SERIES)
            .agg(pl.when(pl.len() > season).then((y - y.shift(season)).abs().mean()).alias("SCALE"))
            .select(pl.lit(fold.index, pl.Int64).alias("FOLD"), *SERIES, "SCALE")
        )
    return pl.concat(frames)


def score_forecasts(forecasts: pl.DataFrame, scales: pl.DataFrame | None = None) -> pl.DataFrame:
    """Metrics per model and fold (and FOLD = -1 for all folds) in each regime.

    Regimes: `all` scores against observed sales on every day; `in_stock` only on days with
    no stockout; `true` (synthetic sources) against uncensored demand on every day.
    """
    frame = forecasts
    if scales is not None:
        frame = frame.join(scales, on=["FOLD", *SERIES], how="left")
    regimes = [r for r in REGIMES if r != "true" or "TRUE_DEMAND" in frame.columns]
    rows = []
    # One model's rows at a time, each fold then all its folds (FOLD -1): no copy of the whole
    # frame (at M5 size four folds of six models are 20 M rows, in a step already holding them).
    for (model,), by_model in frame.group_by(["MODEL"], maintain_order=True):
        folds = ((fold, part) for (fold,), part in by_model.group_by(["FOLD"], maintain_order=True))
        for fold, part in itertools.chain(folds, [(-1, by_model)]):
            for regime in regimes:
                sub, target = regime_rows(part, regime)
                a = sub[target].cast(pl.Float64).to_numpy()
                scale = sub["SCALE"].to_numpy() if "SCALE" in sub.columns else np.full(a.shape, np.nan)
                rows.append(
                    {
                        "MODEL": model,
                        "FOLD": fold,
                        "REGIME": regime,
                        "ROWS": sub.height,
                        "WAPE": wape(a, sub["P50"].to_numpy()),
                        "RMSE": rmse(a, sub["MEAN"].to_numpy()),
                        "MASE": mase(a, sub["P50"].to_numpy(), scale),
                        "BIAS": bias(a, sub["MEAN"].to_numpy()),
                        "PINBALL_P10": pinball_loss(a, sub["P10"].to_numpy(), 0.1),
                        "PINBALL_P50": pinball_loss(a, sub["P50"].to_numpy(), 0.5),
                        "PINBALL_P90": pinball_loss(a, sub["P90"].to_numpy(), 0.9),
                        "COVERAGE_P10_P90": interval_coverage(a, sub["P10"].to_numpy(), sub["P90"].to_numpy()),
                    }
                )
    return pl.DataFrame(rows).sort("MODEL", "FOLD", "REGIME")


def wrmsse_by_model(dataset: pl.DataFrame, forecasts: pl.DataFrame, folds: Sequence[Fold], hierarchy: pl.DataFrame) -> pl.DataFrame:
    """M5's WRMSSE of every model's MEAN forecast per fold (FOLD -1: the mean over folds), for
    sources that know the hierarchy (`Catalog.hierarchy()`: COUNTRY, PRODUCT and M5's level
    columns). Each fold is scaled and weighted from its own training days only."""
    from demand_assets.forecasting.wrmsse import wrmsse

    # Categorical level columns, and the string keys dropped once joined: at M5 size the
    # bottom-level training frame is 22 M rows.
    names = ["STORE", "STATE", "ITEM", "CATEGORY", "DEPARTMENT"]
    levels = hierarchy.select(*SERIES, *(pl.col(c).cast(pl.Categorical) for c in names))
    rows = []
    for fold in folds:
        train = history_up_to(dataset, fold.origin).select(*KEYS, pl.col(TARGET).alias("UNITS"), "PRICE").join(levels, on=SERIES, how="inner").drop(SERIES)
        for (model,), part in forecasts.filter(pl.col("FOLD") == fold.index).group_by(["MODEL"], maintain_order=True):
            test = part.select(*KEYS, pl.col("ACTUAL").alias("UNITS"), pl.col("MEAN").alias("FORECAST")).join(levels, on=SERIES, how="inner").drop(SERIES)
            score, _ = wrmsse(train, test)
            rows.append({"MODEL": model, "FOLD": fold.index, "WRMSSE": score})
    table = pl.DataFrame(rows, schema={"MODEL": pl.String, "FOLD": pl.Int64, "WRMSSE": pl.Float64})
    overall = table.group_by("MODEL").agg(pl.lit(-1, pl.Int64).alias("FOLD"), pl.col("WRMSSE").mean())
    return pl.concat([table, overall.select(table.columns)]).sort("MODEL", "FOLD")
