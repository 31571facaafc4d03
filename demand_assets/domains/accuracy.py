"""Realised forecast accuracy: how the forecasts made H days ago did, against the backtest."""

import datetime as dt

import dagster as dg
import polars as pl

from contracts import Table
from demand_assets.domains.forecasts import demand_forecast
from demand_assets.domains.models import model_backtest
from demand_assets.domains.partitions import BACKFILL_POLICY, DAILY_DOWNSTREAM, daily_partitions
from demand_assets.domains.publishing import partition_dates, publish_window, require_input_days, rows_by_design_only, without_rows_by_design
from demand_assets.domains.training import training_dataset
from demand_assets.forecasting.panel import TARGET
from demand_assets.monitoring.accuracy import pooled_accuracy, score_realised
from demand_assets.reporting import line_chart_markdown
from resources import DeltaStore, DemandSourceResource, MonitoringSettings

__all__ = ["ACCURACY_DRIFT", "ACCURACY_HORIZON", "forecast_accuracy"]

ACCURACY_DRIFT = "accuracy_drift"
ACCURACY_HORIZON = 28  # the forecast made this many days before a day is the one scored on it


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "forecast_accuracy",
            group_name="monitoring",
            automation_condition=DAILY_DOWNSTREAM,
            kinds={"polars", "deltalake"},
            deps=[
                # The days scored are checked when the run starts (require_input_days), not
                # declared as a look-back, so a one-day backfill stays one day.
                dg.AssetDep(training_dataset),
                dg.AssetDep(
                    demand_forecast,
                    partition_mapping=dg.TimeWindowPartitionMapping(
                        start_offset=-ACCURACY_HORIZON, end_offset=-ACCURACY_HORIZON, allow_nonexistent_upstream_partitions=True
                    ),
                ),
                dg.AssetDep(model_backtest),  # the backtest WAPE each realised WAPE is compared with
            ],
        )
    ],
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    can_subset=True,  # the check is skipped (no result), not passed, when there is nothing to score
    check_specs=[
        dg.AssetCheckSpec(
            ACCURACY_DRIFT,
            asset="forecast_accuracy",
            blocking=False,
            description="Realised in-stock WAPE of the run's scored forecasts over the champion's backtest WAPE "
            "(fails above DEMAND_ACCURACY_RATIO) and their realised bias (fails beyond +/- DEMAND_ACCURACY_BIAS); non-blocking. "
            "Skipped when no forecast made 28 days earlier exists for the run's days.",
        )
    ],
)
def forecast_accuracy(context: dg.AssetExecutionContext, source: DemandSourceResource, store: DeltaStore, monitoring: MonitoringSettings):
    """For each day D: the forecast made as of D - 28 (its whole horizon, D - 27 .. D, has now
    happened) scored against the observed demand on in-stock days: WAPE (P50, as in the
    backtest), bias and p10-p90 coverage, beside the backtest WAPE of the model that made it.
    Days whose forecast was never made get a row with ROWS = 0. A weekly source is scored on
    its week days (the forecast made 4 weeks earlier, its 4 weeks); other days hold no rows."""
    start, end = partition_dates(context)
    h = ACCURACY_HORIZON
    cadence = source.open().cadence
    if rows_by_design_only(cadence, start, end):
        yield from without_rows_by_design(context, Table.FORECAST_ACCURACY, cadence)
        return
    require_input_days(store, Table.TRAINING_DATASET, h - 1, start, end, asset="forecast_accuracy", cadence=cadence)
    forecasts = (
        store.read_window(Table.DEMAND_FORECAST, start - dt.timedelta(days=h), end - dt.timedelta(days=h))
        if store.exists(Table.DEMAND_FORECAST)
        else pl.DataFrame()
    )
    actuals = store.read_window(Table.TRAINING_DATASET, start - dt.timedelta(days=h - 1), end, columns=["DATE", "COUNTRY", "PRODUCT", TARGET, "IN_STOCK"])
    backtest = _backtest_wape(store)

    def rows():
        scores = score_realised(forecasts, actuals, backtest, start, end, h)
        # A weekly source's forecasts are made as of week days only: its other days have none
        # by design, and are no rows rather than rows of ROWS = 0.
        yield scores.filter(pl.col("DATE").dt.weekday() == cadence.weekday) if cadence.is_weekly else scores

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

    yield from publish_window(context, store, Table.FORECAST_ACCURACY, rows(), [], summarize=keep, describe=describe, cadence=cadence)
    check = _accuracy_check(pl.concat(written), monitoring)
    selected = dg.AssetCheckKey(context.asset_key, ACCURACY_DRIFT) in context.selected_asset_check_keys
    if check is None:
        reason = f"no forecast made {h} days before [{start}, {end}) (or no backtest to compare with): nothing to score"
        context.log.info(f"{ACCURACY_DRIFT} skipped: {reason}")
        if selected:
            yield dg.AssetObservation(asset_key=context.asset_key, metadata={"checks_not_evaluated": dg.MetadataValue.json({ACCURACY_DRIFT: reason})})
    elif selected:
        yield check


def _backtest_wape(store: DeltaStore) -> dict[str, float]:
    """Each model's overall in-stock WAPE in the newest backtest."""
    if not store.exists(Table.BACKTEST_METRICS):
        return {}
    m = store.read_all(Table.BACKTEST_METRICS).filter((pl.col("FOLD") == -1) & (pl.col("REGIME") == "in_stock"))
    return dict(zip(m["MODEL"].to_list(), m["WAPE"].to_list()))


def _accuracy_check(scores: pl.DataFrame, monitoring: MonitoringSettings) -> dg.AssetCheckResult | None:
    """The accuracy drift check, or None when nothing was scored (no result: skipped, not passed)."""
    threshold = monitoring.accuracy_ratio
    pooled = pooled_accuracy(scores)
    if pooled is None:
        return None
    ratio = pooled.ratio
    # Noise-dominated series keep WAPE high even when the level is badly off; a systematic
    # bias is the clearer sign that the world moved.
    failed = [f"WAPE {ratio:.2f}x the backtest's"] if ratio > threshold else []
    failed += [f"bias {pooled.realised_bias:+.0%}"] if abs(pooled.realised_bias) > monitoring.accuracy_bias else []
    scored = scores.filter(pl.col("ROWS") > 0)
    return dg.AssetCheckResult(
        check_name=ACCURACY_DRIFT,
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "realised_wape": pooled.realised_wape,
            "backtest_wape": pooled.backtest_wape,
            "wape_ratio": ratio,
            "ratio_threshold": threshold,
            "realised_bias": pooled.realised_bias,
            "bias_threshold": monitoring.accuracy_bias,
            "scored_days": pooled.scored_days,
            "scored_window": f"[{scores['DATE'].min()}, {scores['DATE'].max()}]",
            "forecasts_made": f"[{scored['DATE'].min() - dt.timedelta(days=ACCURACY_HORIZON)}, {scored['DATE'].max() - dt.timedelta(days=ACCURACY_HORIZON)}]"
            if scored.height
            else "none",
            "models": ", ".join(sorted(set(scored["MODEL"].drop_nulls().to_list()))),
        },
        description=(
            f"realised in-stock WAPE {pooled.realised_wape:.3f} is {ratio:.2f}x the backtest's {pooled.backtest_wape:.3f} (threshold {threshold}x); "
            f"bias {pooled.realised_bias:+.1%} (threshold +/-{monitoring.accuracy_bias:.0%})" + (f": drift in {' and '.join(failed)}" if failed else "")
        ),
    )
