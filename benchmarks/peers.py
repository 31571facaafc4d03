"""Peers benchmark: the open-source forecasters a user would otherwise pick, on our folds.

Same default synthetic world (3 countries x 50 products, 5 channels, 2023-2024) and the same
rolling-origin folds as benchmarks/forecasting.py, scored by the same `score_forecasts` (same
MASE scales), against observed sales (`all`, `in_stock`) and true uncensored demand (`true`).
The peers, used as their documentation suggests, with no censoring handling:

- statsforecast_autoets: statsforecast `AutoETS(season_length=7)` per series on the last
  `--ets-history-days` days before the origin (like our ETS); p10/p90 = its 80% interval.
- mlforecast_lightgbm: mlforecast + `LGBMRegressor` (Tweedie, 300 trees), lags 1/7/14/28,
  rolling means 7/28 of lag 1, calendar date features, the known-in-advance covariates (price,
  promotion, holiday, planned spend) as dynamic exogenous features, recursive multi-step,
  trained on every day (stockouts included); p10/p90 = conformal 80% interval (2 windows of h).

Reads our models' metrics from benchmarks/results/forecasting.json (same label) for the WAPE
ratios, and writes benchmarks/results/peers.json.

    python -m benchmarks.peers                         # 4 folds of 28 days, as forecasting.py
    python -m benchmarks.peers --folds 2 --horizon 14 --label quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import polars as pl

from benchmarks.forecasting import build_panel
from demand_assets.forecasting.backtest import Fold, _series_scales, rolling_origin_folds, score_forecasts
from demand_assets.forecasting.models.base import quantile_frame
from demand_assets.forecasting.panel import KEYS, SERIES, TARGET, future_frame
from demand_assets.sources.synthetic import SyntheticConfig

RESULTS = Path(__file__).parent / "results" / "peers.json"
OURS = Path(__file__).parent / "results" / "forecasting.json"
LEVEL = 80  # p10 / p90
ETS_PEER, MLF_PEER = "statsforecast_autoets", "mlforecast_lightgbm"
REGIMES = ("true", "all")

log = logging.getLogger("benchmarks.peers")


# ----------------------------------------------------------------------------- data plumbing
def _uid() -> pl.Expr:
    return pl.concat_str(pl.col("COUNTRY"), pl.lit("|"), pl.col("PRODUCT")).alias("unique_id")


def _long(frame: pl.DataFrame, columns: Sequence[str], *, target: bool) -> pd.DataFrame:
    """Our panel rows as Nixtla's long format: unique_id, ds (datetime), [y], covariates."""
    cols = [_uid(), pl.col("DATE").alias("ds")]
    if target:
        cols.append(pl.col(TARGET).cast(pl.Float64).alias("y"))
    # Booleans (PROMO, IS_HOLIDAY) as 0/1 floats: LightGBM wants numbers.
    cols += [pl.col(c).cast(pl.Float64) for c in columns]
    out = frame.select(cols).sort("unique_id", "ds").to_pandas()
    out["ds"] = pd.to_datetime(out["ds"])
    return out


def _to_ours(forecast: pd.DataFrame, future: pl.DataFrame, point: str, lo: str, hi: str) -> pl.DataFrame:
    """A Nixtla forecast (unique_id, ds, point, lo, hi) as our forecast frame, one row per
    row of `future`, clipped at zero; MEAN = P50 = the point forecast."""
    fc = (
        pl.from_pandas(forecast[["unique_id", "ds", point, lo, hi]])
        .select(
            pl.col("unique_id").str.split_exact("|", 1).struct.rename_fields(SERIES).alias("_k"),
            pl.col("ds").cast(pl.Date).alias("DATE"),
            pl.col(point).alias("_P"),
            pl.col(lo).alias("_LO"),
            pl.col(hi).alias("_HI"),
        )
        .unnest("_k")
    )
    out = future.select(KEYS).join(fc, on=KEYS, how="left")
    missing = out["_P"].null_count()
    if missing:
        raise RuntimeError(f"{missing} future rows have no forecast: date or key misalignment")
    p = out["_P"].to_numpy()
    return quantile_frame(out, p, out["_LO"].to_numpy(), p, out["_HI"].to_numpy())


def _known_in_advance(dataset: pl.DataFrame, spend_lags: bool) -> list[str]:
    """Planned / calendared covariates that `future_frame` keeps for every future day."""
    spend = [c for c in dataset.columns if c.startswith("SPEND_") and (spend_lags or "_LAG_" not in c)]
    return ["PRICE", "PROMO", "IS_HOLIDAY", *spend]


