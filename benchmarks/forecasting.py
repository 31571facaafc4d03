"""Forecasting benchmark: every model's backtest on the default synthetic world, with the oracle.

The default configuration of `make demo` (3 countries x 50 products, 5 channels, 2023-2024),
built in memory exactly as the pipeline builds it; every model backtested on the same
rolling-origin folds; the oracle (the generator's expected demand) scored as the noise floor
no model can beat. Writes benchmarks/results/forecasting.json.

    python -m benchmarks.forecasting                   # the asset defaults (4 folds, 10 DeepAR epochs)
    python -m benchmarks.forecasting --folds 2 --deepar-epochs 4
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import time
from pathlib import Path

import polars as pl

from demand_assets.features import build_training_dataset
from demand_assets.forecasting.backtest import rolling_origin_folds, run_backtest, score_forecasts
from demand_assets.forecasting.suite import ALL_MODELS, UNCENSORED_SUFFIX, SuiteSettings, model_factories
from demand_assets.impact.forecast_cost import UnitEconomics, forecast_error_cost
from demand_assets.impact.instock import instock_value, stockout_profile
from demand_assets.sources import Domain
from demand_assets.sources.synthetic import SyntheticConfig, SyntheticDemandSource

RESULTS = Path(__file__).parent / "results" / "forecasting.json"
START, END = dt.date(2023, 1, 1), dt.date(2025, 1, 1)


def build_panel(cfg: SyntheticConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    src = SyntheticDemandSource(cfg)

    def read(domain: Domain) -> pl.DataFrame:
        return pl.concat(list(src.read(domain, START, END)))

    dataset = build_training_dataset(
        read(Domain.PRODUCT_DEMAND), read(Domain.COUNTRY_DEMAND), read(Domain.CHANNEL_SPEND_RESPONSE), src.catalog().products, START, END
    )
    return dataset, read(Domain.PRODUCT_DEMAND_TRUTH)


def oracle_rows(dataset: pl.DataFrame, truth: pl.DataFrame, folds) -> pl.DataFrame:
    """The generator's expected demand as the forecast (point only: quantile metrics are NaN)."""
    frames = []
    for fold in folds:
        window = dataset.filter(pl.col("DATE").is_between(fold.test_start, fold.test_end, closed="left"))
        frames.append(
            window.select("DATE", "COUNTRY", "PRODUCT", pl.col("PRODUCT_DEMAND").alias("ACTUAL"), "IN_STOCK")
            .join(truth.select("DATE", "COUNTRY", "PRODUCT", "EXPECTED_DEMAND", "TRUE_DEMAND"), on=["DATE", "COUNTRY", "PRODUCT"])
            .with_columns(
                pl.col("EXPECTED_DEMAND").alias("MEAN"),
                pl.col("EXPECTED_DEMAND").alias("P50"),
                pl.lit(float("nan")).alias("P10"),
                pl.lit(float("nan")).alias("P90"),
                pl.lit("oracle").alias("MODEL"),
                pl.lit(fold.index).alias("FOLD"),
            )
            .drop("EXPECTED_DEMAND")
        )
    return pl.concat(frames)


def money_cost(forecasts: pl.DataFrame, dataset: pl.DataFrame) -> list[dict]:
    """forecast_error_cost at the default unit economics (margin 35%, holding 10% of price)."""
    priced = forecasts.join(dataset.select("DATE", "COUNTRY", "PRODUCT", "PRICE", "CATEGORY"), on=["DATE", "COUNTRY", "PRODUCT"])
    table = forecast_error_cost(priced, UnitEconomics())
    return (
        table.select("MODEL", "REGIME", "COST_P50", "COST_MEAN", "COST_CRITICAL", "SAVING", "SAVING_SHARE", "COST_SHARE_OF_REVENUE")
        .with_columns(pl.col(c).round(4) for c in ("COST_P50", "COST_MEAN", "COST_CRITICAL", "SAVING", "SAVING_SHARE", "COST_SHARE_OF_REVENUE"))
        .to_dicts()
    )


