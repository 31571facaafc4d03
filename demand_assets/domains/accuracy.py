"""Realised forecast accuracy: how the forecasts made H days ago did, against the backtest."""

import datetime as dt

import dagster as dg
import polars as pl

from demand_assets.domains.forecasts import demand_forecast
from demand_assets.domains.partitions import BACKFILL_POLICY, DAILY_DOWNSTREAM, daily_partitions, lookback
from demand_assets.domains.publishing import partition_dates, publish_window
from demand_assets.domains.training import training_dataset
from demand_assets.forecasting.metrics import bias, interval_coverage
from demand_assets.forecasting.panel import TARGET
from demand_assets.monitoring import realised_wape
from demand_assets.reporting import line_chart_markdown
from resources import DeltaStore, MonitoringSettings

__all__ = ["ACCURACY_DRIFT", "ACCURACY_HORIZON", "forecast_accuracy"]

ACCURACY_DRIFT = "accuracy_drift"
ACCURACY_HORIZON = 28  # the forecast made this many days before a day is the one scored on it


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name="monitoring",
    automation_condition=DAILY_DOWNSTREAM,
    kinds={"polars", "deltalake"},
    deps=[
        dg.AssetDep(training_dataset, partition_mapping=lookback(ACCURACY_HORIZON - 1)),
        dg.AssetDep(
            demand_forecast,
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-ACCURACY_HORIZON, end_offset=-ACCURACY_HORIZON, allow_nonexistent_upstream_partitions=True
            ),
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            ACCURACY_DRIFT, asset="forecast_accuracy", blocking=False,
            description="Realised in-stock WAPE of the run's scored forecasts over the champion's backtest WAPE "
            "(fails above DEMAND_ACCURACY_RATIO) and their realised bias (fails beyond +/- DEMAND_ACCURACY_BIAS); non-blocking.",
        )
    ],
)
def forecast_accuracy(context: dg.AssetExecutionContext, store: DeltaStore, monitoring: MonitoringSettings):
    """For each day D: the forecast made as of D - 28 (its whole horizon, D - 27 .. D, has now
    happened) scored against the observed demand on in-stock days: WAPE (P50, as in the
    backtest), bias and p10-p90 coverage, beside the backtest WAPE of the model that made it.
    Days whose forecast was never made get a row with ROWS = 0."""
    start, end = partition_dates(context)
    h = ACCURACY_HORIZON
    forecasts = (
        store.read_window("demand_forecast", start - dt.timedelta(days=h), end - dt.timedelta(days=h))
        if store.exists("demand_forecast") else pl.DataFrame()
    )
    actuals = store.read_window("training_dataset", start - dt.timedelta(days=h - 1), end, columns=["DATE", "COUNTRY", "PRODUCT", TARGET, "IN_STOCK"])
    backtest = _backtest_wape(store)

    def rows():
        out = []
        for i in range((end - start).days):
            day = start + dt.timedelta(days=i)
            origin = day - dt.timedelta(days=h)
            made = forecasts.filter((pl.col("DATE") == origin) & (pl.col("HORIZON_DAY") <= h)) if not forecasts.is_empty() else forecasts
            row = {"DATE": day, "ORIGIN": origin, "MODEL": None, "MODEL_VERSION": None, "ROWS": 0, "WAPE": None, "BIAS": None,
                   "COVERAGE_P10_P90": None, "BACKTEST_WAPE": None, "WAPE_RATIO": None}
            if not made.is_empty():
                scored = made.select(pl.col("TARGET_DATE").alias("DATE"), "COUNTRY", "PRODUCT", "MEAN", "P10", "P50", "P90", "MODEL", "MODEL_VERSION")
                wape, n = realised_wape(scored, actuals)
                joined = scored.join(actuals, on=["DATE", "COUNTRY", "PRODUCT"]).filter(pl.col("IN_STOCK"))
                model = scored["MODEL"][0]
                reference = backtest.get(model)
                row |= {
                    "MODEL": model, "MODEL_VERSION": str(scored["MODEL_VERSION"][0]), "ROWS": n, "WAPE": wape,
                    "BIAS": bias(joined[TARGET].to_numpy(), joined["MEAN"].to_numpy()) if n else None,
                    "COVERAGE_P10_P90": interval_coverage(joined[TARGET].to_numpy(), joined["P10"].to_numpy(), joined["P90"].to_numpy()) if n else None,
                    "BACKTEST_WAPE": reference,
                    "WAPE_RATIO": wape / reference if reference and n else None,
                }
            out.append(row)
        yield pl.DataFrame(out, schema=_SCHEMA)

    def describe(summary: pl.DataFrame) -> dict:
        scored = summary.filter(pl.col("ROWS") > 0)
        if scored.height < 2:
            return {}
        chart = line_chart_markdown(scored, "DATE", ["WAPE", "BACKTEST_WAPE"], title="Realised WAPE of the forecast made 28 days earlier, and the backtest's")
        return {"realised_vs_backtest_wape": dg.MetadataValue.md(chart)}

    written: list[pl.DataFrame] = []

    def keep(chunk: pl.DataFrame) -> pl.DataFrame:
        written.append(chunk)
        return chunk

    yield from publish_window(context, store, "forecast_accuracy", rows(), [], summarize=keep, describe=describe)
    yield _accuracy_check(pl.concat(written), monitoring)


