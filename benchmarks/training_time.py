"""Train time of LightGBM and DeepAR on a larger panel: 10 markets x 300 products = 3,000
series over three years (2022-2024), one fit at the asset defaults and one 28-day forecast.
Writes benchmarks/results/training_time.json.

    python -m benchmarks.training_time
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import resource
import time
from pathlib import Path

import polars as pl

from demand_assets.features import build_training_dataset
from demand_assets.forecasting.panel import future_frame
from demand_assets.forecasting.suite import SuiteSettings, model_factories
from demand_assets.sources import Domain
from demand_assets.sources.synthetic import SyntheticConfig, SyntheticDemandSource

RESULTS = Path(__file__).parent / "results" / "training_time.json"
START, END = dt.date(2022, 1, 1), dt.date(2025, 1, 1)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    cfg = SyntheticConfig(n_countries=10, n_products=300, origin=START)
    src = SyntheticDemandSource(cfg)
    t0 = time.perf_counter()

    def read(domain: Domain) -> pl.DataFrame:
        return pl.concat(list(src.read(domain, START, END)))

    dataset = build_training_dataset(
        read(Domain.PRODUCT_DEMAND), read(Domain.COUNTRY_DEMAND), read(Domain.CHANNEL_SPEND_RESPONSE), src.catalog().products, START, END
    )
    build_seconds = time.perf_counter() - t0
    origin = END - dt.timedelta(days=29)
    train = dataset.filter(pl.col("DATE") <= origin)
    future = future_frame(dataset, origin, 28)
    factories = model_factories(SuiteSettings(models=("lightgbm", "deepar")))
    rows = {}
    for name, factory in factories.items():
        t1 = time.perf_counter()
        model = factory().fit(train)
        t2 = time.perf_counter()
        model.predict(train, future)
        t3 = time.perf_counter()
        rows[name] = {"fit_seconds": round(t2 - t1, 1), "predict_28_days_seconds": round(t3 - t2, 1)}
        print(name, rows[name], flush=True)
    out = {
        "panel": {"series": cfg.n_countries * cfg.n_products, "days": (END - START).days, "training_rows": train.height},
        "settings": "asset defaults: LightGBM 300 rounds x (Tweedie mean on every row + p10/p50/p90 on a 500,000-row sample); DeepAR 10 epochs x 30 batches of 64, hidden 32",
        "command": "python -m benchmarks.training_time",
        "build_dataset_seconds": round(build_seconds, 1),
        "models": rows,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
