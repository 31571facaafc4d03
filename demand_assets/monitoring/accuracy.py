"""Realised accuracy: how the forecast made H days before each day did, once its whole horizon
has happened, against the backtest WAPE of the model that made it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from demand_assets.forecasting.metrics import bias, interval_coverage, regime_rows
from demand_assets.forecasting.panel import KEYS, TARGET
from demand_assets.monitoring.drift import realised_wape

__all__ = ["ACCURACY_SCHEMA", "PooledAccuracy", "pooled_accuracy", "score_realised"]

ACCURACY_SCHEMA = {
    "DATE": pl.Date,
    "ORIGIN": pl.Date,
    "MODEL": pl.String,
    "MODEL_VERSION": pl.String,
    "ROWS": pl.Int64,
    "WAPE": pl.Float64,
    "BIAS": pl.Float64,
    "COVERAGE_P10_P90": pl.Float64,
    "BACKTEST_WAPE": pl.Float64,
    "WAPE_RATIO": pl.Float64,
}


def score_realised(
    forecasts: pl.DataFrame, actuals: pl.DataFrame, backtest_wape: Mapping[str, float], start: dt.date, end: dt.date, horizon: int
) -> pl.DataFrame:
    """One row per day D of [start, end): the forecast made as of D - horizon (its days
    D - horizon + 1 .. D), scored on in-stock days: WAPE of P50, bias of MEAN, P10-P90
    coverage, and the ratio to the backtest WAPE of its model. A day whose forecast was never
    made gets ROWS = 0 and nulls.

    `forecasts`: demand_forecast rows (DATE = origin, TARGET_DATE, HORIZON_DAY, quantiles,
    MODEL, MODEL_VERSION); `actuals`: DATE, COUNTRY, PRODUCT, PRODUCT_DEMAND, IN_STOCK.
    """
    out = []
    for i in range((end - start).days):
        day = start + dt.timedelta(days=i)
        origin = day - dt.timedelta(days=horizon)
        made = forecasts.filter((pl.col("DATE") == origin) & (pl.col("HORIZON_DAY") <= horizon)) if not forecasts.is_empty() else forecasts
        row: dict[str, object] = {
            "DATE": day,
            "ORIGIN": origin,
            "MODEL": None,
            "MODEL_VERSION": None,
            "ROWS": 0,
            "WAPE": None,
            "BIAS": None,
            "COVERAGE_P10_P90": None,
            "BACKTEST_WAPE": None,
            "WAPE_RATIO": None,
        }
        if not made.is_empty():
            scored = made.select(pl.col("TARGET_DATE").alias("DATE"), "COUNTRY", "PRODUCT", "MEAN", "P10", "P50", "P90", "MODEL", "MODEL_VERSION")
            wape, n = realised_wape(scored, actuals)
            joined, _ = regime_rows(scored.join(actuals, on=KEYS), "in_stock")
            model = scored["MODEL"][0]
            reference = backtest_wape.get(model)
            row |= {
                "MODEL": model,
                "MODEL_VERSION": str(scored["MODEL_VERSION"][0]),
                "ROWS": n,
                "WAPE": wape,
                "BIAS": bias(joined[TARGET].to_numpy(), joined["MEAN"].to_numpy()) if n else None,
                "COVERAGE_P10_P90": interval_coverage(joined[TARGET].to_numpy(), joined["P10"].to_numpy(), joined["P90"].to_numpy()) if n else None,
                "BACKTEST_WAPE": reference,
                "WAPE_RATIO": wape / reference if reference and n else None,
            }
        out.append(row)
    return pl.DataFrame(out, schema=ACCURACY_SCHEMA)


@dataclass(frozen=True)
class PooledAccuracy:
    realised_wape: float
    backtest_wape: float
    realised_bias: float
    scored_days: int

    @property
    def ratio(self) -> float:
        return self.realised_wape / self.backtest_wape


def pooled_accuracy(scores: pl.DataFrame) -> PooledAccuracy | None:
    """The window's accuracy pooled over its scored days (weighted by rows), or None when no day
    was scored or no backtest WAPE exists to compare with."""
    scored = scores.filter(pl.col("ROWS") > 0)
    if scored.is_empty() or scored["BACKTEST_WAPE"].is_null().all():
        return None
    # The weighted mean of daily WAPEs is the window's WAPE only approximately; days have
    # similar volumes, and each day's WAPE is itself a 28-day WAPE.
    weight = scored["ROWS"].sum()
    return PooledAccuracy(
        realised_wape=float((scored["WAPE"] * scored["ROWS"]).sum() / weight),
        backtest_wape=float((scored["BACKTEST_WAPE"] * scored["ROWS"]).sum() / weight),
        realised_bias=float((scored["BIAS"] * scored["ROWS"]).sum() / weight),
        scored_days=scored.height,
    )
