"""M5's accuracy metric: the weighted root mean squared scaled error over 12 aggregation levels.

For every series of every level (bottom series summed up the hierarchy):

    RMSSE = sqrt( mean over the horizon of (y - f)^2  /  mean over training of (y_t - y_{t-1})^2 )

where the training part starts at the series' first non-zero sale (M5's rule: a product not yet
on sale has no history to scale by). Each series is weighted by its dollar sales over the last
28 days of training, normalised within its level; WRMSSE is the mean over the 12 levels of the
weighted sums. Series whose scale is zero (no change at all in training) cannot be scaled and are
left out, their weight spread over the rest of their level.

The 12 levels, with M5's names for the hierarchy columns (item, store, state, category,
department): total; state; store; category; department; state x category; state x department;
store x category; store x department; item; item x state; item x store.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

__all__ = ["M5_LEVELS", "TrainingScales", "level_scales", "rmsse_against", "rmsse_by_series", "training_scales", "wrmsse", "wrmsse_against"]

M5_LEVELS: tuple[tuple[str, ...], ...] = (
    (),
    ("STATE",),
    ("STORE",),
    ("CATEGORY",),
    ("DEPARTMENT",),
    ("STATE", "CATEGORY"),
    ("STATE", "DEPARTMENT"),
    ("STORE", "CATEGORY"),
    ("STORE", "DEPARTMENT"),
    ("ITEM",),
    ("ITEM", "STATE"),
    ("ITEM", "STORE"),
)
WEIGHT_DAYS = 28


BOTTOM = ("ITEM", "STORE")  # the level the frames come at: one row per series and day


def _aggregate(frame: pl.DataFrame, by: list[str], values: list[str]) -> pl.DataFrame:
    return frame.group_by([*by, "DATE"]).agg(pl.col(v).sum() for v in values)


def _series_keys(frame: pl.LazyFrame, keys: tuple[str, ...]) -> tuple[pl.LazyFrame, list[str]]:
    """The frame and the columns naming a level's series: its keys, or one `_TOTAL` series."""
    if keys:
        return frame, list(keys)
    return frame.with_columns(pl.lit("total").alias("_TOTAL")), ["_TOTAL"]


def _weight_cutoff(train: pl.DataFrame) -> dt.date:
    """The first of the last 28 training days: the weights' window, the same for every level."""
    first = train["DATE"].unique().sort().tail(WEIGHT_DAYS).min()
    assert isinstance(first, dt.date), "training frame without dates"
    return first


def level_scales(train: pl.DataFrame, keys: tuple[str, ...], cutoff: dt.date | None = None) -> pl.DataFrame:
    """The level's series (its key columns, or `_TOTAL`), each with SCALE (the mean squared
    day-to-day change from its first non-zero sale on) and WEIGHT_DOLLARS (its dollar sales over
    the last 28 days of training). `train`: the hierarchy columns, DATE, UNITS, PRICE, at the
    bottom level.

    One pass of a group-by over the level's daily series, each group's rows in date order: at
    M5's bottom level the training frame is tens of millions of rows, and it is not copied
    (not aggregated, not labelled, sorted only if it is not already in date order). `cutoff`:
    `_weight_cutoff(train)`, computed once by a caller that scores every level.
    """
    dollars = (pl.col("UNITS") * pl.col("PRICE")).alias("DOLLARS")
    source, by = _series_keys(train.lazy(), keys)
    if set(keys) == set(BOTTOM):
        daily = train.select(*by, "DATE", "UNITS", dollars)
    else:
        daily = source.group_by([*by, "DATE"]).agg(pl.col("UNITS").sum(), dollars.sum()).collect()
    if not daily["DATE"].is_sorted():
        daily = daily.sort("DATE")  # group-by keeps row order within a group: date order
    cutoff = _weight_cutoff(train) if cutoff is None else cutoff
    units = pl.col("UNITS").cast(pl.Float64)
    active = units.filter((pl.col("UNITS") > 0).cum_max())  # from the first sale on
    return daily.group_by(by).agg(
        active.diff().pow(2).mean().alias("SCALE"),  # the first change is null, which mean skips
        pl.col("DOLLARS").filter(pl.col("DATE") >= cutoff).sum().alias("WEIGHT_DOLLARS"),
    )