# ------------------------------------------------------------------------------------- peers
def autoets_peer(train: pl.DataFrame, future: pl.DataFrame, horizon: int, *, history_days: int, n_jobs: int) -> tuple[pl.DataFrame, float, float]:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    origin: dt.date = train["DATE"].max()
    recent = train.filter(pl.col("DATE") > origin - dt.timedelta(days=history_days))
    df = _long(recent, [], target=True)
    sf = StatsForecast(models=[AutoETS(season_length=7)], freq="D", n_jobs=n_jobs)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sf.fit(df)
        t1 = time.perf_counter()
        fc = sf.predict(h=horizon, level=[LEVEL])
    t2 = time.perf_counter()
    return _to_ours(fc, future, "AutoETS", f"AutoETS-lo-{LEVEL}", f"AutoETS-hi-{LEVEL}"), t1 - t0, t2 - t1


def mlforecast_peer(
    train: pl.DataFrame, future: pl.DataFrame, horizon: int, *, exog: list[str], rounds: int, threads: int, seed: int, windows: int
) -> tuple[pl.DataFrame, float, float]:
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean
    from mlforecast.utils import PredictionIntervals

    model = lgb.LGBMRegressor(objective="tweedie", n_estimators=rounds, learning_rate=0.05, num_leaves=31, verbosity=-1, n_jobs=threads, random_state=seed)
    mlf = MLForecast(
        models={"lgbm": model},
        freq="D",
        lags=[1, 7, 14, 28],
        lag_transforms={1: [RollingMean(window_size=7), RollingMean(window_size=28)]},
        date_features=["dayofweek", "month", "dayofyear"],
    )
    df = _long(train, exog, target=True)
    x_future = _long(future, exog, target=False)
    t0 = time.perf_counter()
    # static_features=[]: every covariate is dynamic (known per day, read from X_df at predict).
    mlf.fit(df, static_features=[], prediction_intervals=PredictionIntervals(n_windows=windows, h=horizon))
    t1 = time.perf_counter()
    fc = mlf.predict(h=horizon, X_df=x_future, level=[LEVEL])
    t2 = time.perf_counter()
    return _to_ours(fc, future, "lgbm", f"lgbm-lo-{LEVEL}", f"lgbm-hi-{LEVEL}"), t1 - t0, t2 - t1


# ---------------------------------------------------------------------------------- backtest
def backtest_peers(dataset: pl.DataFrame, truth: pl.DataFrame, folds: Sequence[Fold], args: argparse.Namespace) -> tuple[pl.DataFrame, pl.DataFrame]:
    exog = _known_in_advance(dataset, spend_lags=not args.no_spend_lags)
    peers = {
        ETS_PEER: lambda tr, fu, h: autoets_peer(tr, fu, h, history_days=args.ets_history_days, n_jobs=args.n_jobs),
        MLF_PEER: lambda tr, fu, h: mlforecast_peer(
            tr, fu, h, exog=exog, rounds=args.lgbm_rounds, threads=args.threads, seed=args.seed, windows=args.conformal_windows
        ),
    }
    frames, timings = [], []
    for fold in folds:
        train = dataset.filter(pl.col("DATE") <= fold.origin)
        future = future_frame(dataset, fold.origin, fold.horizon)
        actual = dataset.filter(pl.col("DATE").is_between(fold.test_start, fold.test_end, closed="left")).select(
            *KEYS, pl.col(TARGET).alias("ACTUAL"), "IN_STOCK"
        )
        for name in args.peers:
            forecast, fit_s, predict_s = peers[name](train, future, fold.horizon)
            log.info("peers %s fold %d/%d (origin %s): fit %.1fs, predict %.1fs", name, fold.index + 1, len(folds), fold.origin, fit_s, predict_s)
            timings.append({"MODEL": name, "FOLD": fold.index, "FIT_SECONDS": fit_s, "PREDICT_SECONDS": predict_s})
            frames.append(forecast.join(actual, on=KEYS, how="inner").with_columns(pl.lit(name).alias("MODEL"), pl.lit(fold.index).alias("FOLD")))
    forecasts = pl.concat(frames, how="diagonal_relaxed").join(truth.select(*KEYS, "TRUE_DEMAND"), on=KEYS, how="left")
    if forecasts["TRUE_DEMAND"].null_count():
        raise RuntimeError("forecast rows without true demand: key misalignment")
    return score_forecasts(forecasts, _series_scales(dataset, folds)), pl.DataFrame(timings)


