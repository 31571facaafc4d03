"""Closed loop: a spend plan becomes a demand forecast, and stock decides what it is credited.

1. Business as usual (BAU) is the plan the champion's forecast already assumed: last week's spend
   repeated (the same default plan `demand_forecast` uses for days not yet stored).
2. A scenario changes the daily spend of some channels (absolute, or a multiple of BAU). The
   fitted response curves, fed the stored spend history and then each plan, give the incremental
   units per country and day under both; the difference, DELTA, is what the scenario adds (or
   removes), with its spread over the curves' bootstrap replicates.
3. DELTA is spread over products by their share of the country's forecast that day (media lifts
   the country's demand, products split it) and added to the forecast: MEAN + DELTA, and each
   quantile shifted by the matching quantile of DELTA (a comonotone sum: a conservative band).
4. With stock (units available per country x product over the horizon), Monte Carlo draws of
   horizon demand under both plans, with common random numbers, are capped at the stock: only
   units that could be sold are credited. Spend that pushes demand past the shelf earns nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from demand_assets.forecasting.panel import SERIES
from demand_assets.impact.forecast_cost import quantile_at
from demand_assets.marketing.curves import ResponseCurve

__all__ = ["ScenarioSummary", "bau_spend_plan", "media_delta", "scenario_forecast", "scenario_spend_plan", "summarise_scenario"]


def bau_spend_plan(spend: pl.DataFrame, as_of: dt.date, horizon: int) -> pl.DataFrame:
    """DATE, COUNTRY, CHANNEL, SPEND for the `horizon` days after `as_of`: the last stored week
    repeated by weekday."""
    week = spend.filter((pl.col("DATE") > as_of - dt.timedelta(days=7)) & (pl.col("DATE") <= as_of))
    if week["DATE"].n_unique() < 7:
        raise ValueError(f"a business-as-usual plan needs the 7 days of spend up to {as_of}; found {week['DATE'].n_unique()}")
    days = pl.DataFrame({"DATE": [as_of + dt.timedelta(days=h) for h in range(1, horizon + 1)]})
    return (
        days.with_columns((pl.col("DATE") - pl.duration(days=7 * ((pl.col("DATE") - pl.lit(as_of)).dt.total_days() - 1).floordiv(7) + 7)).alias("SOURCE"))
        .join(week.rename({"DATE": "SOURCE"}).select("SOURCE", "COUNTRY", "CHANNEL", "SPEND"), on="SOURCE")
        .drop("SOURCE")
        .sort("DATE", "COUNTRY", "CHANNEL")
    )


def scenario_spend_plan(
    bau: pl.DataFrame, daily_spend: dict[str, float] | None = None, multipliers: dict[str, float] | None = None, per_key: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The scenario's plan: BAU with some channels replaced. `daily_spend`: CHANNEL -> spend per
    country and day; `multipliers`: CHANNEL -> factor on BAU; `per_key`: COUNTRY, CHANNEL,
    DAILY_SPEND (e.g. the budget allocation), applied last."""
    known = set(bau["CHANNEL"].unique().to_list())
    for name, mapping in (("daily spend", daily_spend or {}), ("multipliers", multipliers or {})):
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"rule 'known channels' in scenario {name}: {unknown} not among {sorted(known)}")
        bad = {k: v for k, v in mapping.items() if v < 0}
        if bad:
            raise ValueError(f"rule 'spend >= 0' in scenario {name}: {bad}")
    plan = bau
    for channel, value in (daily_spend or {}).items():
        plan = plan.with_columns(pl.when(pl.col("CHANNEL") == channel).then(pl.lit(float(value))).otherwise(pl.col("SPEND")).alias("SPEND"))
    for channel, factor in (multipliers or {}).items():
        plan = plan.with_columns(pl.when(pl.col("CHANNEL") == channel).then(pl.col("SPEND") * factor).otherwise(pl.col("SPEND")).alias("SPEND"))
    if per_key is not None:
        plan = (
            plan.join(per_key.select("COUNTRY", "CHANNEL", "DAILY_SPEND"), on=["COUNTRY", "CHANNEL"], how="left")
            .with_columns(pl.coalesce("DAILY_SPEND", "SPEND").alias("SPEND"))
            .drop("DAILY_SPEND")
        )
    return plan


