"""Inferred stockouts on real intermittent series: how many days the rule flags, how long the
flagged zero runs are, and whether censoring-aware LightGBM training beats naive training.

Real data: M5 files for a handful of real Walmart item x store series (the repository
github.com/zama-github/SPOT holds 10: sales_train_validation.csv, calendar.csv, and the weekly
prices as `sell_prices`, tab-separated with a leading index column, converted here to M5's
sell_prices.csv). Any M5-format folder works (`--m5-dir`).

Variants of the rule, each scored with LightGBM trained censoring-aware (stockout days weight 0)
and naively (every day as demand) on the same rolling-origin folds of 28 days:

  none                      no inference: every listed day in stock (aware = naive)
  before                    alpha 0.001, every implausible zero run a stockout (the old rule)
  cap_<n>                   alpha 0.001, implausible runs longer than n days are listing gaps:
                            not stockouts, and not training or evaluation rows
  cap_<n>_gaps_as_demand    the same stockouts, listing-gap days kept as in-stock demand

WAPE (of the P50) is reported on three sets of test days: `all` (every listed day the variant
keeps), `in_stock` (the variant's own in-stock days) and `common` (days no variant calls a
stockout or a listing gap: the same days for every variant, so variants compare there).
Writes benchmarks/results/real_stockouts.json.

    python -m benchmarks.real_stockouts --m5-dir DIR           # DIR: the SPOT files or M5's
    python -m benchmarks.real_stockouts --m5-dir DIR --folds 4 --caps 28
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from demand_assets.features import build_training_dataset
from demand_assets.features.stockouts import MAX_STOCKOUT_DAYS, infer_stockouts, zero_runs
from demand_assets.forecasting.backtest import rolling_origin_folds, run_backtest
from demand_assets.forecasting.metrics import wape
from demand_assets.forecasting.suite import UNCENSORED_SUFFIX, SuiteSettings, model_factories
from demand_assets.sources import Domain
from demand_assets.sources.m5 import M5Source

RESULTS = Path(__file__).parent / "results" / "real_stockouts.json"
ALPHA = 0.001
RUN_BINS = (1, 4, 8, 15, 29, 57, 92, 183)  # lower edges: 1-3, 4-7, 8-14, 15-28, 29-56, 57-91, 92-182, 183+


def m5_folder(source: Path) -> Path:
    """`source` itself when it holds sell_prices.csv; else a copy with SPOT's `sell_prices`
    (tab-separated, a leading index column) converted to M5's sell_prices.csv."""
    if (source / "sell_prices.csv").exists():
        return source
    out = Path(tempfile.mkdtemp(prefix="m5_real_"))
    for name in ("calendar.csv", "sales_train_validation.csv", "sales_train_evaluation.csv"):
        if (source / name).exists():
            shutil.copy(source / name, out / name)
    prices = pl.read_csv(source / "sell_prices", separator="\t")
    prices.select("store_id", "item_id", "wm_yr_wk", "sell_price").write_csv(out / "sell_prices.csv")
    return out


