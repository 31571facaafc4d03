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


def _aggregate(frame: pl.DataFrame, by: list[str], values: list[str]) -> pl.DataFrame:
    return frame.group_by([*by, "DATE"]).agg(pl.col(v).sum() for v in values)


def rmsse_by_series(train: pl.DataFrame, test: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """SERIES, RMSSE, WEIGHT_DOLLARS at one level. `train`: the hierarchy columns, DATE, UNITS,
    PRICE; `test`: the hierarchy columns, DATE, UNITS (actual) and FORECAST.

    Series are grouped by their key columns themselves (no per-row label), and history is put
    in order by DATE alone: at M5's bottom level the training frame is tens of millions of
    rows, and a string label or a multi-key sort would cost gigabytes.
    """
    by = list(keys) or ["_TOTAL"]
    if not keys:
        train, test = (f.with_columns(pl.lit("total").alias("_TOTAL")) for f in (train, test))
    hist = _aggregate(train.with_columns((pl.col("UNITS") * pl.col("PRICE")).alias("DOLLARS")), by, ["UNITS", "DOLLARS"]).sort("DATE")
    # Window expressions run in row order, which is date order within every series.
    active = hist.filter((pl.col("UNITS") > 0).cum_max().over(by))
    scale = (
        active.with_columns((pl.col("UNITS") - pl.col("UNITS").shift(1).over(by)).alias("DIFF"))
        .group_by(by)
        .agg((pl.col("DIFF").drop_nulls() ** 2).mean().alias("SCALE"))
    )
    cutoff = hist["DATE"].unique().sort().tail(WEIGHT_DAYS).min()
    weights = hist.filter(pl.col("DATE") >= cutoff).group_by(by).agg(pl.col("DOLLARS").sum().alias("WEIGHT_DOLLARS"))
    errors = _aggregate(test, by, ["UNITS", "FORECAST"]).group_by(by).agg(((pl.col("UNITS") - pl.col("FORECAST")) ** 2).mean().alias("MSE"))
    label = pl.concat_str([pl.col(k).cast(pl.String) for k in by], separator="|")
    return (
        errors.join(scale, on=by, how="left")
        .join(weights, on=by, how="left")
        .with_columns((pl.col("MSE") / pl.col("SCALE")).sqrt().alias("RMSSE"), pl.col("WEIGHT_DOLLARS").fill_null(0.0), label.alias("SERIES"))
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
