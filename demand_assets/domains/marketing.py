"""Marketing assets: response curves per country x channel and the daily spend ROI they credit.

Thin wrappers: the fits live in `marketing.curves`, the ROI attribution in `marketing.roi`, the
summaries and chart panels in `marketing.summary`. Budget planning is in `domains.planning`.
"""

import datetime as dt

import dagster as dg
import mlflow
import polars as pl
from pydantic import Field

from contracts import ContractContext, Table
from demand_assets.domains.partitions import BACKFILL_POLICY, DAILY_DOWNSTREAM, daily_partitions
from demand_assets.domains.publishing import (
    blocking_check_spec,
    contract_check,
    not_provided,
    not_provided_result,
    partition_dates,
    publish_window,
    require_days,
    require_input_days,
)
from demand_assets.domains.raw import channel_response_truth, channel_spend_response, product_demand
from demand_assets.domains.reads import NO_SPEND, lacks_spend, read_curves, revenue_per_unit
from demand_assets.marketing.curves import CurveFitSettings, curves_from_frame, fit_channel_curves
from demand_assets.marketing.roi import ROI_WINDOW_DAYS, attribute_spend
from demand_assets.marketing.summary import current_operating_points, curve_panels, curve_summary, recovery_against_truth
from demand_assets.reporting import figure_to_markdown, frame_to_markdown, line_chart_markdown, response_curve_figure
from resources import DeltaStore, DemandSourceResource, MlflowTracking

__all__ = ["SPEND_ROI_CONTRACT", "SpendResponseConfig", "spend_response_model", "spend_roi"]

SPEND_ROI_CONTRACT = "spend_roi_contract"


class SpendResponseConfig(dg.Config):
    fit_days: int = Field(default=365, ge=28, description="the newest days of spend and measured response the curves are fitted on")
    n_bootstrap: int = Field(default=100, ge=0, le=10_000, description="block bootstrap replicates for the P10-P90 bands (0: point estimate only)")
    block_days: int = Field(
        default=14, ge=1, description="length of a bootstrap block in days: the days of a block share one residual sign (keeps carry-over together)"
    )
    max_lags: list[int] = Field(
        default=[3, 7, 14, 21], min_length=1, description="candidate adstock lengths in days; the best-fitting one wins per country x channel"
    )
    seed: int = Field(default=0, ge=0, description="seed of the bootstrap")


# The curve fit's bootstrap is heavy: its step runs in this concurrency pool (limit 1 by default).
CURVE_FITS_POOL = "curve_fits"


