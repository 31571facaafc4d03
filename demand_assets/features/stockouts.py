"""Inferring stockout days where the data carries no flag (real sales, e.g. M5).

A run of k consecutive zero-sale days is implausible for an item that usually sells: if its daily
sales were negative binomial with the item's mean m and dispersion r (fitted by the method of
moments on its days outside long zero runs), a zero day has probability p0 = (r / (r + m))^r
(e^-m for Poisson), and a run of k of them p0^k. Runs with p0^k < `alpha` are flagged as probable
stockouts (IN_STOCK = false), so the censoring-aware training and the in-stock evaluation apply.
Two passes: the item's rate is re-estimated without the runs the first pass flagged, since those
zeros are not demand.

Slow movers with long natural gaps keep their zeros (their p0 is high); a stockout that starts
part-way through a day (some sales, then none) is found from its zero days only. Tunable:
smaller `alpha`, fewer and surer flags.
"""

from __future__ import annotations

import polars as pl

from demand_assets.forecasting.panel import SERIES

__all__ = ["infer_stockouts"]


def _flag(frame: pl.DataFrame, alpha: float, exclude: str | None) -> pl.DataFrame:
    sales = pl.col("PRODUCT_DEMAND").cast(pl.Float64)
    usable = ~pl.col(exclude) if exclude else pl.lit(True)
    moments = (
        frame.group_by(SERIES)
        .agg(sales.filter(usable).mean().alias("M"), sales.filter(usable).var().alias("V"))
        .with_columns(
            # NB shape from var = m + m^2 / r; near-Poisson (or under-dispersed) data -> large r.
            pl.when(pl.col("V") > pl.col("M") * 1.01).then(pl.col("M") ** 2 / (pl.col("V") - pl.col("M"))).otherwise(1e6).clip(0.3, 1e6).alias("R")
        )
        .with_columns((pl.col("R") * (pl.col("R") / (pl.col("R") + pl.col("M").fill_null(0.0))).log()).alias("LOG_P0"))
    )
    return (
        frame.join(moments.select(*SERIES, "LOG_P0", pl.col("M").alias("RATE")), on=SERIES, how="left")
        .with_columns((pl.col("ZERO_RUN") * pl.col("LOG_P0") < pl.lit(alpha).log()).fill_null(False).alias("INFERRED_OUT"))
        .drop("LOG_P0")
    )


def infer_stockouts(frame: pl.DataFrame, *, alpha: float = 0.001) -> pl.DataFrame:
    """Adds INFERRED_OUT (bool), ZERO_RUN (length of the zero run a day belongs to, 0 on selling
    days) and RATE (the item's mean daily sales on days not flagged) to DATE, COUNTRY, PRODUCT,
    PRODUCT_DEMAND rows (one row per series and day, no gaps)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha is a probability in (0, 1), got {alpha}")
    ordered = frame.sort(*SERIES, "DATE").with_columns((pl.col("PRODUCT_DEMAND") > 0).cast(pl.Int64).cum_sum().over(SERIES).alias("_RUN"))
    ordered = ordered.with_columns(
        pl.when(pl.col("PRODUCT_DEMAND") == 0).then((pl.col("PRODUCT_DEMAND") == 0).sum().over(*SERIES, "_RUN")).otherwise(0).alias("ZERO_RUN")
    ).drop("_RUN")
    first = _flag(ordered, alpha, None)
    second = _flag(first.drop("RATE").rename({"INFERRED_OUT": "_FIRST"}), alpha, "_FIRST").drop("_FIRST")
    return second