def media_delta(curves: dict[tuple[str, str], Sequence[ResponseCurve]], history: pl.DataFrame, bau: pl.DataFrame, plan: pl.DataFrame) -> pl.DataFrame:
    """Per DATE x COUNTRY of the plan: incremental units of `plan` minus those of `bau` (DELTA,
    from the point curves) and its P10/P50/P90 over the bootstrap replicates (summed over
    channels replicate by replicate)."""
    frames = []
    countries = sorted(plan["COUNTRY"].unique().to_list())
    for country in countries:
        total = None
        for channel in sorted(plan.filter(pl.col("COUNTRY") == country)["CHANNEL"].unique().to_list()):
            if (country, channel) not in curves:
                raise ValueError(f"no response curve for {country} x {channel}: refit spend_response_model")
            draws = curves[(country, channel)]
            past = history.filter((pl.col("COUNTRY") == country) & (pl.col("CHANNEL") == channel)).sort("DATE")["SPEND"].to_numpy()
            b = bau.filter((pl.col("COUNTRY") == country) & (pl.col("CHANNEL") == channel)).sort("DATE")["SPEND"].to_numpy()
            p = plan.filter((pl.col("COUNTRY") == country) & (pl.col("CHANNEL") == channel)).sort("DATE")["SPEND"].to_numpy()
            n = len(b)
            diff = np.stack([c.response(np.concatenate([past, p]))[-n:] - c.response(np.concatenate([past, b]))[-n:] for c in draws])
            total = diff if total is None else total + diff
        dates = plan.filter(pl.col("COUNTRY") == country)["DATE"].unique().sort()
        spread = total[1:] if total.shape[0] > 1 else total
        frames.append(
            pl.DataFrame(
                {
                    "DATE": dates,
                    "COUNTRY": country,
                    "DELTA": total[0],
                    "DELTA_P10": np.percentile(spread, 10, axis=0),
                    "DELTA_P50": np.percentile(spread, 50, axis=0),
                    "DELTA_P90": np.percentile(spread, 90, axis=0),
                    "_DRAWS": [row for row in spread.T],
                }
            )
        )
    return pl.concat(frames)