def read_listed_days(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Product demand of every listed day (no inference) and the catalog's products."""
    source = M5Source(folder, stockout_alpha=None)
    calendar = pl.read_csv(folder / "calendar.csv", try_parse_dates=True)
    n_days = len([c for c in pl.read_csv(next(folder.glob("sales_train_*.csv")), n_rows=0).columns if c.startswith("d_")])
    start = calendar["date"].min()
    end = start + dt.timedelta(days=n_days)
    demand = pl.concat(list(source.read(Domain.PRODUCT_DEMAND, start, end)))
    return demand, source.catalog().products


def _histogram(lengths: np.ndarray) -> list[dict]:
    edges = [*RUN_BINS, 10**9]
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (lengths >= lo) & (lengths < hi)
        rows.append({"days": f"{lo}-{hi - 1}" if hi < 10**9 else f"{lo}+", "runs": int(inside.sum()), "run_days": int(lengths[inside].sum())})
    return rows


def run_lengths(flags: pl.DataFrame) -> dict:
    """Quantiles and a histogram of the lengths of all zero runs and of the implausible ones."""
    runs = flags.filter(pl.col("ZERO_RUN") > 0).group_by(*("COUNTRY", "PRODUCT"), "ZERO_RUN", "_RUN_ID").agg(pl.col("_IMPLAUSIBLE").first())
    out = {}
    for name, part in (("all_zero_runs", runs), ("implausible_runs", runs.filter(pl.col("_IMPLAUSIBLE")))):
        lengths = part["ZERO_RUN"].to_numpy()
        out[name] = {
            "runs": int(len(lengths)),
            "days": int(lengths.sum()),
            "quantiles_of_run_length": {f"p{q}": float(np.percentile(lengths, q)) for q in (50, 75, 90, 95, 99)} if len(lengths) else {},
            "max": int(lengths.max()) if len(lengths) else 0,
            "histogram": _histogram(lengths),
        }
    return out


def flag(demand: pl.DataFrame, max_stockout_days: int | None) -> pl.DataFrame:
    keys = ["DATE", "COUNTRY", "PRODUCT"]
    out = infer_stockouts(demand.select(*keys, "PRODUCT_DEMAND"), alpha=ALPHA, max_stockout_days=max_stockout_days)
    return out.select(*keys, "INFERRED_OUT", "LISTING_GAP", "ZERO_RUN")


def variant_dataset(demand: pl.DataFrame, products: pl.DataFrame, flags: pl.DataFrame | None, gaps: str) -> pl.DataFrame:
    """The training dataset with IN_STOCK from `flags`; listing-gap days marked LISTED false
    (`gaps` = "excluded": the pipeline's treatment, no training or evaluation row and null lags
    over the gap) or kept as in-stock demand ("demand")."""
    keys = ["DATE", "COUNTRY", "PRODUCT"]
    if flags is None:
        marked = demand.with_columns(pl.lit(True).alias("IN_STOCK"), pl.lit(True).alias("LISTED"))
    else:
        marked = demand.drop("IN_STOCK").join(flags, on=keys, how="left")
        listed = ~pl.col("LISTING_GAP") if gaps == "excluded" else pl.lit(True)
        marked = marked.with_columns((~pl.col("INFERRED_OUT")).alias("IN_STOCK"), listed.alias("LISTED")).drop("INFERRED_OUT", "LISTING_GAP", "ZERO_RUN")
    start, end = marked["DATE"].min(), marked["DATE"].max() + dt.timedelta(days=1)
    return build_training_dataset(marked, None, None, products, start, end)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--m5-dir", required=True, type=Path)
    parser.add_argument("--folds", type=int, default=8)
    parser.add_argument("--lgbm-rounds", type=int, default=SuiteSettings.lgbm_rounds)
    parser.add_argument("--caps", type=int, nargs="*", default=[14, MAX_STOCKOUT_DAYS, 56])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(message)s")  # not the per-store "no holiday calendar" notes
    t0 = time.perf_counter()
    folder = m5_folder(args.m5_dir)
    demand, products = read_listed_days(folder)
    keys = ["DATE", "COUNTRY", "PRODUCT"]
    listed = demand.height

    before = flag(demand, None)
    # The implausible runs, one id per run (for the run-length table).
    runs = zero_runs(demand.select(*keys, "PRODUCT_DEMAND")).with_columns(
        (pl.col("PRODUCT_DEMAND") > 0).cast(pl.Int64).cum_sum().over("COUNTRY", "PRODUCT").alias("_RUN_ID")
    )
    runs = runs.join(before.select(*keys, pl.col("INFERRED_OUT").alias("_IMPLAUSIBLE")), on=keys)
    variants: dict[str, tuple[pl.DataFrame | None, str]] = {"none": (None, "demand"), "before": (before, "demand")}
    shares = {"before": {"stockout_share": round(float(before["INFERRED_OUT"].mean()), 4), "listing_gap_share": 0.0}}
    for cap in args.caps:
        flags = flag(demand, cap)
        shares[f"cap_{cap}"] = {
            "stockout_share": round(float(flags["INFERRED_OUT"].mean()), 4),
            "listing_gap_share": round(float(flags["LISTING_GAP"].mean()), 4),
        }
        variants[f"cap_{cap}"] = (flags, "excluded")
        variants[f"cap_{cap}_gaps_as_demand"] = (flags, "demand")
    per_series = (
        demand.select(*keys, "PRODUCT_DEMAND")
        .join(before.select(*keys, "INFERRED_OUT"), on=keys)
        .join(flag(demand, MAX_STOCKOUT_DAYS).select(*keys, pl.col("INFERRED_OUT").alias("OUT_CAP"), "LISTING_GAP"), on=keys)
        .group_by("COUNTRY", "PRODUCT")
        .agg(
            pl.len().alias("listed_days"),
            pl.col("PRODUCT_DEMAND").mean().round(3).alias("mean_sales"),
            (pl.col("PRODUCT_DEMAND") == 0).mean().round(3).alias("zero_share"),
            pl.col("INFERRED_OUT").mean().round(4).alias("stockout_share_before"),
            pl.col("OUT_CAP").mean().round(4).alias(f"stockout_share_cap_{MAX_STOCKOUT_DAYS}"),
            pl.col("LISTING_GAP").mean().round(4).alias(f"listing_gap_share_cap_{MAX_STOCKOUT_DAYS}"),
        )
        .sort("COUNTRY", "PRODUCT")
    )
    # Days no variant calls a stockout or a gap: `before` flags every implausible run.
    common = before.filter(~pl.col("INFERRED_OUT")).select(keys).with_columns(pl.lit(True).alias("COMMON"))

    suite = SuiteSettings(models=("lightgbm", "lightgbm" + UNCENSORED_SUFFIX), lgbm_rounds=args.lgbm_rounds)
    last = demand["DATE"].max()
    folds = rolling_origin_folds(last, n_folds=args.folds, horizon=28)
    scores = []
    for name, (flags, gaps) in variants.items():
        t1 = time.perf_counter()
        dataset = variant_dataset(demand, products, flags, gaps)
        models = model_factories(suite) if flags is not None else {"lightgbm": model_factories(suite)["lightgbm"]}
        result = run_backtest(dataset, models, folds)
        forecasts = result.forecasts.join(common, on=keys, how="left").with_columns(pl.col("COMMON").fill_null(False))
        for (model,), part in forecasts.group_by(["MODEL"], maintain_order=True):
            row = {"variant": name, "model": model, "train_rows": dataset.height}
            for subset, mask in (("all", pl.lit(True)), ("in_stock", pl.col("IN_STOCK")), ("common", pl.col("COMMON"))):
                sub = part.filter(mask)
                row[f"wape_{subset}"] = round(wape(sub["ACTUAL"].to_numpy(), sub["P50"].to_numpy()), 4)
                row[f"bias_{subset}"] = round(float((sub["MEAN"].sum() - sub["ACTUAL"].sum()) / max(sub["ACTUAL"].sum(), 1)), 4)
                row[f"days_{subset}"] = sub.height
            scores.append(row)
            print(row, f"({time.perf_counter() - t1:.0f}s)", flush=True)

    out = {
        "data": {
            "source": "github.com/zama-github/SPOT (real M5 sales_train_validation rows, calendar, sell prices)"
            if not (args.m5_dir / "sell_prices.csv").exists()
            else str(args.m5_dir),
            "series": demand.select("COUNTRY", "PRODUCT").unique().height,
            "listed_days": listed,
            "first_day": str(demand["DATE"].min()),
            "last_day": str(last),
        },
        "alpha": ALPHA,
        "flagged_share_of_listed_days": shares,
        "run_lengths": run_lengths(runs),
        "per_series": per_series.to_dicts(),
        "model_effect": {
            "folds": [{"origin": str(f.origin), "test": f"[{f.test_start}, {f.test_end})"} for f in folds],
            "lgbm_rounds": args.lgbm_rounds,
            "scores": scores,
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "python -m benchmarks.real_stockouts --m5-dir DIR",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
