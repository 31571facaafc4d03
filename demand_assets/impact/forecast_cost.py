"""The money cost of forecast error, and the quantile that minimises it (the newsvendor).

Stocking to a forecast F when demand turns out to be D costs

    over-forecast  (F > D): (F - D) x over_cost    (holding, markdown, waste per unit)
    under-forecast (F < D): (D - F) x under_cost   (lost margin per unit)

Expected cost is minimised by stocking the critical-ratio quantile of the demand
distribution, tau* = under_cost / (under_cost + over_cost), not by its median. Costs are
shares of each day's price by default (a unit's margin and holding cost scale with what it
sells for), overridable per category or product.

The P10/P50/P90 forecasts are interpolated linearly in tau to tau* (and extrapolated from the
nearest segment beyond them, floored at zero): the quantile a model's own band implies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = ["UnitEconomics", "critical_ratio", "error_cost", "forecast_error_cost", "price_forecasts", "quantile_at", "unit_costs"]


@dataclass(frozen=True)
class UnitEconomics:
    margin_rate: float = 0.35  # lost margin per unit short, as a share of price
    holding_rate: float = 0.10  # holding, markdown and waste per unit over, as a share of price

    def __post_init__(self) -> None:
        if not (0 < self.margin_rate and 0 < self.holding_rate):
            raise ValueError(f"margin_rate and holding_rate must be > 0, got {self.margin_rate}, {self.holding_rate}")


def critical_ratio(under_cost, over_cost):
    """tau* = cu / (cu + co): the service level that minimises expected cost."""
    return under_cost / (under_cost + over_cost)


def error_cost(forecast, actual, under_cost, over_cost):
    """Per-row money cost of stocking `forecast` against `actual` (numpy or polars expressions)."""
    if isinstance(forecast, pl.Expr):
        diff = forecast - actual
        return pl.when(diff > 0).then(diff * over_cost).otherwise(-diff * under_cost)
    diff = np.asarray(forecast, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return np.where(diff > 0, diff * over_cost, -diff * under_cost)


def quantile_at(tau, p10, p50, p90):
    """Piecewise-linear quantile through (0.1, P10), (0.5, P50), (0.9, P90), extrapolated from
    the nearest segment and floored at 0: polars expressions or numpy arrays (for sampling)."""
    low = p10 + (tau - 0.1) * (p50 - p10) / 0.4
    high = p50 + (tau - 0.5) * (p90 - p50) / 0.4
    if isinstance(tau, pl.Expr):
        return pl.when(tau <= 0.5).then(low).otherwise(high).clip(lower_bound=0.0)
    return np.maximum(np.where(tau <= 0.5, low, high), 0.0)


def unit_costs(frame: pl.DataFrame, economics: UnitEconomics, overrides: pl.DataFrame | None = None) -> pl.DataFrame:
    """Adds UNDER_COST and OVER_COST per row from PRICE, with optional overrides: a frame keyed
    by PRODUCT or CATEGORY with MARGIN_RATE and/or HOLDING_RATE (product rows win)."""
    out = frame.with_columns(pl.lit(economics.margin_rate).alias("MARGIN_RATE"), pl.lit(economics.holding_rate).alias("HOLDING_RATE"))
    if overrides is not None and overrides.height:
        for key in ("CATEGORY", "PRODUCT"):  # product overrides applied last, so they win
            if key not in overrides.columns or key not in out.columns:
                continue
            rows = overrides.filter(pl.col(key).is_not_null())
            for rate in ("MARGIN_RATE", "HOLDING_RATE"):
                if rate not in rows.columns:
                    continue
                table = rows.select(key, pl.col(rate).alias(f"_{rate}")).drop_nulls()
                if table.filter(pl.col(f"_{rate}") <= 0).height:
                    bad = table.filter(pl.col(f"_{rate}") <= 0).head(5).to_dicts()
                    raise ValueError(f"rule 'rates > 0' on column {rate}: offending override rows {bad}")
                out = out.join(table, on=key, how="left").with_columns(pl.coalesce(f"_{rate}", rate).alias(rate)).drop(f"_{rate}")
    return out.with_columns(
        (pl.col("MARGIN_RATE") * pl.col("PRICE")).alias("UNDER_COST"),
        (pl.col("HOLDING_RATE") * pl.col("PRICE")).alias("OVER_COST"),
    )


def forecast_error_cost(forecasts: pl.DataFrame, economics: UnitEconomics, overrides: pl.DataFrame | None = None) -> pl.DataFrame:
    """Money cost per MODEL and REGIME of the backtest's forecasts (MODEL, DATE, COUNTRY,
    PRODUCT, MEAN, P10, P50, P90, ACTUAL, IN_STOCK, PRICE, optional TRUE_DEMAND, CATEGORY).

    Regimes: `in_stock` (observed sales on in-stock days: what a business can measure) and,
    when TRUE_DEMAND is present, `true_demand` (every day, against real demand).
    COST_P50 stocks the median, COST_MEAN the mean, COST_CRITICAL the critical-ratio
    quantile; SAVING = COST_P50 - COST_CRITICAL."""
    required = {"MODEL", "MEAN", "P10", "P50", "P90", "ACTUAL", "IN_STOCK", "PRICE"}
    missing = required - set(forecasts.columns)
    if missing:
        raise ValueError(f"forecasts lack column(s) {sorted(missing)}")
    priced = unit_costs(forecasts, economics, overrides)
    priced = priced.with_columns(critical_ratio(pl.col("UNDER_COST"), pl.col("OVER_COST")).alias("TAU"))
    priced = priced.with_columns(quantile_at(pl.col("TAU"), pl.col("P10"), pl.col("P50"), pl.col("P90")).alias("Q_CRITICAL"))
    regimes = {"in_stock": (pl.col("IN_STOCK"), pl.col("ACTUAL"))}
    if "TRUE_DEMAND" in priced.columns:
        regimes["true_demand"] = (pl.lit(True), pl.col("TRUE_DEMAND"))
    tables = []
    for regime, (keep, actual) in regimes.items():
        part = priced.filter(keep)
        tables.append(
            part.group_by("MODEL").agg(
                pl.lit(regime).alias("REGIME"),
                pl.len().alias("ROWS"),
                (actual * pl.col("PRICE")).sum().alias("REVENUE"),
                error_cost(pl.col("P50"), actual, pl.col("UNDER_COST"), pl.col("OVER_COST")).sum().alias("COST_P50"),
                error_cost(pl.col("MEAN"), actual, pl.col("UNDER_COST"), pl.col("OVER_COST")).sum().alias("COST_MEAN"),
                error_cost(pl.col("Q_CRITICAL"), actual, pl.col("UNDER_COST"), pl.col("OVER_COST")).sum().alias("COST_CRITICAL"),
                ((pl.col("P50") > actual) * (pl.col("P50") - actual) * pl.col("OVER_COST")).sum().alias("OVER_COST_P50"),
                ((pl.col("P50") < actual) * (actual - pl.col("P50")) * pl.col("UNDER_COST")).sum().alias("UNDER_COST_P50"),
                pl.col("TAU").mean().alias("CRITICAL_RATIO"),
            )
        )
    table = pl.concat(tables).with_columns(
        (pl.col("COST_P50") - pl.col("COST_CRITICAL")).alias("SAVING"),
        ((pl.col("COST_P50") - pl.col("COST_CRITICAL")) / pl.col("COST_P50")).alias("SAVING_SHARE"),
        (pl.col("COST_CRITICAL") / pl.col("REVENUE")).alias("COST_SHARE_OF_REVENUE"),
    )
    return table.select(
        "MODEL",
        "REGIME",
        "ROWS",
        "CRITICAL_RATIO",
        "COST_P50",
        "COST_MEAN",
        "COST_CRITICAL",
        "SAVING",
        "SAVING_SHARE",
        "OVER_COST_P50",
        "UNDER_COST_P50",
        "REVENUE",
        "COST_SHARE_OF_REVENUE",
    ).sort("REGIME", "COST_CRITICAL")


def price_forecasts(forecasts: pl.DataFrame, prices: pl.DataFrame) -> pl.DataFrame:
    """`forecasts` (DATE, COUNTRY, PRODUCT, ...) with each day's PRICE (and CATEGORY) from
    `prices`; refuses, naming the rows, forecasts of a day and series that has no price."""
    priced = forecasts.join(prices, on=["DATE", "COUNTRY", "PRODUCT"], how="left")
    unpriced = priced.filter(pl.col("PRICE").is_null())
    if unpriced.height:
        raise ValueError(
            f"rule 'every forecast has a price' on column PRICE: {unpriced.height} backtest row(s) have no training_dataset row, "
            f"e.g. {unpriced.select('DATE', 'COUNTRY', 'PRODUCT').head(5).to_dicts()}"
        )
    return priced
