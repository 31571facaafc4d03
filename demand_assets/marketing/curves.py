"""Fitting spend response curves: geometric adstock and Hill saturation, with bootstrap bands.

Per country x channel, the measured response (CHANNEL_RESPONSE: attributed incremental units)
is modelled as

    response_t = cap * hill(adstock(spend)_t; half_saturation, slope) + error_t

by non-linear least squares (scipy `least_squares`, bounded trust region), once per candidate
maximum lag, keeping the lag with the smallest error. Uncertainty comes from a block wild
bootstrap of the residuals (each day keeps its own residual, so heteroscedastic measurement
error keeps its shape; signs flip per block, so autocorrelated errors stay together), each
replicate refitted from the point estimate: the spread of the replicates' parameters,
contributions and ROI is the band reported downstream.

Parameters are weakly identified when spend never leaves a narrow range (cap and
half-saturation trade off); the response at the spend levels actually observed, hence ROI,
is well identified, which is why the benchmark reports both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy.optimize import least_squares

from demand_assets.marketing.response import adstock_geometric, hill_saturation

__all__ = [
    "CURVE_COLUMNS",
    "CurveFitSettings",
    "ResponseCurve",
    "curves_from_frame",
    "curves_to_frame",
    "fit_channel_curves",
    "fit_response_curve",
]

FloatArray = npt.NDArray[np.float64]
CURVE_COLUMNS = ("DECAY", "MAX_LAG", "HALF_SATURATION", "SLOPE", "CAP")


@dataclass(frozen=True)
class ResponseCurve:
    """Expected incremental units per day as a function of the daily spend history."""

    decay: float
    max_lag: int
    half_saturation: float
    slope: float
    cap: float

    def adstock(self, spend: npt.ArrayLike) -> FloatArray:
        return adstock_geometric(spend, self.decay, self.max_lag)

    def response(self, spend: npt.ArrayLike) -> FloatArray:
        """Units per day for a spend history (days before the first row count as no spend)."""
        return self.saturation(self.adstock(spend))

    def saturation(self, adstocked: npt.ArrayLike) -> FloatArray:
        return self.cap * hill_saturation(np.maximum(np.asarray(adstocked, dtype=np.float64), 0.0), self.half_saturation, self.slope)

    def steady_state(self, daily_spend: npt.ArrayLike) -> FloatArray:
        """Units per day once a constant daily spend has run for longer than the carry-over
        (adstock weights sum to one, so adstock equals the daily spend)."""
        return self.saturation(daily_spend)

    def marginal(self, daily_spend: npt.ArrayLike) -> FloatArray:
        """d(units per day) / d(daily spend) at a steady daily spend: the marginal response."""
        x = np.maximum(np.asarray(daily_spend, dtype=np.float64), 1e-12)
        k, s = self.half_saturation, self.slope
        ratio = (x / k) ** s
        return self.cap * s * ratio / (x * (1.0 + ratio) ** 2)


@dataclass(frozen=True)
class CurveFitSettings:
    max_lags: tuple[int, ...] = (3, 7, 14, 21)  # candidate carry-over lengths, days
    n_bootstrap: int = 100
    block_days: int = 14  # bootstrap block: a fortnight of residuals shares one sign
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.max_lags or min(self.max_lags) < 0:
            raise ValueError(f"max_lags must be non-empty and >= 0, got {self.max_lags}")
        if self.n_bootstrap < 0 or self.block_days < 1:
            raise ValueError("n_bootstrap must be >= 0 and block_days >= 1")


@dataclass(frozen=True)
class CurveFit:
    curve: ResponseCurve
    draws: tuple[ResponseCurve, ...]  # bootstrap replicates
    rmse: float
    r2: float
    n_days: int


def _scales(spend: FloatArray, response: FloatArray, warmup: int) -> tuple[float, float]:
    """Units the optimiser works in: half-saturation relative to mean spend, cap to peak response."""
    return max(float(np.mean(spend[warmup:])), 1e-9), max(float(np.max(response)), 1e-9)


def _least_squares(spend: FloatArray, response: FloatArray, warmup: int, max_lag: int, start: FloatArray | None) -> tuple[ResponseCurve, float]:
    """One fit at a fixed maximum lag; parameters (decay, log half-saturation, slope, cap)."""
    scale, r_scale = _scales(spend, response, warmup)

    def predict(p: FloatArray) -> FloatArray:
        ad = adstock_geometric(spend, p[0], max_lag)[warmup:]
        return p[3] * r_scale * hill_saturation(np.maximum(ad, 0.0), scale * np.exp(p[1]), p[2])

    def residuals(p: FloatArray) -> FloatArray:
        return (predict(p) - response) / r_scale

    lower = np.array([0.0, np.log(0.02), 0.3, 0.0])
    upper = np.array([0.95, np.log(50.0), 6.0, 50.0])
    starts = [start] if start is not None else [np.array([d, 0.0, 1.5, 1.0]) for d in (0.2, 0.5, 0.8)]
    best = None
    for x0 in starts:
        fit = least_squares(residuals, np.clip(x0, lower + 1e-9, upper - 1e-9), bounds=(lower, upper), method="trf", x_scale="jac", max_nfev=400)
        if best is None or fit.cost < best.cost:
            best = fit
    p = best.x
    curve = ResponseCurve(decay=float(p[0]), max_lag=max_lag, half_saturation=float(scale * np.exp(p[1])), slope=float(p[2]), cap=float(p[3] * r_scale))
    return curve, float(best.cost)


def _params(curve: ResponseCurve, spend: FloatArray, response: FloatArray, warmup: int) -> FloatArray:
    scale, r_scale = _scales(spend, response, warmup)
    return np.array([curve.decay, np.log(curve.half_saturation / scale), curve.slope, curve.cap / r_scale])


def fit_response_curve(spend: npt.ArrayLike, response: npt.ArrayLike, *, warmup: int, settings: CurveFitSettings = CurveFitSettings()) -> CurveFit:
    """Fit one channel's curve. `spend` carries `warmup` days of history before the days of
    `response` (at least the largest candidate lag, so carry-over is exact on the first day)."""
    x = np.asarray(spend, dtype=np.float64)
    y = np.asarray(response, dtype=np.float64)
    if x.shape[0] != y.shape[0] + warmup:
        raise ValueError(f"spend needs {warmup} warm-up days before the {y.shape[0]} response days, got {x.shape[0]} days")
    if np.any(x < 0) or np.any(y < 0):
        raise ValueError("spend and response must be non-negative")
    if y.shape[0] < 60:
        raise ValueError(f"a response curve needs at least 60 days, got {y.shape[0]}")
    lags = [lag for lag in settings.max_lags if lag <= warmup] or [min(settings.max_lags)]
    if float(np.sum(x[warmup:])) <= 0 or float(np.max(y)) <= 0:
        flat = ResponseCurve(0.0, lags[0], 1.0, 1.0, 0.0)
        return CurveFit(flat, (flat,) * settings.n_bootstrap, float(np.sqrt(np.mean(y**2))), 0.0, y.shape[0])
    curve, cost = min((_least_squares(x, y, warmup, lag, None) for lag in lags), key=lambda fit: fit[1])
    fitted = curve.response(x)[warmup:]
    resid = y - fitted
    rmse = float(np.sqrt(np.mean(resid**2)))
    r2 = float(1.0 - np.sum(resid**2) / max(np.sum((y - y.mean()) ** 2), 1e-12))

    # Block wild bootstrap: each replicate keeps every day's residual in place (so the error's
    # size follows the response, as multiplicative measurement error does) and flips its sign
    # per block of `block_days` (so runs of correlated error stay together). Unbiased: the sign
    # is +1 or -1 with equal odds, so replicates scatter around the fit rather than drift.
    rng = np.random.default_rng(settings.seed)
    n, block = y.shape[0], min(settings.block_days, y.shape[0])
    start_params = _params(curve, x, y, warmup)
    draws = []
    for _ in range(settings.n_bootstrap):
        signs = np.repeat(rng.choice([-1.0, 1.0], size=-(-n // block)), block)[:n]
        replicate = np.maximum(fitted + signs * resid, 0.0)
        draw, _ = _least_squares(x, replicate, warmup, curve.max_lag, start_params)
        draws.append(draw)
    return CurveFit(curve, tuple(draws), rmse, r2, n)


def fit_channel_curves(spend_response: pl.DataFrame, fit_start, *, settings: CurveFitSettings = CurveFitSettings(), progress=None) -> pl.DataFrame:
    """Fit every COUNTRY x CHANNEL of a channel_spend_response frame whose days from
    `fit_start` on are fitted (earlier rows are warm-up for carry-over). Returns one row per
    COUNTRY, CHANNEL, DRAW (0: the point estimate, 1..B: bootstrap replicates) with the curve
    parameters and the fit's RMSE, R2 and days."""
    rows = []
    groups = sorted(spend_response.partition_by("COUNTRY", "CHANNEL", as_dict=True).items())
    for i, ((country, channel), series) in enumerate(groups, start=1):
        series = series.sort("DATE")
        warmup = int((series["DATE"] < fit_start).sum())
        fit = fit_response_curve(series["SPEND"].to_numpy(), series["CHANNEL_RESPONSE"].to_numpy()[warmup:], warmup=warmup, settings=settings)
        for draw, curve in enumerate((fit.curve, *fit.draws)):
            rows.append({"COUNTRY": country, "CHANNEL": channel, "DRAW": draw, **_curve_row(curve), "RMSE": fit.rmse, "R2": fit.r2, "N_DAYS": fit.n_days})
        if progress is not None:
            progress(i, len(groups), country, channel, fit)
    return pl.DataFrame(rows, schema_overrides={"MAX_LAG": pl.Int64, "DRAW": pl.Int64, "N_DAYS": pl.Int64})


