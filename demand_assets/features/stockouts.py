"""Inferring stockout days where the data carries no flag (real sales, e.g. M5).

A run of k consecutive zero-sale days is implausible for an item that usually sells: if its daily
sales were negative binomial with the item's mean m and dispersion r (fitted by the method of
moments on its days outside implausible zero runs), a zero day has probability p0 = (r / (r + m))^r
(e^-m for Poisson), and a run of k of them p0^k. A run with p0^k < `alpha` is not demand. Two
passes: the item's rate is re-estimated without the runs the first pass found, since those zeros
are not demand.

An implausible run is one of two things, told apart by its length:

* up to `max_stockout_days` days (default `MAX_STOCKOUT_DAYS`, 28: four weekly replenishment
  cycles): a probable stockout, INFERRED_OUT (the sources set IN_STOCK = false), so the
  censoring-aware training and the in-stock evaluation apply;
* longer: a listing gap, LISTING_GAP. The item was not on offer (delisted for a season, a
  planogram change, a data gap), even where the data still gives it a price: on real M5 series
  such runs last 50 to 682 days, and no shelf stays empty that long unnoticed. A listing gap is
  not a stockout (it is not censored demand, and counting it would inflate lost sales and the
  value of in-stock improvements) and not demand either (its zeros say nothing about what the
  item sells when offered): the sources decide what to do with it (`demand_assets.sources.m5`).

`max_stockout_days=None` keeps every implausible run a stockout (the rule before listing gaps).
Slow movers with long natural gaps keep their zeros (their p0 is high, so no run of theirs is
implausible, however long); a stockout that starts part-way through a day (some sales, then none)
is found from its zero days only. Tunable: smaller `alpha`, fewer and surer flags; smaller
`max_stockout_days`, more runs called listing gaps.
"""

from __future__ import annotations

import polars as pl

from demand_assets.forecasting.panel import SERIES

__all__ = ["MAX_STOCKOUT_DAYS", "infer_stockouts", "zero_runs"]

MAX_STOCKOUT_DAYS = 28


def zero_runs(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` (DATE, COUNTRY, PRODUCT, PRODUCT_DEMAND; one row per series and day, no gaps)
    sorted by series and day, with ZERO_RUN: the length of the run of zero-sale days a day
    belongs to, 0 on selling days."""
    ordered = frame.sort(*SERIES, "DATE").with_columns((pl.col("PRODUCT_DEMAND") > 0).cast(pl.Int64).cum_sum().over(SERIES).alias("_RUN"))
    return ordered.with_columns(
        pl.when(pl.col("PRODUCT_DEMAND") == 0).then((pl.col("PRODUCT_DEMAND") == 0).sum().over(*SERIES, "_RUN")).otherwise(0).alias("ZERO_RUN")
    ).drop("_RUN")


def _implausible(frame: pl.DataFrame, alpha: float, exclude: str | None) -> pl.DataFrame:
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
        .with_columns((pl.col("ZERO_RUN") * pl.col("LOG_P0") < pl.lit(alpha).log()).fill_null(False).alias("_IMPLAUSIBLE"))
        .drop("LOG_P0")
    )


def infer_stockouts(frame: pl.DataFrame, *, alpha: float = 0.001, max_stockout_days: int | None = MAX_STOCKOUT_DAYS) -> pl.DataFrame:
    """Adds INFERRED_OUT (bool: a probable stockout day), LISTING_GAP (bool: a day of an
    implausible zero run longer than `max_stockout_days`, never also INFERRED_OUT), ZERO_RUN
    (length of the zero run a day belongs to, 0 on selling days) and RATE (the item's mean daily
    sales on days in no implausible run) to DATE, COUNTRY, PRODUCT, PRODUCT_DEMAND rows (one row
    per series and day, no gaps)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha is a probability in (0, 1), got {alpha}")
    if max_stockout_days is not None and max_stockout_days < 1:
        raise ValueError(f"max_stockout_days is a number of days >= 1 (or None: no limit), got {max_stockout_days}")
    ordered = zero_runs(frame)
    first = _implausible(ordered, alpha, None).drop("RATE").rename({"_IMPLAUSIBLE": "_FIRST"})
    second = _implausible(first, alpha, "_FIRST").drop("_FIRST")
    gap = pl.col("ZERO_RUN") > max_stockout_days if max_stockout_days is not None else pl.lit(False)
    return second.with_columns(
        (pl.col("_IMPLAUSIBLE") & ~gap).alias("INFERRED_OUT"),
        (pl.col("_IMPLAUSIBLE") & gap).alias("LISTING_GAP"),
    ).drop("_IMPLAUSIBLE")
