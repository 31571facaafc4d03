"""Drift checks of the training dataset against the champion's training window.

The reference is a seeded sample of the window the current champion was trained on, written
to the Delta table `drift_reference` when a champion is chosen (see `champion_model`). After a
run writes its window of `training_dataset`, the newest `drift_window_days` days (ending on the
run's last day) are compared with that reference:

- feature_drift: PSI and KS per feature (demand lags and rolling means, price, promotion,
  planned spend, channel response lags, macro indicators; calendar columns are excluded, they
  are known and cyclic). Fails when more than `max_drifted_features` features drift.
- target_drift: the level of in-stock demand against the reference (fails beyond +/-25%) and
  the PSI of demand divided by each series' reference mean (its shape).
- product_mix_drift: PSI of products' shares of demand.

The checks are non-blocking (severity WARN): drifted data is still valid data, the forecasts
continue; the retraining sensor reads the failures.
"""

import datetime as dt
from collections.abc import Callable, Collection, Iterator

import dagster as dg
import polars as pl

from contracts import Table
from demand_assets.forecasting.panel import TARGET, macro_columns
from demand_assets.monitoring import feature_drift, mix_drift, target_drift
from demand_assets.reporting import frame_to_markdown
from resources import DeltaStore, MonitoringSettings

__all__ = [
    "DRIFT_CHECKS",
    "drift_check_results",
    "drift_check_specs",
    "drift_features",
    "write_drift_reference",
]

FEATURE_DRIFT, TARGET_DRIFT, MIX_DRIFT = "feature_drift", "target_drift", "product_mix_drift"
DRIFT_CHECKS = (FEATURE_DRIFT, TARGET_DRIFT, MIX_DRIFT)
_DESCRIPTIONS = {
    FEATURE_DRIFT: "PSI and KS of each feature over the newest days against the champion's training window (non-blocking).",
    TARGET_DRIFT: "Level (mean ratio) and shape (PSI of series-normalised demand) of in-stock demand over the newest days against the champion's training window (non-blocking).",
    MIX_DRIFT: "PSI of products' shares of demand over the newest days against the champion's training window (non-blocking).",
}


def drift_check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset, blocking=False, description=_DESCRIPTIONS[name]) for name in DRIFT_CHECKS]


def drift_features(frame: pl.DataFrame) -> list[str]:
    """The monitored features: what the models learn from, minus the calendar."""
    prefixes = ("DEMAND_LAG_", "DEMAND_ROLL_MEAN_", "SPEND_", "RESPONSE_")
    named = [c for c in frame.columns if c.startswith(prefixes)]
    return [*(c for c in ("PRICE", "PROMO") if c in frame.columns), *named, *macro_columns(frame)]


def write_drift_reference(store: DeltaStore, dataset: pl.DataFrame, *, rows: int, model_version: str, seed: int = 0) -> int:
    """A seeded sample of the champion's training window becomes the drift reference."""
    sample = dataset.sample(n=min(rows, dataset.height), seed=seed) if dataset.height > rows else dataset
    keep = ["DATE", "COUNTRY", "PRODUCT", TARGET, "IN_STOCK", *drift_features(dataset)]
    frame = sample.select(keep).with_columns(
        pl.lit(model_version).alias("MODEL_VERSION"),
        pl.lit(dataset["DATE"].min()).alias("TRAINED_FROM"),
        pl.lit(dataset["DATE"].max()).alias("TRAINED_UNTIL"),
    )
    return store.overwrite(Table.DRIFT_REFERENCE, frame).version


def _result(name: str, passed: bool, metadata: dict, description: str | None = None) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=name, passed=passed, severity=dg.AssetCheckSeverity.WARN, metadata=metadata, description=description)


def drift_check_results(
    store: DeltaStore, settings: MonitoringSettings, end: dt.date, selected: Collection[str], log: Callable[[str], None]
) -> Iterator[dg.AssetCheckResult | dg.AssetObservation]:
    """The drift checks of `selected` (a run may select some of them) for the newest days before
    `end`. Before a champion exists there is nothing to compare with: no result, so Dagster shows
    the checks as skipped (not passed), and the reason is logged and recorded on an observation
    of training_dataset (`checks_not_evaluated`)."""
    start = end - dt.timedelta(days=settings.drift_window_days)
    if not store.exists(Table.DRIFT_REFERENCE):
        reason = f"no champion has been chosen yet, so there is no training window to compare [{start}, {end}) with"
        log(f"drift checks skipped: {reason}")
        skipped = [name for name in DRIFT_CHECKS if name in selected]
        if skipped:
            yield dg.AssetObservation(asset_key="training_dataset", metadata={"checks_not_evaluated": dg.MetadataValue.json(dict.fromkeys(skipped, reason))})
        return
    yield from (result for result in _drift_results(store, settings, start, end) if result.check_name in selected)


def _drift_results(store: DeltaStore, settings: MonitoringSettings, start: dt.date, end: dt.date) -> Iterator[dg.AssetCheckResult]:
    """The three drift checks for [start, end) against the champion's training window."""
    window = {"drift_window": f"[{start}, {end})"}
    reference = store.read_all(Table.DRIFT_REFERENCE)
    current = store.read_window(Table.TRAINING_DATASET, start, end)
    lineage = {
        "reference_model_version": str(reference["MODEL_VERSION"][0]),
        "reference_window": f"[{reference['TRAINED_FROM'][0]}, {reference['TRAINED_UNTIL'][0]}]",
        "reference_rows": reference.height,
        "current_rows": current.height,
    }
    t = settings.thresholds()

    features = [c for c in drift_features(reference) if c in current.columns]
    table = feature_drift(reference, current, features, t)
    drifted = table.filter(pl.col("DRIFTED"))
    top = table.head(5).select("FEATURE", "PSI", "KS")
    yield _result(
        FEATURE_DRIFT,
        drifted.height <= t.max_drifted_features,
        window
        | lineage
        | {
            "drifted_features": drifted.height,
            "features_checked": len(features),
            "most_drifted": dg.MetadataValue.md(frame_to_markdown(table.head(10))),
            "top_features": dg.MetadataValue.json([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in top.to_dicts()]),
            "psi_threshold": t.psi,
            "ks_threshold": t.ks,
        },
        f"{drifted.height} of {len(features)} features drifted (PSI > {t.psi} and KS > {t.ks})"
        + (f": {', '.join(drifted['FEATURE'].head(5).to_list())}" if drifted.height else ""),
    )

    def in_stock(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(pl.col("IN_STOCK"))

    target = target_drift(in_stock(reference), in_stock(current), t)
    yield _result(
        TARGET_DRIFT,
        not target.drifted,
        window
        | lineage
        | {
            "psi_normalised": target.psi,
            "psi_threshold": t.target_psi,
            "level_ratio": target.level_ratio,
            "level_change_threshold": t.target_level_change,
        },
        f"mean in-stock demand {target.level_ratio:.2f}x the reference (threshold +/-{t.target_level_change:.0%}); "
        f"PSI of series-normalised demand {target.psi:.3f} (threshold {t.target_psi})",
    )

    # The reference is a row sample; shares are estimated from it the same way for every product.
    mix_psi, shares = mix_drift(in_stock(reference), in_stock(current))
    yield _result(
        MIX_DRIFT,
        not mix_psi > t.mix_psi,
        window
        | lineage
        | {
            "psi": mix_psi,
            "psi_threshold": t.mix_psi,
            "largest_share_changes": dg.MetadataValue.md(frame_to_markdown(shares.head(10))),
        },
        f"product-mix PSI {mix_psi:.3f} (threshold {t.mix_psi})",
    )