def ratios(peer_wape: dict, label: str) -> dict:
    """WAPE of our models over the peers' (< 1: ours is better), from forecasting.json."""
    if not OURS.exists():
        return {"note": f"{OURS.name} not found: run python -m benchmarks.forecasting first"}
    ours_all = json.loads(OURS.read_text())
    if label not in ours_all:
        return {"note": f"label {label!r} not in {OURS.name}"}
    ours = {(m["MODEL"], m["REGIME"]): m["WAPE"] for m in ours_all[label]["metrics"]}
    pairs = [("lightgbm", MLF_PEER), ("ets", ETS_PEER), ("hybrid", MLF_PEER), ("hybrid", ETS_PEER)]
    out: dict = {"ours_measured_at": ours_all[label].get("measured_at")}
    for regime in REGIMES:
        for a, b in pairs:
            if (a, regime) in ours and (b, regime) in peer_wape:
                out[f"{a} / {b} (WAPE, {regime})"] = round(ours[(a, regime)] / peer_wape[(b, regime)], 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--label", default="default", help="result key; also the label read from forecasting.json")
    parser.add_argument("--peers", nargs="*", default=[ETS_PEER, MLF_PEER], choices=[ETS_PEER, MLF_PEER])
    parser.add_argument("--ets-history-days", type=int, default=365, help="AutoETS history per series (our ETS uses 365)")
    parser.add_argument("--lgbm-rounds", type=int, default=300)
    parser.add_argument("--no-spend-lags", action="store_true", help="leave SPEND_*_LAG_7 out of the mlforecast covariates")
    parser.add_argument("--n-jobs", type=int, default=1, help="statsforecast processes")
    parser.add_argument("--threads", type=int, default=1, help="LightGBM threads (OpenMP threads on a busy 2-core machine are much slower than 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--conformal-windows",
        type=int,
        default=5,
        help="mlforecast conformal calibration windows (each one more fit; with 2, p10/p90 come from 2 errors per step and cover ~2/3)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    t0 = time.perf_counter()
    dataset, truth = build_panel(SyntheticConfig())
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=args.folds, horizon=args.horizon)
    metrics, timings = backtest_peers(dataset, truth, folds, args)
    metrics = metrics.filter(pl.col("FOLD") == -1)
    peer_wape = {(r["MODEL"], r["REGIME"]): r["WAPE"] for r in metrics.iter_rows(named=True)}
    ratio = ratios(peer_wape, args.label)
    config = {
        "synthetic": "3 countries x 50 products, 5 channels, 2023-01-01..2024-12-31",
        "folds": args.folds,
        "horizon": args.horizon,
        "peers": args.peers,
        "interval_level": LEVEL,
        ETS_PEER: {"model": "AutoETS(season_length=7)", "history_days": args.ets_history_days, "n_jobs": args.n_jobs},
        MLF_PEER: {
            "model": f"LGBMRegressor(objective=tweedie, n_estimators={args.lgbm_rounds}, learning_rate=0.05, num_leaves=31)",
            "lags": [1, 7, 14, 28],
            "lag_transforms": "RollingMean 7, 28 of lag 1",
            "date_features": ["dayofweek", "month", "dayofyear"],
            "exogenous": _known_in_advance(dataset, spend_lags=not args.no_spend_lags),
            "intervals": f"conformal_distribution, n_windows={args.conformal_windows}, h=horizon",
            "threads": args.threads,
            "seed": args.seed,
        },
        "versions": _versions(),
    }
    out = {
        "label": args.label,
        "config": config,
        "metrics": metrics.select("MODEL", "REGIME", "WAPE", "RMSE", "MASE", "BIAS", "PINBALL_P50", "COVERAGE_P10_P90").sort("REGIME", "WAPE").to_dicts(),
        "timings_seconds": timings.group_by("MODEL")
        .agg(
            pl.col("FIT_SECONDS").mean().round(2),
            pl.col("PREDICT_SECONDS").mean().round(2),
            (pl.col("FIT_SECONDS") + pl.col("PREDICT_SECONDS")).mean().round(2).alias("TOTAL_SECONDS"),
        )
        .sort("MODEL")
        .to_dicts(),
        "timings_per_fold_seconds": timings.with_columns(pl.col("FIT_SECONDS", "PREDICT_SECONDS").round(2)).sort("MODEL", "FOLD").to_dicts(),
        "ratios": ratio,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.label] = out
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    with pl.Config(tbl_rows=40, tbl_cols=10, tbl_width_chars=200):
        print(metrics.select("MODEL", "REGIME", "WAPE", "RMSE", "MASE", "BIAS", "COVERAGE_P10_P90").sort("REGIME", "WAPE"))
        print(pl.DataFrame(out["timings_seconds"]))
    print(json.dumps(ratio, indent=1))
    print(f"wrote {RESULTS}")


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("statsforecast", "mlforecast", "lightgbm")}


if __name__ == "__main__":
    main()