def scenario_forecast(
    forecast: pl.DataFrame, delta: pl.DataFrame, stock: pl.DataFrame | None = None, *, n_samples: int = 500, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(daily, per_series). `forecast`: one as-of day of demand_forecast (COUNTRY, PRODUCT,
    TARGET_DATE, MEAN, P10, P50, P90). `stock`: COUNTRY, PRODUCT, STOCK_UNITS for the horizon
    (None: unlimited). daily: the BAU and scenario MEAN/P10/P50/P90 per series and day.
    per_series: horizon totals, the incremental units, the units credited under the stock,
    and the probability of running out under each plan."""
    f = forecast.sort(*SERIES, "TARGET_DATE").with_columns(
        (pl.col("MEAN") / pl.col("MEAN").sum().over("COUNTRY", "TARGET_DATE").clip(lower_bound=1e-9)).alias("SHARE")
    )
    d = delta.rename({"DATE": "TARGET_DATE"})
    daily = f.join(d.drop("_DRAWS"), on=["COUNTRY", "TARGET_DATE"], how="left").with_columns(
        pl.col(c).fill_null(0.0) for c in ("DELTA", "DELTA_P10", "DELTA_P50", "DELTA_P90")
    )
    daily = daily.with_columns(
        (pl.col("MEAN") + pl.col("DELTA") * pl.col("SHARE")).clip(lower_bound=0.0).alias("SCENARIO_MEAN"),
        *((pl.col(q) + pl.col(f"DELTA_{q}") * pl.col("SHARE")).clip(lower_bound=0.0).alias(f"SCENARIO_{q}") for q in ("P10", "P50", "P90")),
    )
    horizon = int(daily["TARGET_DATE"].n_unique())
    keys = daily.select(SERIES).unique(maintain_order=True)
    if stock is not None:
        keys = keys.join(stock.select(*SERIES, "STOCK_UNITS"), on=SERIES, how="left")
        if keys["STOCK_UNITS"].null_count():
            raise ValueError(f"no stock for {keys['STOCK_UNITS'].null_count()} series, e.g. {keys.filter(pl.col('STOCK_UNITS').is_null()).head(3).to_dicts()}")
    s = keys.height
    grid = {c: daily[c].to_numpy().reshape(s, horizon) for c in ("P10", "P50", "P90", "SHARE")}
    # Per sample: one bootstrap replicate of the media curves for all of a country's days.
    draws_by_country: dict[str, np.ndarray] = {}
    for country in dict.fromkeys(keys["COUNTRY"].to_list()):
        rows = d.filter(pl.col("COUNTRY") == country).sort("TARGET_DATE")
        draws_by_country[country] = np.stack(rows["_DRAWS"].to_list()) if rows.height else np.zeros((horizon, 1))  # (H, B)
    rng = np.random.default_rng(seed)
    u = rng.random((s, n_samples, horizon))
    bau = quantile_at(u, grid["P10"][:, None, :], grid["P50"][:, None, :], grid["P90"][:, None, :])
    lift = np.zeros_like(bau)
    countries = keys["COUNTRY"].to_list()
    for country in set(countries):
        idx = np.array([i for i, c in enumerate(countries) if c == country])
        draws = draws_by_country[country]  # (H, B)
        pick = rng.integers(0, draws.shape[1], size=n_samples)
        lift[idx] = draws[:, pick].T[None, :, :] * grid["SHARE"][idx][:, None, :]
    scen = np.maximum(bau + lift, 0.0)
    bau_total, scen_total = bau.sum(axis=2), scen.sum(axis=2)
    out = keys.with_columns(
        pl.Series("BAU_UNITS", bau_total.mean(axis=1)),
        pl.Series("SCENARIO_UNITS", scen_total.mean(axis=1)),
        pl.Series("SCENARIO_UNITS_P10", np.percentile(scen_total, 10, axis=1)),
        pl.Series("SCENARIO_UNITS_P90", np.percentile(scen_total, 90, axis=1)),
        pl.Series("INCREMENTAL_UNITS", (scen_total - bau_total).mean(axis=1)),
    )
    if stock is not None:
        cap = keys["STOCK_UNITS"].to_numpy()[:, None]
        credited = np.minimum(scen_total, cap) - np.minimum(bau_total, cap)
        out = out.with_columns(
            pl.Series("CREDITED_INCREMENTAL_UNITS", credited.mean(axis=1)),
            pl.Series("STOCKOUT_PROBABILITY_BAU", (bau_total > cap).mean(axis=1)),
            pl.Series("STOCKOUT_PROBABILITY_SCENARIO", (scen_total > cap).mean(axis=1)),
        )
    else:
        out = out.with_columns(
            pl.col("INCREMENTAL_UNITS").alias("CREDITED_INCREMENTAL_UNITS"),
            pl.lit(0.0).alias("STOCKOUT_PROBABILITY_BAU"),
            pl.lit(0.0).alias("STOCKOUT_PROBABILITY_SCENARIO"),
        )
    daily = daily.select(
        "COUNTRY",
        "PRODUCT",
        "TARGET_DATE",
        pl.col("MEAN").alias("BAU_MEAN"),
        pl.col("P10").alias("BAU_P10"),
        pl.col("P50").alias("BAU_P50"),
        pl.col("P90").alias("BAU_P90"),
        "SCENARIO_MEAN",
        "SCENARIO_P10",
        "SCENARIO_P50",
        "SCENARIO_P90",
        (pl.col("DELTA") * pl.col("SHARE")).alias("MEDIA_DELTA"),
    )
    return daily, out


@dataclass(frozen=True)
class ScenarioSummary:
    series: pl.DataFrame  # per country x product, with INCREMENTAL_REVENUE and CREDITED_INCREMENTAL_REVENUE
    spend_change: pl.DataFrame  # per country x channel: BAU_SPEND, SCENARIO_SPEND over the horizon
    by_country: pl.DataFrame  # units, revenue, stockout probability, spend and credited revenue per extra spend
    totals: pl.DataFrame  # per day: total BAU and scenario MEAN and P50


def summarise_scenario(plan: pl.DataFrame, bau: pl.DataFrame, daily: pl.DataFrame, series: pl.DataFrame, prices: pl.DataFrame) -> ScenarioSummary:
    """What a scenario changes, in money and spend: `series` (from `scenario_forecast`) priced
    with `prices` (COUNTRY, PRODUCT, PRICE), the spend plan against business as usual per
    country x channel, and both rolled up per country and per day."""
    series = series.join(prices, on=SERIES, how="left").with_columns(
        (pl.col("INCREMENTAL_UNITS") * pl.col("PRICE")).alias("INCREMENTAL_REVENUE"),
        (pl.col("CREDITED_INCREMENTAL_UNITS") * pl.col("PRICE")).alias("CREDITED_INCREMENTAL_REVENUE"),
    )
    spend_change = (
        plan.join(bau.rename({"SPEND": "BAU_SPEND"}), on=["DATE", "COUNTRY", "CHANNEL"])
        .group_by("COUNTRY", "CHANNEL")
        .agg(pl.col("BAU_SPEND").sum(), pl.col("SPEND").sum().alias("SCENARIO_SPEND"))
        .sort("COUNTRY", "CHANNEL")
    )
    by_country = (
        series.group_by("COUNTRY")
        .agg(
            pl.col("BAU_UNITS").sum(),
            pl.col("SCENARIO_UNITS").sum(),
            pl.col("INCREMENTAL_UNITS").sum(),
            pl.col("CREDITED_INCREMENTAL_UNITS").sum(),
            pl.col("INCREMENTAL_REVENUE").sum(),
            pl.col("CREDITED_INCREMENTAL_REVENUE").sum(),
            pl.col("STOCKOUT_PROBABILITY_SCENARIO").mean().alias("MEAN_STOCKOUT_PROBABILITY"),
        )
        .join(spend_change.group_by("COUNTRY").agg(pl.col("BAU_SPEND").sum(), pl.col("SCENARIO_SPEND").sum()), on="COUNTRY")
        .with_columns((pl.col("CREDITED_INCREMENTAL_REVENUE") / (pl.col("SCENARIO_SPEND") - pl.col("BAU_SPEND"))).alias("CREDITED_REVENUE_PER_EXTRA_SPEND"))
        .sort("COUNTRY")
    )
    totals = (
        daily.group_by("TARGET_DATE")
        .agg(pl.col("BAU_MEAN").sum(), pl.col("SCENARIO_MEAN").sum(), pl.col("BAU_P50").sum(), pl.col("SCENARIO_P50").sum())
        .rename({"TARGET_DATE": "DATE"})
        .sort("DATE")
    )
    return ScenarioSummary(series, spend_change, by_country, totals)