_SCHEMA = {
    "DATE": pl.Date, "ORIGIN": pl.Date, "MODEL": pl.String, "MODEL_VERSION": pl.String, "ROWS": pl.Int64, "WAPE": pl.Float64,
    "BIAS": pl.Float64, "COVERAGE_P10_P90": pl.Float64, "BACKTEST_WAPE": pl.Float64, "WAPE_RATIO": pl.Float64,
}


def _backtest_wape(store: DeltaStore) -> dict[str, float]:
    """Each model's overall in-stock WAPE in the newest backtest."""
    if not store.exists("backtest_metrics"):
        return {}
    m = store.read_all("backtest_metrics").filter((pl.col("FOLD") == -1) & (pl.col("REGIME") == "in_stock"))
    return dict(zip(m["MODEL"].to_list(), m["WAPE"].to_list()))


def _accuracy_check(scores: pl.DataFrame, monitoring: MonitoringSettings) -> dg.AssetCheckResult:
    scored = scores.filter(pl.col("ROWS") > 0)
    threshold = monitoring.accuracy_ratio
    if scored.is_empty() or scored["BACKTEST_WAPE"].is_null().all():
        return dg.AssetCheckResult(
            check_name=ACCURACY_DRIFT, passed=True, severity=dg.AssetCheckSeverity.WARN,
            metadata={"scored_days": 0, "ratio_threshold": threshold},
            description="No forecast made 28 days before these days (or no backtest to compare with): nothing to score.",
        )
    # Pooled over the window: the weighted mean of daily WAPEs is the window's WAPE only
    # approximately; days have similar volumes, and each day's WAPE is itself a 28-day WAPE.
    realised = float((scored["WAPE"] * scored["ROWS"]).sum() / scored["ROWS"].sum())
    reference = float((scored["BACKTEST_WAPE"] * scored["ROWS"]).sum() / scored["ROWS"].sum())
    realised_bias = float((scored["BIAS"] * scored["ROWS"]).sum() / scored["ROWS"].sum())
    ratio = realised / reference
    # Noise-dominated series keep WAPE high even when the level is badly off; a systematic
    # bias is the clearer sign that the world moved.
    failed = [f"WAPE {ratio:.2f}x the backtest's"] if ratio > threshold else []
    failed += [f"bias {realised_bias:+.0%}"] if abs(realised_bias) > monitoring.accuracy_bias else []
    return dg.AssetCheckResult(
        check_name=ACCURACY_DRIFT,
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "realised_wape": realised, "backtest_wape": reference, "wape_ratio": ratio, "ratio_threshold": threshold,
            "realised_bias": realised_bias, "bias_threshold": monitoring.accuracy_bias,
            "scored_days": scored.height, "models": ", ".join(sorted(set(scored["MODEL"].drop_nulls().to_list()))),
        },
        description=(
            f"realised in-stock WAPE {realised:.3f} is {ratio:.2f}x the backtest's {reference:.3f} (threshold {threshold}x); "
            f"bias {realised_bias:+.1%} (threshold +/-{monitoring.accuracy_bias:.0%})" + (f": drift in {' and '.join(failed)}" if failed else "")
        ),
    )