def _curve_row(curve: ResponseCurve) -> dict:
    values = asdict(curve)
    return {
        "DECAY": values["decay"],
        "MAX_LAG": values["max_lag"],
        "HALF_SATURATION": values["half_saturation"],
        "SLOPE": values["slope"],
        "CAP": values["cap"],
    }


def curves_to_frame(curves: dict[tuple[str, str], Sequence[ResponseCurve]]) -> pl.DataFrame:
    rows = [{"COUNTRY": c, "CHANNEL": k, "DRAW": d, **_curve_row(curve)} for (c, k), draws in curves.items() for d, curve in enumerate(draws)]
    return pl.DataFrame(rows, schema_overrides={"MAX_LAG": pl.Int64, "DRAW": pl.Int64})


def curves_from_frame(frame: pl.DataFrame) -> dict[tuple[str, str], list[ResponseCurve]]:
    """(COUNTRY, CHANNEL) -> [point estimate, replicate 1, ...] from a response_curves table."""
    out: dict[tuple[str, str], list[ResponseCurve]] = {}
    for row in frame.sort("COUNTRY", "CHANNEL", "DRAW").iter_rows(named=True):
        out.setdefault((row["COUNTRY"], row["CHANNEL"]), []).append(
            ResponseCurve(row["DECAY"], int(row["MAX_LAG"]), row["HALF_SATURATION"], row["SLOPE"], row["CAP"])
        )
    return out
