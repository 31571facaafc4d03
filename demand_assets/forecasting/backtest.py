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
    "sorted_forecasts",
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
    # Sorted here, in the unit, so that the publishing step can take the frame as it is.
    frame = forecast.join(actual, on=KEYS, how="inner").with_columns(pl.lit(name).alias("MODEL"), pl.lit(fold.index).alias("FOLD")).sort(KEYS)
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
    forecasts = sorted_forecasts(frames)
    if truth is not None:
        forecasts = forecasts.join(truth.select(*KEYS, "TRUE_DEMAND"), on=KEYS, how="left")
    scales = _series_scales(dataset, folds, season=max(1, 7 // period_days))
    timing = pl.DataFrame(list(timings)).group_by("MODEL", "FOLD", maintain_order=True).agg(pl.col("FIT_SECONDS").sum(), pl.col("PREDICT_SECONDS").sum())
    return BacktestResult(forecasts, score_forecasts(forecasts, scales), timing.sort("MODEL", "FOLD"))


def _is_sorted_by(frame: pl.DataFrame, columns: Sequence[str]) -> bool:
    """Whether the rows are in ascending order of `columns` (the first, then the next, ...)."""
    if frame.height < 2:
        return True
    in_order: pl.Expr = pl.lit(True)
    for c in reversed(columns):
        in_order = (pl.col(c) > pl.col(c).shift()) | ((pl.col(c) == pl.col(c).shift()) & in_order)
    return bool(frame.select(in_order.slice(1).all()).item())


def sorted_forecasts(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The units' forecast frames as one table sorted by MODEL, FOLD, DATE, COUNTRY, PRODUCT.

    A (model, fold) in one frame already in order (`backtest_unit` sorts its own) is taken as it
    is: its rows are not copied. One split into shards (ETS's), or out of order, is concatenated
    and sorted on its own. Sorting every forecast at once (20 M rows for the default line-up's
    four folds at M5 size) took gigabytes of scratch, and a copy of all of them, in a step that
    already holds them.
    """
    groups: dict[tuple[str, int], list[pl.DataFrame]] = {}
    for frame in frames:
        if frame.height:
            head = frame.select("MODEL", "FOLD").unique()
            for model, fold in head.iter_rows():
                part = frame if head.height == 1 else frame.filter((pl.col("MODEL") == model) & (pl.col("FOLD") == fold))
                groups.setdefault((model, fold), []).append(part)
    if not groups:
        return pl.concat(list(frames), how="diagonal_relaxed")
    parts = []
    for key in sorted(groups):
        (one, *more) = groups[key]
        parts.append(one if not more and _is_sorted_by(one, KEYS) else pl.concat([one, *more], how="diagonal_relaxed").sort(*KEYS))
    return pl.concat(parts, how="diagonal_relaxed", rechunk=False)


def _series_scales(dataset: pl.DataFrame, folds: Sequence[Fold], season: int = 7) -> pl.DataFrame:
    """MASE scale per series and fold, from that fold's training history only: the in-sample
    mean absolute error of the seasonal naive forecast (`metrics.seasonal_scale`), null for a
    series with no more than `season` observed days. `season` is in rows: 7 for daily rows (the
    same weekday), 1 for weekly rows (last week).

    The date-sorted panel's observed rows, each with its change from the `season`-th observed
    row before it in its series (a window by series: row order is date order), then one group-by
    for every fold at once: a row's change depends only on the rows before it, so a fold's scale
    is the mean over the rows up to its origin. Series keys are categorical inside. At M5 size a
    group-by per fold, over a copy of each fold's history, took 2.5 GB above the panel; this
    takes 1.0 GB.
    """
    dataset = sorted_by_date(dataset)
    observed = (
        dataset.lazy()
        .select(*(pl.col(c).cast(pl.Categorical) for c in SERIES), "DATE", pl.col(TARGET).cast(pl.Float64).alias("Y"))
        .drop_nulls("Y")
        .with_columns((pl.col("Y") - pl.col("Y").shift(season)).abs().over(SERIES).alias("CHANGE"))
    )
    by_fold = observed.group_by(SERIES).agg(
        pl.when((pl.col("DATE") <= fold.origin).sum() > season).then(pl.col("CHANGE").filter(pl.col("DATE") <= fold.origin).mean()).alias(str(fold.index))
        for fold in folds
    )
    long = by_fold.unpivot(index=SERIES, variable_name="FOLD", value_name="SCALE").collect()
    return long.select(pl.col("FOLD").cast(pl.Int64), *(pl.col(c).cast(pl.String) for c in SERIES), pl.col("SCALE").cast(pl.Float64)).sort("FOLD", *SERIES)


def _runs(frame: pl.DataFrame) -> list[tuple[str, int, int, int]]:
    """(MODEL, FOLD, offset, length) of each run of rows with one model and fold, in row order."""
    if frame.is_empty():
        return []
    change = frame.select(((pl.col("MODEL") != pl.col("MODEL").shift()) | (pl.col("FOLD") != pl.col("FOLD").shift())).fill_null(True)).to_series()
    starts = change.arg_true().to_list()
    keys = frame[starts].select("MODEL", "FOLD").rows()
    ends = [*starts[1:], frame.height]
    return [(model, fold, start, end - start) for (model, fold), start, end in zip(keys, starts, ends)]


def _model_fold_runs(forecasts: pl.DataFrame) -> tuple[pl.DataFrame, list[tuple[str, int, int, int]]]:
    """The frame with each (model, fold)'s rows together, and their runs: the frame itself when
    they already are (as `sorted_forecasts` leaves them), else sorted by MODEL and FOLD. Each
    run is then a zero-copy slice."""
    runs = _runs(forecasts)
    if len({(model, fold) for model, fold, _, _ in runs}) < len(runs):
        forecasts = forecasts.sort("MODEL", "FOLD", maintain_order=True)
        runs = _runs(forecasts)
    return forecasts, runs


def score_forecasts(forecasts: pl.DataFrame, scales: pl.DataFrame | None = None) -> pl.DataFrame:
    """Metrics per model and fold (and FOLD = -1 for all folds) in each regime.

    Regimes: `all` scores against observed sales on every day; `in_stock` only on days with
    no stockout; `true` (synthetic sources) against uncensored demand on every day.

    Each model and fold is a zero-copy slice of `forecasts` when its rows are together (as
    `sorted_forecasts` leaves them; otherwise the frame is sorted first), joined to its fold's
    scales on its own; a model's folds together make its FOLD -1. At M5 size four folds of six
    models are 20 M rows in a step already holding them: grouping them copied every row, and
    joining the scales to all at once copied them again.
    """
    regimes = [r for r in REGIMES if r != "true" or "TRUE_DEMAND" in forecasts.columns]
    forecasts, runs = _model_fold_runs(forecasts)
    by_fold = {fold: part.drop("FOLD") for (fold,), part in scales.partition_by("FOLD", as_dict=True).items()} if scales is not None else {}
    runs_of: dict[str, list[tuple[int, int, int]]] = {}
    for model, fold, offset, length in runs:
        runs_of.setdefault(model, []).append((fold, offset, length))
    no_scales = pl.DataFrame(schema={**{c: forecasts.schema[c] for c in SERIES}, "SCALE": pl.Float64})
    rows = []
    for model, model_runs in runs_of.items():  # one model's joined rows held at a time
        parts = []
        for fold, offset, length in model_runs:
            part = forecasts.slice(offset, length)
            if scales is not None:
                part = part.join(by_fold.get(fold, no_scales), on=SERIES, how="left", maintain_order="left")
            parts.append((fold, part))
        every_fold = pl.concat([part for _, part in parts], rechunk=False)
        for fold, part in [*parts, (-1, every_fold)]:
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
    from demand_assets.forecasting.wrmsse import training_scales, wrmsse_against

    # Categorical level columns, and the string keys dropped once joined: at M5 size the
    # bottom-level training frame is 22 M rows. Its scales and weights depend on the fold alone,
    # so they are computed once per fold and every model's forecasts are scored against them.
    names = ["STORE", "STATE", "ITEM", "CATEGORY", "DEPARTMENT"]
    levels = hierarchy.select(*SERIES, *(pl.col(c).cast(pl.Categorical) for c in names))
    forecasts, runs = _model_fold_runs(forecasts)  # each model's fold a zero-copy slice
    rows = []
    for fold in folds:
        train = history_up_to(dataset, fold.origin).select(*KEYS, pl.col(TARGET).alias("UNITS"), "PRICE").join(levels, on=SERIES, how="inner").drop(SERIES)
        scales = training_scales(train)
        del train
        for model, _, offset, length in (run for run in runs if run[1] == fold.index):
            part = forecasts.slice(offset, length)
            test = part.select(*KEYS, pl.col("ACTUAL").alias("UNITS"), pl.col("MEAN").alias("FORECAST")).join(levels, on=SERIES, how="inner").drop(SERIES)
            score, _ = wrmsse_against(scales, test)
            rows.append({"MODEL": model, "FOLD": fold.index, "WRMSSE": score})
    table = pl.DataFrame(rows, schema={"MODEL": pl.String, "FOLD": pl.Int64, "WRMSSE": pl.Float64})
    overall = table.group_by("MODEL").agg(pl.lit(-1, pl.Int64).alias("FOLD"), pl.col("WRMSSE").mean())
    return pl.concat([table, overall.select(table.columns)]).sort("MODEL", "FOLD")
