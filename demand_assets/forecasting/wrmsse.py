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

import polars as pl

__all__ = ["M5_LEVELS", "rmsse_by_series", "wrmsse"]

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


def _aggregate(frame: pl.DataFrame, keys: tuple[str, ...], values: list[str]) -> pl.DataFrame:
    group = [*keys, "DATE"]
    if not keys:
        return frame.group_by("DATE").agg(pl.col(v).sum() for v in values).with_columns(pl.lit("total").alias("SERIES"))
    return frame.group_by(group).agg(pl.col(v).sum() for v in values).with_columns(pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator="|").alias("SERIES"))


def rmsse_by_series(train: pl.DataFrame, test: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """SERIES, RMSSE, WEIGHT_DOLLARS at one level. `train`: the hierarchy columns, DATE, UNITS,
    PRICE; `test`: the hierarchy columns, DATE, UNITS (actual) and FORECAST."""
    hist = _aggregate(train.with_columns((pl.col("UNITS") * pl.col("PRICE")).alias("DOLLARS")), keys, ["UNITS", "DOLLARS"]).sort("SERIES", "DATE")
    hist = hist.with_columns((pl.col("UNITS") > 0).cum_max().over("SERIES").alias("ACTIVE"))
    active = hist.filter(pl.col("ACTIVE"))
    scale = active.with_columns((pl.col("UNITS") - pl.col("UNITS").shift(1).over("SERIES")).alias("DIFF")).group_by("SERIES").agg(
        (pl.col("DIFF").drop_nulls() ** 2).mean().alias("SCALE")
    )
    dates = hist["DATE"].unique().sort()
    recent = set(dates.tail(WEIGHT_DAYS).to_list())
    weights = hist.filter(pl.col("DATE").is_in(list(recent))).group_by("SERIES").agg(pl.col("DOLLARS").sum().alias("WEIGHT_DOLLARS"))
    errors = _aggregate(test, keys, ["UNITS", "FORECAST"]).group_by("SERIES").agg(((pl.col("UNITS") - pl.col("FORECAST")) ** 2).mean().alias("MSE"))
    return (
        errors.join(scale, on="SERIES", how="left").join(weights, on="SERIES", how="left")
        .with_columns((pl.col("MSE") / pl.col("SCALE")).sqrt().alias("RMSSE"), pl.col("WEIGHT_DOLLARS").fill_null(0.0))
        .select("SERIES", "RMSSE", "WEIGHT_DOLLARS", "SCALE")
        .sort("SERIES")
    )


def wrmsse(train: pl.DataFrame, test: pl.DataFrame, levels: tuple[tuple[str, ...], ...] = M5_LEVELS) -> tuple[float, pl.DataFrame]:
    """(WRMSSE, per-level table LEVEL, KEYS, SERIES_COUNT, SCORE). Frames at the bottom level
    (ITEM x STORE) with the hierarchy columns the levels name."""
    missing = {k for level in levels for k in level} - set(train.columns)
    if missing:
        raise ValueError(f"the hierarchy lacks column(s) {sorted(missing)}")
    rows = []
    for i, keys in enumerate(levels, start=1):
        per_series = rmsse_by_series(train, test, keys)
        scored = per_series.filter(pl.col("SCALE") > 0)
        total = scored["WEIGHT_DOLLARS"].sum()
        score = float((scored["RMSSE"] * scored["WEIGHT_DOLLARS"]).sum() / total) if total > 0 else float("nan")
        rows.append({"LEVEL": i, "KEYS": " x ".join(keys) or "total", "SERIES_COUNT": per_series.height, "UNSCALED_SERIES": per_series.height - scored.height, "SCORE": score})
    table = pl.DataFrame(rows)
    return float(table["SCORE"].mean()), table
