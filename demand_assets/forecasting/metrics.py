"""Forecast accuracy metrics, on plain arrays.

Conventions: `actual` and `forecast` are aligned 1-D arrays; bias > 0 means over-forecasting.
Quantile forecasts are scored with the pinball loss; intervals with their empirical coverage.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = ["REGIMES", "Regime", "bias", "interval_coverage", "mase", "pinball_loss", "regime_rows", "regime_wape", "rmse", "seasonal_scale", "wape"]

# The days a forecast is judged on: every day against observed sales; in-stock days only (sales
# are censored on stockout days); every day against uncensored true demand (synthetic sources).
Regime = Literal["all", "in_stock", "true"]
REGIMES: tuple[Regime, ...] = ("all", "in_stock", "true")

Array = npt.ArrayLike


def _pair(actual: Array, forecast: Array) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if a.shape != f.shape:
        raise ValueError(f"actual and forecast differ in shape: {a.shape} vs {f.shape}")
    return a, f


def wape(actual: Array, forecast: Array) -> float:
    """Weighted absolute percentage error: sum |a - f| / sum |a| (retail's headline metric)."""
    a, f = _pair(actual, forecast)
    denom = np.abs(a).sum()
    return float(np.abs(a - f).sum() / denom) if denom > 0 else float("nan")


def rmse(actual: Array, forecast: Array) -> float:
    a, f = _pair(actual, forecast)
    return float(np.sqrt(np.mean((a - f) ** 2))) if a.size else float("nan")


def bias(actual: Array, forecast: Array) -> float:
    """Relative bias sum(f - a) / sum(a): +0.1 is 10% over-forecast."""
    a, f = _pair(actual, forecast)
    denom = a.sum()
    return float((f - a).sum() / denom) if denom > 0 else float("nan")


def seasonal_scale(history: Array, season: int = 7) -> float:
    """In-sample mean absolute error of the seasonal naive forecast: MASE's denominator."""
    h = np.asarray(history, dtype=np.float64)
    h = h[~np.isnan(h)]
    if h.size <= season:
        return float("nan")
    return float(np.mean(np.abs(h[season:] - h[:-season])))


def mase(actual: Array, forecast: Array, scale: Array) -> float:
    """Mean absolute scaled error; `scale` is one value per row (its series' seasonal_scale).

    Rows whose series has no usable scale (too short, or constant) are left out.
    """
    a, f = _pair(actual, forecast)
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), a.shape)
    ok = np.isfinite(s) & (s > 0)
    return float(np.mean(np.abs(a[ok] - f[ok]) / s[ok])) if ok.any() else float("nan")


def pinball_loss(actual: Array, quantile_forecast: Array, q: float) -> float:
    """Mean pinball (quantile) loss of the q-quantile forecast."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    a, f = _pair(actual, quantile_forecast)
    diff = a - f
    return float(np.mean(np.maximum(q * diff, (q - 1.0) * diff))) if a.size else float("nan")


def interval_coverage(actual: Array, lower: Array, upper: Array) -> float:
    """Share of actuals inside [lower, upper]."""
    a, lo = _pair(actual, lower)
    _, hi = _pair(actual, upper)
    return float(np.mean((a >= lo) & (a <= hi))) if a.size else float("nan")


def regime_rows(frame: pl.DataFrame, regime: Regime, *, actual: str = "ACTUAL") -> tuple[pl.DataFrame, str]:
    """The rows of `frame` scored in `regime` and the column holding what they are scored against.

    The one definition of the regimes, used by the backtest, the promotion decision and the
    realised accuracy: `all` keeps every row against `actual`; `in_stock` keeps rows with
    IN_STOCK true; `true` keeps every row against TRUE_DEMAND (or `actual` where a source has
    no truth, so a real source's `true` regime is its `all` regime).
    """
    if regime == "all":
        return frame, actual
    if regime == "in_stock":
        return frame.filter(pl.col("IN_STOCK")), actual
    if regime == "true":
        return frame, "TRUE_DEMAND" if "TRUE_DEMAND" in frame.columns else actual
    raise ValueError(f"unknown regime {regime!r}; choose from {REGIMES}")


def regime_wape(frame: pl.DataFrame, regime: Regime, *, actual: str = "ACTUAL", point: str = "P50") -> float:
    """WAPE of the `point` forecast over the rows of `regime` (see `regime_rows`)."""
    rows, target = regime_rows(frame, regime, actual=actual)
    return wape(rows[target].cast(pl.Float64).to_numpy(), rows[point].to_numpy())
