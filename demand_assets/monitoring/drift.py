"""Drift statistics: is the data the champion is asked about still like the data it learned from?

- Population stability index (PSI) per feature: the reference sample is cut into deciles (its
  own quantiles), and PSI = sum over bins of (current share - reference share) * ln(current
  share / reference share). Rules of thumb: below 0.1 stable, 0.1-0.25 a moderate shift, above
  0.25 a major one.
- Two-sample Kolmogorov-Smirnov statistic per feature: the largest gap between the two
  empirical distribution functions (0: identical, 1: disjoint). On thousands of rows its
  p-value is tiny for any shift that matters or not, so thresholds are set on the statistic.
- Target: demand pooled over products is a mixture dominated by the differences between
  products, so a plain PSI hardly moves when every product sells 30% less. The target check
  therefore divides each series' demand by its reference mean (PSI of that normalised demand:
  the shape) and compares the mean level of the window with the reference (the level ratio).
- Product mix: PSI over products' shares of total demand (which products sell, not how much).
- Forecast accuracy: WAPE of forecasts against what happened, on in-stock days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from demand_assets.forecasting.metrics import regime_rows, regime_wape
from demand_assets.forecasting.panel import SERIES, TARGET

__all__ = [
    "DriftThresholds",
    "TargetDrift",
    "target_drift",
    "feature_drift",
    "ks_statistic",
    "mix_drift",
    "psi",
    "realised_wape",
]

_EPS = 1e-4  # share floor: an empty bin must not make PSI infinite


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.25  # a feature drifts when its PSI exceeds this ...
    ks: float = 0.2  # ... and its KS statistic exceeds this
    max_drifted_features: int = 0  # the check fails when more features than this drift
    target_psi: float = 0.25
    target_level_change: float = 0.25  # |mean demand / reference mean - 1| above this (in log terms) is target drift
    mix_psi: float = 0.25
    accuracy_ratio: float = 1.3  # realised WAPE / backtest WAPE above this is accuracy drift
    accuracy_bias: float = 0.2  # |realised bias| above this share of demand is accuracy drift


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`, on the reference's quantile bins."""
    ref, cur = _finite(reference), _finite(current)
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    # Right-closed bins; a value equal to an edge falls in the lower bin. Counts-heavy discrete
    # features (many zeros) collapse edges, which np.unique keeps consistent for both samples.
    ref_share = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=edges.size + 1) / ref.size
    cur_share = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=edges.size + 1) / cur.size
    ref_share, cur_share = np.clip(ref_share, _EPS, None), np.clip(cur_share, _EPS, None)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample KS statistic: the largest distance between the two empirical CDFs."""
    ref, cur = np.sort(_finite(reference)), np.sort(_finite(current))
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    grid = np.concatenate([ref, cur])
    cdf_ref = np.searchsorted(ref, grid, side="right") / ref.size
    cdf_cur = np.searchsorted(cur, grid, side="right") / cur.size
    return float(np.max(np.abs(cdf_ref - cdf_cur)))


def feature_drift(reference: pl.DataFrame, current: pl.DataFrame, features: Sequence[str], thresholds: DriftThresholds) -> pl.DataFrame:
    """One row per feature: PSI, KS, both means and whether it drifted; most drifted first."""
    rows = []
    for feature in features:
        ref = reference[feature].cast(pl.Float64).to_numpy()
        cur = current[feature].cast(pl.Float64).to_numpy()
        value_psi, value_ks = psi(ref, cur), ks_statistic(ref, cur)
        rows.append(
            {
                "FEATURE": feature,
                "PSI": value_psi,
                "KS": value_ks,
                "REFERENCE_MEAN": float(np.nanmean(ref)) if np.isfinite(ref).any() else None,
                "CURRENT_MEAN": float(np.nanmean(cur)) if np.isfinite(cur).any() else None,
                "DRIFTED": bool(value_psi > thresholds.psi and value_ks > thresholds.ks),
            }
        )
    schema = {"FEATURE": pl.String, "PSI": pl.Float64, "KS": pl.Float64, "REFERENCE_MEAN": pl.Float64, "CURRENT_MEAN": pl.Float64, "DRIFTED": pl.Boolean}
    return pl.DataFrame(rows, schema=schema).sort("PSI", descending=True, nulls_last=True)


@dataclass(frozen=True)
class TargetDrift:
    psi: float  # PSI of demand / the series' reference mean
    level_ratio: float  # mean demand in the window / mean demand in the reference
    drifted: bool


def target_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    thresholds: DriftThresholds,
    *,
    target: str = TARGET,
    series: Sequence[str] = tuple(SERIES),
) -> TargetDrift:
    """Shape (PSI of series-normalised demand) and level (ratio of means) of the target."""
    levels = reference.group_by(list(series)).agg(pl.col(target).mean().alias("_LEVEL"))

    def normalised(frame: pl.DataFrame) -> np.ndarray:
        # +0.5 keeps series that hardly sold in the reference from exploding.
        joined = frame.join(levels, on=list(series), how="inner")
        return (joined[target] / (joined["_LEVEL"] + 0.5)).to_numpy()

    value_psi = psi(normalised(reference), normalised(current))
    ref_mean, cur_mean = reference[target].mean(), current[target].mean()
    ratio = float(cur_mean / ref_mean) if ref_mean else float("nan")
    level_moved = bool(np.isfinite(ratio) and (ratio <= 0 or abs(np.log(ratio)) > np.log1p(thresholds.target_level_change)))
    return TargetDrift(value_psi, ratio, bool(value_psi > thresholds.target_psi) or level_moved)


def mix_drift(reference: pl.DataFrame, current: pl.DataFrame, *, key: str = "PRODUCT", value: str = TARGET) -> tuple[float, pl.DataFrame]:
    """PSI over `key`'s shares of total `value`; the table lists the largest share moves."""
    shares = (
        reference.group_by(key)
        .agg(pl.col(value).sum().alias("_R"))
        .join(current.group_by(key).agg(pl.col(value).sum().alias("_C")), on=key, how="full", coalesce=True)
        .fill_null(0)
        .with_columns(
            (pl.col("_R") / pl.col("_R").sum()).alias("REFERENCE_SHARE"),
            (pl.col("_C") / pl.col("_C").sum()).alias("CURRENT_SHARE"),
        )
    )
    r = np.clip(shares["REFERENCE_SHARE"].to_numpy(), _EPS, None)
    c = np.clip(shares["CURRENT_SHARE"].to_numpy(), _EPS, None)
    table = (
        shares.select(key, "REFERENCE_SHARE", "CURRENT_SHARE")
        .with_columns((pl.col("CURRENT_SHARE") - pl.col("REFERENCE_SHARE")).alias("SHARE_CHANGE"))
        .sort(pl.col("SHARE_CHANGE").abs(), descending=True)
    )
    return float(np.sum((c - r) * np.log(c / r))), table


def realised_wape(
    forecasts: pl.DataFrame,
    actuals: pl.DataFrame,
    *,
    point: str = "P50",
    target: str = TARGET,
    keys: Sequence[str] = ("DATE", "COUNTRY", "PRODUCT"),
) -> tuple[float, int]:
    """WAPE of the `point` forecast (P50, as in the backtest) on in-stock days that have both a
    forecast and an actual."""
    joined, _ = regime_rows(forecasts.join(actuals.select(*keys, target, "IN_STOCK"), on=list(keys), how="inner"), "in_stock")
    if joined.is_empty():
        return float("nan"), 0
    return regime_wape(joined, "all", actual=target, point=point), joined.height
