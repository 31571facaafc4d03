"""Spend ROI: what each day's spend is credited with, in units and money, with bands.

Definitions (per country x channel x day):

* INCREMENTAL_UNITS: the fitted curve's response that day, cap x hill(adstock(spend)): units
  sold because of this and the previous days' spend (carry-over).
* UNIT_REVENUE: the country's revenue per unit sold that day (sum of price x units / units).
* ROI: incremental revenue / spend of the same day (null on days without spend). Carry-over
  makes a single day noisy, so ROI_28D, the trailing 28 days' incremental revenue over their
  spend, is the figure to read.
* MARGINAL_ROI: the revenue one more unit of daily spend would bring once it has run for
  longer than the carry-over, at the day's adstocked spend level (d response / d spend x
  UNIT_REVENUE). Above 1 a channel pays back its next unit of spend; below, it does not.

Bands (P10/P90) are the spread over the bootstrap replicates of the curve.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from demand_assets.marketing.curves import ResponseCurve

__all__ = ["ROI_WINDOW_DAYS", "attribute_spend", "unit_revenue"]

ROI_WINDOW_DAYS = 28


def unit_revenue(product_demand: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """DATE, COUNTRY, UNIT_REVENUE: revenue per unit sold (days without sales: the mean price).
    Takes a lazy frame too, so a long window is aggregated without being loaded."""
    daily = (
        product_demand.lazy()
        .group_by("DATE", "COUNTRY")
        .agg(
            (pl.col("PRICE") * pl.col("PRODUCT_DEMAND")).sum().alias("REVENUE"),
            pl.col("PRODUCT_DEMAND").sum().alias("UNITS"),
            pl.col("PRICE").mean().alias("MEAN_PRICE"),
        )
    )
    return (
        daily.select(
            "DATE",
            "COUNTRY",
            pl.when(pl.col("UNITS") > 0).then(pl.col("REVENUE") / pl.col("UNITS")).otherwise(pl.col("MEAN_PRICE")).alias("UNIT_REVENUE"),
        )
        .sort("COUNTRY", "DATE")
        .collect()
    )


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if values.shape[0] == 0:
        raise ValueError("no bootstrap replicates")
    return np.percentile(values, 10, axis=0), np.percentile(values, 90, axis=0)


def _trailing_sum(x: np.ndarray, window: int) -> np.ndarray:
    c = np.cumsum(np.concatenate([np.zeros(x.shape[:-1] + (1,)), x], axis=-1), axis=-1)
    out = c[..., window:] - c[..., :-window]
    head = c[..., 1:window]
    return np.concatenate([head, out], axis=-1)


def attribute_spend(
    spend: pl.DataFrame,
    curves: dict[tuple[str, str], Sequence[ResponseCurve]],
    revenue_per_unit: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    *,
    roi_window: int = ROI_WINDOW_DAYS,
) -> pl.DataFrame:
    """Attribute [start, end) for every COUNTRY x CHANNEL of `spend` (DATE, COUNTRY, CHANNEL,
    SPEND), which must hold the carry-over and ROI look-back before `start`. `curves` maps a
    key to [point estimate, replicates...]; `revenue_per_unit` is `unit_revenue`'s output."""
    out = []
    revenue = revenue_per_unit.select("DATE", "COUNTRY", "UNIT_REVENUE")
    for (country, channel), series in sorted(spend.partition_by("COUNTRY", "CHANNEL", as_dict=True).items()):
        key = (country, channel)
        if key not in curves:
            raise ValueError(f"no response curve for {country} x {channel}: refit spend_response_model with this channel")
        series = series.sort("DATE").join(revenue, on=["DATE", "COUNTRY"], how="left")
        dates = series["DATE"]
        if dates.n_unique() != series.height or (dates.max() - dates.min()).days + 1 != series.height:
            raise ValueError(f"spend of {country} x {channel} must be one row per day without gaps")
        x = series["SPEND"].to_numpy().astype(np.float64)
        price = series["UNIT_REVENUE"].fill_null(strategy="forward").fill_null(strategy="backward").to_numpy().astype(np.float64)
        point, *draws = curves[key]
        units = np.stack([c.response(x) for c in (point, *draws)])  # (1 + B, T)
        adstocked = point.adstock(x)
        marginal = np.stack([c.marginal(adstocked) for c in (point, *draws)]) * price
        spend_sum = _trailing_sum(x, roi_window)
        roi_window_values = _trailing_sum(units * price, roi_window) / np.where(spend_sum > 0, spend_sum, np.nan)
        keep = ((dates >= start) & (dates < end)).to_numpy()
        units_p10, units_p90 = _band(units[1:] if draws else units)
        roi_p10, roi_p90 = _band(roi_window_values[1:] if draws else roi_window_values)
        m_p10, m_p90 = _band(marginal[1:] if draws else marginal)
        with np.errstate(invalid="ignore", divide="ignore"):
            daily_roi = np.where(x > 0, units[0] * price / np.where(x > 0, x, 1.0), np.nan)
        out.append(
            pl.DataFrame(
                {
                    "DATE": dates.filter(pl.Series(keep)),
                    "COUNTRY": country,
                    "CHANNEL": channel,
                    "SPEND": x[keep],
                    "ADSTOCKED_SPEND": adstocked[keep],
                    "INCREMENTAL_UNITS": units[0][keep],
                    "INCREMENTAL_UNITS_P10": units_p10[keep],
                    "INCREMENTAL_UNITS_P90": units_p90[keep],
                    "UNIT_REVENUE": price[keep],
                    "INCREMENTAL_REVENUE": units[0][keep] * price[keep],
                    "ROI": daily_roi[keep],
                    "ROI_28D": roi_window_values[0][keep],
                    "ROI_28D_P10": roi_p10[keep],
                    "ROI_28D_P90": roi_p90[keep],
                    "MARGINAL_ROI": marginal[0][keep],
                    "MARGINAL_ROI_P10": m_p10[keep],
                    "MARGINAL_ROI_P90": m_p90[keep],
                }
            )
        )
    if not out:
        return pl.DataFrame()
    frame = pl.concat(out).sort("DATE", "COUNTRY", "CHANNEL")
    # NaN (no spend in the window) is stored as null: "not defined", not a number.
    return frame.with_columns(pl.col(c).fill_nan(None) for c in ("ROI", "ROI_28D", "ROI_28D_P10", "ROI_28D_P90"))
