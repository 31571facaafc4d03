"""What the fitted response curves say: ROI with its band, marginal ROI at current spend, the
recovery error against a generator's truth, and the curve panels a chart draws."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from demand_assets.marketing.curves import ResponseCurve
from demand_assets.marketing.roi import ROI_WINDOW_DAYS, attribute_spend

__all__ = ["CURVE_COLUMNS", "Curves", "curve_panels", "curve_summary", "current_operating_points", "recovery_against_truth"]

# (COUNTRY, CHANNEL) -> the point estimate (draw 0) followed by the bootstrap replicates.
Curves = Mapping[tuple[str, str], Sequence[ResponseCurve]]
CURVE_COLUMNS = ["DECAY", "MAX_LAG", "HALF_SATURATION", "SLOPE", "CAP"]


def curve_summary(spend: pl.DataFrame, curves: Curves, revenue: pl.DataFrame, fit_start: dt.date, end: dt.date) -> pl.DataFrame:
    """Per country x channel over [fit_start, end): ROI with its P10-P90 band, the mean daily
    spend and unit revenue of the last 28 days, the marginal ROI at that spend, total spend and
    credited incremental units, and the point curve's parameters.

    `spend`: DATE, COUNTRY, CHANNEL, SPEND (with the adstock warm-up before fit_start);
    `revenue`: DATE, COUNTRY, UNIT_REVENUE (`roi.unit_revenue`).
    """
    attributed = attribute_spend(spend, curves, revenue, fit_start, end, roi_window=(end - fit_start).days)
    last = attributed.filter(pl.col("DATE") == attributed["DATE"].max())
    recent = attributed.filter(pl.col("DATE") > end - dt.timedelta(days=ROI_WINDOW_DAYS + 1))
    current = recent.group_by("COUNTRY", "CHANNEL").agg(pl.col("SPEND").mean().alias("CURRENT_DAILY_SPEND"), pl.col("UNIT_REVENUE").mean())
    summary = last.select(
        "COUNTRY", "CHANNEL", pl.col("ROI_28D").alias("ROI"), pl.col("ROI_28D_P10").alias("ROI_P10"), pl.col("ROI_28D_P90").alias("ROI_P90")
    ).join(current, on=["COUNTRY", "CHANNEL"])
    totals = attributed.group_by("COUNTRY", "CHANNEL").agg(pl.col("SPEND").sum().alias("SPEND"), pl.col("INCREMENTAL_UNITS").sum().alias("INCREMENTAL_UNITS"))
    rows = []
    for row in summary.join(totals, on=["COUNTRY", "CHANNEL"]).iter_rows(named=True):
        point = curves[(row["COUNTRY"], row["CHANNEL"])][0]
        rows.append(
            row
            | {
                "MARGINAL_ROI": float(point.marginal(row["CURRENT_DAILY_SPEND"]) * row["UNIT_REVENUE"]),
                "DECAY": point.decay,
                "MAX_LAG": point.max_lag,
                "HALF_SATURATION": point.half_saturation,
                "SLOPE": point.slope,
                "CAP": point.cap,
            }
        )
    return pl.DataFrame(rows).sort("COUNTRY", "CHANNEL")


def recovery_against_truth(summary: pl.DataFrame, truth: pl.DataFrame, spend: pl.DataFrame, revenue: pl.DataFrame) -> pl.DataFrame | None:
    """Fitted ROI and parameters against a generator's truth (`channel_response_truth` rows of
    the fit window): TRUE_ROI, ROI_ERROR (relative) and whether the true ROI lies in the band.
    None when there is no truth to compare with (real sources)."""
    if truth.is_empty():
        return None
    joined = truth.join(spend.select("DATE", "COUNTRY", "CHANNEL", "SPEND"), on=["DATE", "COUNTRY", "CHANNEL"]).join(
        revenue, on=["DATE", "COUNTRY"], how="left"
    )
    true = joined.group_by("COUNTRY", "CHANNEL").agg(
        ((pl.col("TRUE_RESPONSE") * pl.col("UNIT_REVENUE")).sum() / pl.col("SPEND").sum()).alias("TRUE_ROI"),
        pl.col("TRUE_DECAY").first(),
        pl.col("TRUE_MAX_LAG").first(),
        pl.col("TRUE_HALF_SATURATION").first(),
        pl.col("TRUE_HILL_SLOPE").first(),
        pl.col("TRUE_RESPONSE_CAP").mean(),
    )
    return (
        summary.select("COUNTRY", "CHANNEL", "ROI", "ROI_P10", "ROI_P90", *CURVE_COLUMNS)
        .join(true, on=["COUNTRY", "CHANNEL"])
        .with_columns(
            (pl.col("ROI") / pl.col("TRUE_ROI") - 1).alias("ROI_ERROR"),
            ((pl.col("ROI_P10") <= pl.col("TRUE_ROI")) & (pl.col("TRUE_ROI") <= pl.col("ROI_P90"))).alias("TRUE_ROI_IN_BAND"),
        )
        .sort("COUNTRY", "CHANNEL")
    )


def curve_panels(curves: Curves, current: pl.DataFrame, points: int = 60) -> list[dict]:
    """One chart panel per channel: per country, steady-state revenue against daily spend from 0
    to 3x the current spend (P50 = the point curve, P10/P90 over the bootstrap replicates) and
    the current operating point. `current`: COUNTRY, CHANNEL, CURRENT_DAILY_SPEND, UNIT_REVENUE."""
    panels = []
    for channel in current["CHANNEL"].unique(maintain_order=True).to_list():
        lines = []
        for row in current.filter(pl.col("CHANNEL") == channel).iter_rows(named=True):
            draws = curves[(row["COUNTRY"], channel)]
            grid = np.linspace(0.0, max(3.0 * row["CURRENT_DAILY_SPEND"], 1e-6), points)
            values = np.stack([c.steady_state(grid) for c in draws]) * row["UNIT_REVENUE"]
            band = values[1:] if len(draws) > 1 else values
            lines.append(
                {
                    "label": row["COUNTRY"],
                    "spend": grid,
                    "p50": values[0],
                    "p10": np.percentile(band, 10, axis=0),
                    "p90": np.percentile(band, 90, axis=0),
                    "current_spend": row["CURRENT_DAILY_SPEND"],
                    "current_value": float(draws[0].steady_state(row["CURRENT_DAILY_SPEND"]) * row["UNIT_REVENUE"]),
                }
            )
        panels.append({"channel": channel, "lines": lines})
    return panels


def current_operating_points(attributed: pl.DataFrame) -> pl.DataFrame:
    """COUNTRY, CHANNEL, CURRENT_DAILY_SPEND, UNIT_REVENUE: the means of the last 28 days of
    `attribute_spend`'s output, where the curve panels mark the current spend."""
    newest = attributed["DATE"].max()
    return (
        attributed.filter(pl.col("DATE") > newest - dt.timedelta(days=ROI_WINDOW_DAYS))
        .group_by("COUNTRY", "CHANNEL")
        .agg(pl.col("SPEND").mean().alias("CURRENT_DAILY_SPEND"), pl.col("UNIT_REVENUE").mean())
        .sort("COUNTRY", "CHANNEL")
    )