def instock_calibration(forecasts: pl.DataFrame, dataset: pl.DataFrame, truth: pl.DataFrame, folds, model: str) -> dict:
    """instock_value from `model`'s fold forecasts against the units the stockouts of the fold
    really cost (LOST_SALES): totals, and how often a series' realised loss lies in its band."""
    rows = []
    for fold in folds:
        history = dataset.filter((pl.col("DATE") <= fold.origin) & (pl.col("DATE") > fold.origin - dt.timedelta(days=180)))
        profile = stockout_profile(history.select("DATE", "COUNTRY", "PRODUCT", "PRODUCT_DEMAND", "IN_STOCK"))
        forecast = forecasts.filter((pl.col("MODEL") == model) & (pl.col("FOLD") == fold.index)).select(
            "COUNTRY", "PRODUCT", (pl.col("DATE") - pl.lit(fold.origin)).dt.total_days().alias("HORIZON_DAY"), "P10", "P50", "P90"
        )
        prices = history.filter(pl.col("DATE") == fold.origin).select("COUNTRY", "PRODUCT", "PRICE")
        value = instock_value(forecast, profile, prices, UnitEconomics().margin_rate)
        lost = (
            truth.filter(pl.col("DATE").is_between(fold.test_start, fold.test_end, closed="left"))
            .group_by("COUNTRY", "PRODUCT")
            .agg(pl.col("LOST_SALES").sum())
        )
        joined = value.join(lost, on=["COUNTRY", "PRODUCT"])
        rows.append(
            {
                "fold": fold.index,
                "predicted_extra_units": round(float(value["EXTRA_UNITS"].sum()), 1),
                "realised_lost_units": int(lost["LOST_SALES"].sum()),
                "series_in_p10_p90": round(
                    float(((joined["EXTRA_UNITS_P10"] <= joined["LOST_SALES"]) & (joined["LOST_SALES"] <= joined["EXTRA_UNITS_P90"])).mean()), 3
                ),
            }
        )
    predicted = sum(r["predicted_extra_units"] for r in rows)
    realised = sum(r["realised_lost_units"] for r in rows)
    return {"model": model, "folds": rows, "predicted_over_realised": round(predicted / realised, 3) if realised else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--models", nargs="*", default=[*ALL_MODELS, "lightgbm" + UNCENSORED_SUFFIX])
    parser.add_argument("--deepar-epochs", type=int, default=SuiteSettings.deepar_epochs)
    parser.add_argument("--deepar-batches", type=int, default=SuiteSettings.deepar_batches_per_epoch)
    parser.add_argument("--lgbm-rounds", type=int, default=SuiteSettings.lgbm_rounds)
    parser.add_argument("--label", default="default")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("lightning", "lightning.pytorch", "gluonts"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    t0 = time.perf_counter()
    dataset, truth = build_panel(SyntheticConfig())
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=args.folds, horizon=args.horizon)
    suite = SuiteSettings(
        models=tuple(args.models),
        horizon=args.horizon,
        deepar_epochs=args.deepar_epochs,
        deepar_batches_per_epoch=args.deepar_batches,
        lgbm_rounds=args.lgbm_rounds,
    )
    result = run_backtest(dataset, model_factories(suite), folds, truth=truth)
    # The oracle is a point forecast: its quantile metrics do not exist (not 0).
    oracle = score_forecasts(oracle_rows(dataset, truth, folds)).with_columns(
        pl.lit(None, pl.Float64).alias(c) for c in ("PINBALL_P10", "PINBALL_P90", "COVERAGE_P10_P90")
    )
    metrics = pl.concat([result.metrics, oracle]).filter(pl.col("FOLD") == -1)
    wape = {(r["MODEL"], r["REGIME"]): r["WAPE"] for r in metrics.iter_rows(named=True)}
    bias = {(r["MODEL"], r["REGIME"]): r["BIAS"] for r in metrics.iter_rows(named=True)}
    coverage = {(r["MODEL"], r["REGIME"]): r["COVERAGE_P10_P90"] for r in metrics.iter_rows(named=True)}

    def ratio(a: str, b: str, regime: str = "true") -> float | None:
        return wape[(a, regime)] / wape[(b, regime)] if (a, regime) in wape and (b, regime) in wape else None

    targets = {}
    if "hybrid" in args.models:

        def beats(other: str) -> bool | None:  # None: the other model was not in this run
            return wape[("hybrid", "true")] < wape[(other, "true")] if (other, "true") in wape else None

        targets = {
            "hybrid_beats_deepar (true WAPE)": beats("deepar"),
            "hybrid_beats_lightgbm (true WAPE)": beats("lightgbm"),
            "hybrid_vs_seasonal_naive (true WAPE ratio, target <= 0.75)": ratio("hybrid", "seasonal_naive"),
            "hybrid_vs_oracle (true WAPE ratio, target <= 1.10)": ratio("hybrid", "oracle"),
            "hybrid_coverage_p10_p90 (target 0.75-0.85)": coverage.get(("hybrid", "true")),
        }
    if ("lightgbm" + UNCENSORED_SUFFIX, "true") in bias:
        targets["censoring_aware_bias_vs_true (lightgbm, uncensored_training)"] = [bias[("lightgbm", "true")], bias[("lightgbm" + UNCENSORED_SUFFIX, "true")]]
    extra = {}
    if {"lightgbm"} <= set(args.models):
        extra["money_cost_default_economics"] = money_cost(result.forecasts, dataset)
        extra["instock_value_calibration"] = instock_calibration(result.forecasts, dataset, truth, folds, "lightgbm")
        print(json.dumps(extra, indent=1, default=str))
    out = {
        "label": args.label,
        "config": {
            "synthetic": "3 countries x 50 products, 5 channels, 2023-01-01..2024-12-31",
            "folds": args.folds,
            "horizon": args.horizon,
            **suite.__dict__,
        },
        "metrics": metrics.select("MODEL", "REGIME", "WAPE", "RMSE", "MASE", "BIAS", "PINBALL_P50", "COVERAGE_P10_P90").sort("REGIME", "WAPE").to_dicts(),
        "timings_seconds": result.timings.group_by("MODEL")
        .agg(pl.col("FIT_SECONDS").mean().round(2), pl.col("PREDICT_SECONDS").mean().round(2))
        .sort("MODEL")
        .to_dicts(),
        "targets": targets,
        **extra,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.label] = out
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    with pl.Config(tbl_rows=40, tbl_cols=10, tbl_width_chars=200):
        print(metrics.select("MODEL", "REGIME", "WAPE", "BIAS", "COVERAGE_P10_P90").sort("REGIME", "WAPE"))
    print(json.dumps(targets, indent=1, default=str))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