def rmsse_against(scales: pl.DataFrame, test: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """SERIES, RMSSE, WEIGHT_DOLLARS, SCALE at one level, from the level's `level_scales` and
    `test` (the hierarchy columns, DATE, UNITS (actual) and FORECAST, at the bottom level)."""
    lazy, by = _series_keys(test.lazy(), keys)
    errors = _aggregate(lazy.collect(), by, ["UNITS", "FORECAST"]).group_by(by).agg(((pl.col("UNITS") - pl.col("FORECAST")) ** 2).mean().alias("MSE"))
    label = pl.concat_str([pl.col(k).cast(pl.String) for k in by], separator="|")
    return (
        errors.join(scales, on=by, how="left")
        .with_columns((pl.col("MSE") / pl.col("SCALE")).sqrt().alias("RMSSE"), pl.col("WEIGHT_DOLLARS").fill_null(0.0), label.alias("SERIES"))
        .select("SERIES", "RMSSE", "WEIGHT_DOLLARS", "SCALE")
        .sort("SERIES")
    )


def rmsse_by_series(train: pl.DataFrame, test: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """SERIES, RMSSE, WEIGHT_DOLLARS, SCALE at one level. `train`: the hierarchy columns, DATE,
    UNITS, PRICE; `test`: the hierarchy columns, DATE, UNITS (actual) and FORECAST."""
    return rmsse_against(level_scales(train, keys), test, keys)


@dataclass(frozen=True)
class TrainingScales:
    """Every level's `level_scales` from one training window: computed once per backtest fold
    and shared by every model's forecasts of that fold."""

    levels: tuple[tuple[str, ...], ...]
    tables: tuple[pl.DataFrame, ...]


def training_scales(train: pl.DataFrame, levels: tuple[tuple[str, ...], ...] = M5_LEVELS) -> TrainingScales:
    """The scales and weights of every level's series. `train` at the bottom level (ITEM x STORE)
    with the hierarchy columns the levels name."""
    missing = {k for level in levels for k in level} - set(train.columns)
    if missing:
        raise ValueError(f"the hierarchy lacks column(s) {sorted(missing)}")
    cutoff = _weight_cutoff(train)
    return TrainingScales(levels, tuple(level_scales(train, keys, cutoff) for keys in levels))


def wrmsse_against(scales: TrainingScales, test: pl.DataFrame) -> tuple[float, pl.DataFrame]:
    """(WRMSSE, per-level table LEVEL, KEYS, SERIES_COUNT, UNSCALED_SERIES, SCORE) of `test`
    (bottom level, with the hierarchy columns) against one training window's scales."""
    rows = []
    for i, (keys, table) in enumerate(zip(scales.levels, scales.tables), start=1):
        per_series = rmsse_against(table, test, keys)
        scored = per_series.filter(pl.col("SCALE") > 0)
        total = scored["WEIGHT_DOLLARS"].sum()
        score = float((scored["RMSSE"] * scored["WEIGHT_DOLLARS"]).sum() / total) if total > 0 else float("nan")
        rows.append(
            {
                "LEVEL": i,
                "KEYS": " x ".join(keys) or "total",
                "SERIES_COUNT": per_series.height,
                "UNSCALED_SERIES": per_series.height - scored.height,
                "SCORE": score,
            }
        )
    table = pl.DataFrame(rows)
    return float(table["SCORE"].mean()), table


def wrmsse(train: pl.DataFrame, test: pl.DataFrame, levels: tuple[tuple[str, ...], ...] = M5_LEVELS) -> tuple[float, pl.DataFrame]:
    """(WRMSSE, per-level table LEVEL, KEYS, SERIES_COUNT, UNSCALED_SERIES, SCORE). Frames at the
    bottom level (ITEM x STORE) with the hierarchy columns the levels name."""
    return wrmsse_against(training_scales(train, levels), test)
