"""The value of being in stock: what each country x product would sell, over a forecast's
horizon, if it never ran out (the "value of being in stock").

Status quo: the series runs out of stock as it has been doing. Its stockouts are a two-state
Markov chain fitted to the recent history: an in-stock day starts an episode with probability
`start_rate` (per series, shrunk towards the country's rate: a Beta prior worth `prior_days`
in-stock days), and an episode continues with probability 1 - 1 / mean episode length (pooled
per country). On a stockout day the shelf still sells part of the day's demand before it runs
empty; the share lost, `loss_fraction`, is estimated per country from history as one minus the
sales on stockout days over the series' in-stock mean on those days.

Counterfactual: always in stock, so every unit demanded is sold.

Extra units over the horizon = sum over days of demand x out-of-stock x loss_fraction, by Monte
Carlo: demand drawn from the forecast's quantile function (linear through P10/P50/P90, floored
at zero), stockout paths from the chain (starting from the series' state on the as-of day),
start rates from their Beta posterior. Value = extra units x price x margin rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from demand_assets.forecasting.panel import SERIES
from demand_assets.impact.forecast_cost import quantile_at

__all__ = ["InstockSettings", "instock_value", "stockout_profile"]


@dataclass(frozen=True)
class InstockSettings:
    n_samples: int = 500
    prior_days: float = 60.0  # strength of the country-level prior on a series' start rate, in days
    seed: int = 0
    chunk_series: int = 2_000  # series simulated at once (bounds memory at M5 scale)

    def __post_init__(self) -> None:
        if self.n_samples < 10 or self.prior_days <= 0 or self.chunk_series < 1:
            raise ValueError("n_samples >= 10, prior_days > 0 and chunk_series >= 1 are required")


def stockout_profile(history: pl.DataFrame, settings: InstockSettings = InstockSettings()) -> pl.DataFrame:
    """Per series from DATE, COUNTRY, PRODUCT, PRODUCT_DEMAND, IN_STOCK: IN_DAYS, OUT_DAYS,
    EPISODES, the Beta posterior of the episode start rate (ALPHA, BETA), the country's
    MEAN_EPISODE_DAYS and LOSS_FRACTION, and OUT_NOW (out of stock on the newest day)."""
    h = (
        history.sort(*SERIES, "DATE")
        .with_columns(
            (~pl.col("IN_STOCK")).alias("OUT"),
            pl.col("PRODUCT_DEMAND").filter(pl.col("IN_STOCK")).mean().over(SERIES).alias("INSTOCK_MEAN"),
        )
        .with_columns(
            (pl.col("OUT") & ~pl.col("OUT").shift(1, fill_value=False).over(SERIES)).alias("STARTS"),
        )
    )
    series = h.group_by(SERIES).agg(
        pl.col("IN_STOCK").sum().cast(pl.Float64).alias("IN_DAYS"),
        pl.col("OUT").sum().cast(pl.Float64).alias("OUT_DAYS"),
        pl.col("STARTS").sum().cast(pl.Float64).alias("EPISODES"),
        pl.col("OUT").last().alias("OUT_NOW"),
    )
    out_days = h.filter(pl.col("OUT") & pl.col("INSTOCK_MEAN").is_not_null())
    country = (
        series.group_by("COUNTRY")
        .agg(
            (pl.col("EPISODES").sum() / pl.col("IN_DAYS").sum().clip(lower_bound=1.0)).alias("COUNTRY_START_RATE"),
            (pl.col("OUT_DAYS").sum() / pl.col("EPISODES").sum().clip(lower_bound=1.0)).clip(lower_bound=1.0).alias("MEAN_EPISODE_DAYS"),
        )
        .join(
            out_days.group_by("COUNTRY").agg(
                (1.0 - pl.col("PRODUCT_DEMAND").sum() / pl.col("INSTOCK_MEAN").sum().clip(lower_bound=1e-9)).clip(0.0, 1.0).alias("LOSS_FRACTION")
            ),
            on="COUNTRY",
            how="left",
        )
        .with_columns(pl.col("LOSS_FRACTION").fill_null(1.0))
    )
    prior = settings.prior_days
    return (
        series.join(country, on="COUNTRY")
        .with_columns(
            (prior * pl.col("COUNTRY_START_RATE") + pl.col("EPISODES")).clip(lower_bound=1e-3).alias("ALPHA"),
            (prior * (1 - pl.col("COUNTRY_START_RATE")) + pl.col("IN_DAYS") - pl.col("EPISODES")).clip(lower_bound=1e-3).alias("BETA"),
        )
        .sort(SERIES)
    )


def instock_value(
    forecast: pl.DataFrame, profile: pl.DataFrame, prices: pl.DataFrame, margin_rate: float, settings: InstockSettings = InstockSettings()
) -> pl.DataFrame:
    """Per COUNTRY x PRODUCT: expected extra units, revenue and margin over the forecast's
    horizon if the series never ran out, with P10/P50/P90. `forecast` has COUNTRY, PRODUCT,
    HORIZON_DAY, P10, P50, P90 (one as-of day); `prices` has COUNTRY, PRODUCT, PRICE."""
    if not 0 < margin_rate <= 1:
        raise ValueError(f"margin_rate must lie in (0, 1], got {margin_rate}")
    missing = forecast.select(SERIES).unique().join(profile.select(SERIES), on=SERIES, how="anti")
    if missing.height:
        raise ValueError(f"no stock history for {missing.height} forecast series, e.g. {missing.head(3).to_dicts()}")
    wide = forecast.sort(*SERIES, "HORIZON_DAY")
    horizon = int(wide["HORIZON_DAY"].n_unique())
    keys = wide.select(SERIES).unique(maintain_order=True).join(profile, on=SERIES, how="left").join(prices, on=SERIES, how="left")
    if keys["PRICE"].null_count():
        raise ValueError(f"no price for {keys['PRICE'].null_count()} series")
    q = {c: wide[c].to_numpy().reshape(-1, horizon) for c in ("P10", "P50", "P90")}
    rng = np.random.default_rng(settings.seed)
    n = settings.n_samples
    rows = []
    for lo in range(0, keys.height, settings.chunk_series):
        part = keys.slice(lo, settings.chunk_series)
        s = part.height
        sl = slice(lo, lo + s)
        demand = quantile_at(rng.random((s, n, horizon)), q["P10"][sl, None, :], q["P50"][sl, None, :], q["P90"][sl, None, :])
        start = rng.beta(part["ALPHA"].to_numpy()[:, None], part["BETA"].to_numpy()[:, None], size=(s, n))
        stay = (1.0 - 1.0 / part["MEAN_EPISODE_DAYS"].to_numpy())[:, None]
        state = np.broadcast_to(part["OUT_NOW"].to_numpy()[:, None], (s, n)).copy()
        lost = np.zeros((s, n))
        for day in range(horizon):
            u = rng.random((s, n))
            state = np.where(state, u < stay, u < start)
            lost += np.where(state, demand[:, :, day], 0.0)
        lost *= part["LOSS_FRACTION"].to_numpy()[:, None]
        price = part["PRICE"].to_numpy()[:, None]
        p10, p50, p90 = np.percentile(lost, [10, 50, 90], axis=1)
        rows.append(
            pl.DataFrame(
                {
                    "COUNTRY": part["COUNTRY"],
                    "PRODUCT": part["PRODUCT"],
                    "STOCKOUT_START_RATE": part["ALPHA"].to_numpy() / (part["ALPHA"].to_numpy() + part["BETA"].to_numpy()),
                    "MEAN_EPISODE_DAYS": part["MEAN_EPISODE_DAYS"],
                    "LOSS_FRACTION": part["LOSS_FRACTION"],
                    "OUT_NOW": part["OUT_NOW"],
                    "FORECAST_UNITS": q["P50"][sl].sum(axis=1),
                    "EXTRA_UNITS": lost.mean(axis=1),
                    "EXTRA_UNITS_P10": p10,
                    "EXTRA_UNITS_P50": p50,
                    "EXTRA_UNITS_P90": p90,
                    "EXTRA_REVENUE": (lost * price).mean(axis=1),
                    "EXTRA_MARGIN": (lost * price).mean(axis=1) * margin_rate,
                    "EXTRA_MARGIN_P10": p10 * price[:, 0] * margin_rate,
                    "EXTRA_MARGIN_P90": p90 * price[:, 0] * margin_rate,
                }
            )
        )
    return pl.concat(rows).with_columns(pl.lit(horizon).alias("HORIZON_DAYS")).sort("EXTRA_MARGIN", descending=True).with_row_index("RANK", offset=1)
