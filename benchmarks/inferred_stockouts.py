"""Precision and recall of the inferred stockouts against the synthetic world's true flags, with
the listing-gap limit (`MAX_STOCKOUT_DAYS`, the default) and without it (None). Writes benchmarks/results/inferred_stockouts.json.

    python -m benchmarks.inferred_stockouts
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import polars as pl

from demand_assets.features.stockouts import MAX_STOCKOUT_DAYS, infer_stockouts
from demand_assets.sources import Domain
from demand_assets.sources.synthetic import SyntheticConfig, SyntheticDemandSource

RESULTS = Path(__file__).parent / "results" / "inferred_stockouts.json"


def main() -> None:
    source = SyntheticDemandSource(SyntheticConfig())
    daily = pl.concat(list(source.read(Domain.PRODUCT_DEMAND, dt.date(2024, 1, 1), dt.date(2025, 1, 1))))
    true_out = ~daily["IN_STOCK"]
    zero_out = int((true_out & (daily["PRODUCT_DEMAND"] == 0)).sum())
    rows = []
    for alpha, max_days in ((a, m) for a in (0.05, 0.01, 0.001, 0.0001) for m in (MAX_STOCKOUT_DAYS, None)):
        t0 = time.perf_counter()
        out = infer_stockouts(daily, alpha=alpha, max_stockout_days=max_days)
        seconds = time.perf_counter() - t0
        tp = int((out["INFERRED_OUT"] & ~out["IN_STOCK"]).sum())
        flagged = int(out["INFERRED_OUT"].sum())
        rows.append(
            {
                "alpha": alpha,
                "max_stockout_days": max_days,
                "flagged_days": flagged,
                "listing_gap_days": int(out["LISTING_GAP"].sum()),
                "precision": round(tp / flagged, 3) if flagged else None,
                "recall": round(tp / int(true_out.sum()), 3),
                "recall_of_zero_sale_stockout_days": round(tp / zero_out, 3),
                "seconds": round(seconds, 3),
            }
        )
        print(rows[-1], flush=True)
    out = {
        "world": "default synthetic: 3 countries x 50 products, 2024 (54,900 series-days)",
        "true_stockout_days": int(true_out.sum()),
        "of_which_with_zero_sales": zero_out,
        "by_alpha": rows,
        "command": "python -m benchmarks.inferred_stockouts",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
