"""Geometric adstock and Hill saturation, the standard media-mix response model.

`adstock_geometric` spreads each day's spend over the following `max_lag` days with weights
decaying by `decay` per day (normalised to sum to one, so adstock stays in spend units and the
saturation's half-saturation point keeps its meaning); `hill_saturation` turns that carried-over
spend into a fraction of the channel's maximum response.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["adstock_weights", "adstock_geometric", "hill_saturation"]

FloatArray = npt.NDArray[np.float64]


def adstock_weights(decay: float, max_lag: int, *, normalize: bool = True) -> FloatArray:
    """Weights w_0..w_L with w_l proportional to decay**l (summing to one when normalised)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"adstock decay must lie in [0, 1), got {decay}")
    if max_lag < 0:
        raise ValueError(f"adstock max_lag must be >= 0, got {max_lag}")
    weights = decay ** np.arange(max_lag + 1, dtype=np.float64)
    return weights / weights.sum() if normalize else weights


def adstock_geometric(
    spend: npt.ArrayLike,
    decay: float | npt.ArrayLike,
    max_lag: int | npt.ArrayLike,
    *,
    normalize: bool = True,
) -> FloatArray:
    """Carry-over of spend along axis 0 (time).

    `spend` is (T,) or (T, N); `decay` and `max_lag` are scalars or one value per column.
    Out[t] = sum_{l=0..max_lag} w_l * spend[t - l]; days before the first row count as zero
    spend, so callers that need exact values feed `max_lag` days of history first.
    """
    x = np.asarray(spend, dtype=np.float64)
    squeeze = x.ndim == 1
    if squeeze:
        x = x[:, None]
    n_cols = x.shape[1]
    decays = np.broadcast_to(np.asarray(decay, dtype=np.float64), (n_cols,))
    lags = np.broadcast_to(np.asarray(max_lag, dtype=np.int64), (n_cols,))
    out = np.zeros_like(x)
    for col in range(n_cols):
        w = adstock_weights(float(decays[col]), int(lags[col]), normalize=normalize)
        for lag, weight in enumerate(w):
            if lag == 0:
                out[:, col] += weight * x[:, col]
            elif lag < x.shape[0]:
                out[lag:, col] += weight * x[:-lag, col]
    return out[:, 0] if squeeze else out


def hill_saturation(x: npt.ArrayLike, half_saturation: float | npt.ArrayLike, slope: float | npt.ArrayLike) -> FloatArray:
    """x**s / (x**s + K**s): 0 at no spend, 0.5 at K, approaching 1 with diminishing returns."""
    x_arr = np.asarray(x, dtype=np.float64)
    k = np.asarray(half_saturation, dtype=np.float64)
    s = np.asarray(slope, dtype=np.float64)
    if np.any(k <= 0):
        raise ValueError("hill half_saturation must be > 0")
    if np.any(s <= 0):
        raise ValueError("hill slope must be > 0")
    if np.any(x_arr < 0):
        raise ValueError("hill saturation is defined for non-negative input only")
    xs = np.power(x_arr, s)
    return xs / (xs + np.power(k, s))