@dg.asset(
    group_name="marketing",
    kinds={"scipy", "mlflow", "deltalake"},
    deps=[channel_spend_response, product_demand, channel_response_truth],
    pool=CURVE_FITS_POOL,
)
def spend_response_model(
    context: dg.AssetExecutionContext, config: SpendResponseConfig, source: DemandSourceResource, store: DeltaStore, mlflow_tracking: MlflowTracking
):
    """Response curves per country x channel: geometric adstock (decay, maximum lag) and Hill
    saturation fitted by least squares to the measured CHANNEL_RESPONSE over the newest
    `fit_days`, with block wild-bootstrap replicates for uncertainty. Stored as the
    `response_curves` Delta table (DRAW 0 = point estimate); ROI, marginal ROI at current spend
    and response-curve plots in the metadata, and on synthetic data the recovery error against
    the generator's true parameters."""
    if lacking := lacks_spend(source):
        return not_provided_result(context, lacking, NO_SPEND)
    end = store.last_date(Table.CHANNEL_SPEND_RESPONSE) + dt.timedelta(days=1)
    fit_start = end - dt.timedelta(days=config.fit_days)
    warmup = max(config.max_lags)
    spend = store.read_window(
        Table.CHANNEL_SPEND_RESPONSE, fit_start - dt.timedelta(days=warmup), end, columns=["DATE", "COUNTRY", "CHANNEL", "SPEND", "CHANNEL_RESPONSE"]
    )
    fit_start = max(fit_start, spend["DATE"].min() + dt.timedelta(days=min(warmup, config.fit_days // 4)))
    settings = CurveFitSettings(max_lags=tuple(config.max_lags), n_bootstrap=config.n_bootstrap, block_days=config.block_days, seed=config.seed)
    context.log.info(f"fitting response curves on [{fit_start}, {end}) with {config.n_bootstrap} bootstrap replicates each")

    def progress(i, n, country, channel, fit):
        context.log.info(f"curve {i}/{n}: {country} x {channel}: decay {fit.curve.decay:.2f}, max lag {fit.curve.max_lag}, R2 {fit.r2:.3f}")

    table = fit_channel_curves(spend, fit_start, settings=settings, progress=progress).with_columns(
        pl.lit(fit_start).alias("FIT_START"), pl.lit(end - dt.timedelta(days=1)).alias("FIT_END")
    )
    curves = curves_from_frame(table)
    revenue = revenue_per_unit(store, fit_start - dt.timedelta(days=warmup), end)
    summary = curve_summary(spend.select("DATE", "COUNTRY", "CHANNEL", "SPEND"), curves, revenue, fit_start, end)
    truth = store.read_window(Table.CHANNEL_RESPONSE_TRUTH, fit_start, end) if store.exists(Table.CHANNEL_RESPONSE_TRUTH) else pl.DataFrame()
    recovery = recovery_against_truth(summary, truth, spend, revenue)
    written = store.overwrite(Table.RESPONSE_CURVES, table)
    figure = response_curve_figure(
        curve_panels(curves, summary), f"Response curves fitted on [{fit_start}, {end}) (band: bootstrap P10-P90; dot: current spend)"
    )

    with mlflow_tracking.run(
        "spend_response",
        tags={
            "stage": "marketing",
            "fit_window": f"{fit_start}...{end - dt.timedelta(days=1)}",
            "delta_version.channel_spend_response": str(store.version(Table.CHANNEL_SPEND_RESPONSE)),
        },
    ) as run:
        mlflow.log_params(
            {"fit_days": config.fit_days, "n_bootstrap": config.n_bootstrap, "block_days": config.block_days, "max_lags": ",".join(map(str, config.max_lags))}
        )
        for row in summary.iter_rows(named=True):
            prefix = f"{row['COUNTRY']}_{row['CHANNEL']}"
            mlflow.log_metrics({f"roi_{prefix}": row["ROI"], f"marginal_roi_{prefix}": row["MARGINAL_ROI"]})
        if recovery is not None:
            mlflow.log_metric("roi_abs_error_mean", float(recovery["ROI_ERROR"].abs().mean()))
            mlflow.log_table(recovery.to_pandas(), "recovery.json")
        mlflow.log_table(summary.to_pandas(), "curves.json")
        mlflow.log_figure(figure, "response_curves.png")
        run_url = mlflow_tracking.run_url(run.info.run_id)

    metadata = {
        "dagster/row_count": written.rows,
        "delta_version": written.version,
        "fit_window": f"[{fit_start}, {end})",
        "curves": dg.MetadataValue.md(
            frame_to_markdown(
                summary.select(
                    "COUNTRY",
                    "CHANNEL",
                    "ROI",
                    "ROI_P10",
                    "ROI_P90",
                    "MARGINAL_ROI",
                    "CURRENT_DAILY_SPEND",
                    "DECAY",
                    "MAX_LAG",
                    "HALF_SATURATION",
                    "SLOPE",
                    "CAP",
                ),
                max_rows=40,
            )
        ),
        "response_curves": dg.MetadataValue.md(figure_to_markdown(figure, "response curves")),
        "mlflow_run": dg.MetadataValue.url(run_url),
    }
    if recovery is not None:
        metadata["recovery_vs_truth"] = dg.MetadataValue.md(
            frame_to_markdown(
                recovery.select("COUNTRY", "CHANNEL", "ROI", "TRUE_ROI", "ROI_ERROR", "TRUE_ROI_IN_BAND", "DECAY", "TRUE_DECAY", "SLOPE", "TRUE_HILL_SLOPE"),
                max_rows=40,
            )
        )
        metadata["roi_abs_error_mean"] = float(recovery["ROI_ERROR"].abs().mean())
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name="marketing",
    automation_condition=DAILY_DOWNSTREAM,
    kinds={"deltalake", "pandera"},
    # Same-day mappings; the look-back is checked when the run starts (see training_dataset).
    deps=[channel_spend_response, product_demand, spend_response_model],
    check_specs=[
        blocking_check_spec(
            SPEND_ROI_CONTRACT,
            "spend_roi",
            "Pandera contract SpendRoi: non-negative spend, units and ROI, positive unit revenue, P10 <= P90, unique keys, known countries and channels, dates in the partition.",
        ),
    ],
)
def spend_roi(context: dg.AssetExecutionContext, source: DemandSourceResource, store: DeltaStore):
    """Per day x country x channel: spend, the incremental units and revenue the fitted response
    curve credits it with (P10/P90 from the bootstrap), ROI that day and over the trailing 28
    days, and the marginal ROI of one more unit of daily spend at the current level."""
    if lacking := lacks_spend(source):
        yield from not_provided(context, lacking, NO_SPEND, [SPEND_ROI_CONTRACT])
        return
    start, end = partition_dates(context)
    curves = read_curves(store)
    max_lag = max(draws[0].max_lag for draws in curves.values())
    history = start - dt.timedelta(days=ROI_WINDOW_DAYS + max_lag)
    require_input_days(store, Table.CHANNEL_SPEND_RESPONSE, ROI_WINDOW_DAYS + max_lag, start, end, asset="spend_roi")
    require_input_days(store, Table.PRODUCT_DEMAND, ROI_WINDOW_DAYS, start, end, asset="spend_roi")
    spend = store.read_window(Table.CHANNEL_SPEND_RESPONSE, history, end, columns=["DATE", "COUNTRY", "CHANNEL", "SPEND"])
    require_days(spend, start, end, Table.CHANNEL_SPEND_RESPONSE)
    revenue = revenue_per_unit(store, history, end)
    frame = attribute_spend(spend, curves, revenue, start, end)
    ctx = ContractContext(start, end, {"COUNTRY": sorted({k[0] for k in curves}), "CHANNEL": sorted({k[1] for k in curves})})

    def summarize(chunk: pl.DataFrame) -> pl.DataFrame:
        return chunk.group_by("DATE", "CHANNEL").agg(pl.col("SPEND").sum(), pl.col("INCREMENTAL_REVENUE").sum(), pl.col("MARGINAL_ROI").mean())

    def describe(summary: pl.DataFrame) -> dict:
        curves_figure = response_curve_figure(
            curve_panels(curves, current_operating_points(frame)), "Response curves (band: bootstrap P10-P90; dot: the last 28 days' mean spend)"
        )
        return {
            "response_curves": dg.MetadataValue.md(figure_to_markdown(curves_figure, "response curves")),
            "spend_and_revenue": dg.MetadataValue.md(
                line_chart_markdown(
                    summary,
                    "DATE",
                    ["SPEND", "INCREMENTAL_REVENUE", "MARGINAL_ROI"],
                    by="CHANNEL",
                    title="Spend, credited incremental revenue and marginal ROI by channel (all countries)",
                )
            ),
            "latest_day": dg.MetadataValue.md(
                frame_to_markdown(
                    frame.filter(pl.col("DATE") == frame["DATE"].max()).select(
                        "COUNTRY", "CHANNEL", "SPEND", "INCREMENTAL_REVENUE", "ROI_28D", "ROI_28D_P10", "ROI_28D_P90", "MARGINAL_ROI"
                    ),
                    max_rows=40,
                )
            ),
        }

    yield from publish_window(
        context, store, Table.SPEND_ROI, [frame], [contract_check(Table.SPEND_ROI, SPEND_ROI_CONTRACT, ctx)], summarize=summarize, describe=describe
    )
