"""The feature-engineered training dataset, built from a look-back window of the raw domains."""

import datetime as dt

import dagster as dg
import polars as pl

from contracts import DOMAIN_COLUMNS_RULE, LAG_INTEGRITY_RULE, ContractReport, Table, check_domain_columns, check_lag_integrity
from demand_assets.domains.drift import drift_check_results, drift_check_specs
from demand_assets.domains.partitions import BACKFILL_POLICY, DAILY_DOWNSTREAM, daily_partitions
from demand_assets.domains.publishing import (
    ChunkCheck,
    blocking_check_spec,
    contract_check,
    contract_context,
    partition_dates,
    publish_window,
    require_input_days,
)
from demand_assets.domains.raw import channel_spend_response, country_demand, product_demand, product_engagement
from demand_assets.features import CHANNEL_LOOKBACK_DAYS, build_training_dataset, lag_plan
from demand_assets.features.engagement import ENGAGEMENT_LOOKBACK_DAYS
from demand_assets.features.training_dataset import listed_rows
from demand_assets.reporting import line_chart_markdown
from demand_assets.sources import Domain
from demand_assets.sources.base import iter_date_chunks
from resources import DeltaStore, DemandSourceResource, MonitoringSettings

__all__ = ["TRAINING_DATASET_CONTRACT", "training_dataset"]

TRAINING_DATASET_CONTRACT = "training_dataset_contract"
# Rows per chunk: bounds memory at M5 scale (30,490 series -> ~98 days a chunk).
CHUNK_ROWS = 3_000_000
# A long window is built in about this many chunks, each logged as it passes its checks, so a
# run shows progress at any size; a chunk spans at least MIN_CHUNK_DAYS, since each also reads
# its 28-day look-back (30-day chunks cost the demo's two years 7 s more than one chunk).
PROGRESS_CHUNKS = 20
MIN_CHUNK_DAYS = 30


def _chunk_days(n_series: int, window_days: int) -> int:
    """Days per chunk: at most CHUNK_ROWS rows, and about PROGRESS_CHUNKS chunks of at least MIN_CHUNK_DAYS."""
    by_rows = max(7, CHUNK_ROWS // max(n_series, 1))
    return min(by_rows, max(MIN_CHUNK_DAYS, -(-window_days // PROGRESS_CHUNKS)))


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "training_dataset",
            group_name="features",
            automation_condition=DAILY_DOWNSTREAM,
            kinds={"polars", "deltalake", "pandera"},
            # Same-day mappings: the look-back days are checked when the run starts
            # (require_input_days), not declared, so a one-day backfill stays one day.
            deps=[product_demand, country_demand, channel_spend_response, product_engagement],
        )
    ],
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    # Subsettable so that a drift check with nothing to compare with is skipped (no result),
    # not reported as a pass; the asset always runs with its blocking checks.
    can_subset=True,
    check_specs=[
        blocking_check_spec(
            TRAINING_DATASET_CONTRACT,
            "training_dataset",
            "Pandera contract TrainingDataset: types, ranges, unique DATE x COUNTRY x PRODUCT, dates in the partition.",
        ),
        blocking_check_spec(
            LAG_INTEGRITY_RULE,
            "training_dataset",
            "Every DEMAND_LAG_k equals PRODUCT_DEMAND k days earlier and every rolling mean equals the mean of the days (a weekly source: weeks) "
            "before, recomputed independently.",
        ),
        blocking_check_spec(
            DOMAIN_COLUMNS_RULE,
            "training_dataset",
            "Macro columns exactly when the source provides country data, spend columns exactly when it provides channel data (M5 and transaction logs have neither).",
        ),
        *drift_check_specs("training_dataset"),
    ],
)
def training_dataset(context: dg.AssetExecutionContext, source: DemandSourceResource, store: DeltaStore, monitoring: MonitoringSettings):
    """One row per DATE x COUNTRY x PRODUCT: the target PRODUCT_DEMAND with IN_STOCK, demand lags
    1/7/14/28 and rolling means 7/28 (ending the day before), calendar and holiday features,
    price and promotion, macro covariates, and per-channel spend (same day, planned) with spend
    lag 7 and response lags 1/7; from an event log, lagged views, carts and the cart-to-purchase
    rate (ENGAGEMENT_*, nothing same-day). Built from the 28 days before each day, so a day's rows are
    the same whether it is built alone or inside a backfill. A weekly source has rows on its
    week days only, with lags 1/2/4/52 weeks and means over 4/13 weeks (named in days: LAG_7,
    LAG_14, LAG_28, LAG_364, ROLL_MEAN_28, ROLL_MEAN_91); its other days hold no rows by design.
    After the write, the newest days are checked for drift against the champion's training
    window (non-blocking checks)."""
    start, end = partition_dates(context)
    selected = {key.name for key in context.selected_asset_check_keys}
    if not context.selected_asset_keys:  # the drift checks alone, from the UI's "Execute"
        yield from drift_check_results(store, monitoring, end, selected, context.log.info)
        return
    src = source.open()
    catalog = src.catalog()
    ctx = contract_context(catalog, start, end)
    has_country = Domain.COUNTRY_DEMAND in src.provides
    has_channel = Domain.CHANNEL_SPEND_RESPONSE in src.provides
    has_engagement = Domain.PRODUCT_ENGAGEMENT in src.provides
    cadence = src.cadence
    plan = lag_plan(cadence.period_days)
    require_input_days(store, Table.PRODUCT_DEMAND, plan.lookback_days, start, end, asset="training_dataset", cadence=cadence)
    if has_country:
        require_input_days(store, Table.COUNTRY_DEMAND, 0, start, end, asset="training_dataset")
    if has_channel:
        require_input_days(store, Table.CHANNEL_SPEND_RESPONSE, CHANNEL_LOOKBACK_DAYS, start, end, asset="training_dataset")
    if has_engagement:
        require_input_days(store, Table.PRODUCT_ENGAGEMENT, ENGAGEMENT_LOOKBACK_DAYS, start, end, asset="training_dataset")
    chunk_days = _chunk_days(catalog.n_series, (end - start).days)
    history_of_chunk: dict[str, pl.DataFrame] = {}  # the lag check compares a chunk with its own history

    def chunks():
        for a, b in iter_date_chunks(start, end, chunk_days):
            # Listing-gap days (LISTED false) are no rows and no lags, for the builder and the lag check alike.
            history = listed_rows(store.read_window(Table.PRODUCT_DEMAND, a - dt.timedelta(days=plan.lookback_days), b))
            country = store.read_window(Table.COUNTRY_DEMAND, a, b) if has_country else None
            channel = store.read_window(Table.CHANNEL_SPEND_RESPONSE, a - dt.timedelta(days=CHANNEL_LOOKBACK_DAYS), b) if has_channel else None
            engagement = store.read_window(Table.PRODUCT_ENGAGEMENT, a - dt.timedelta(days=ENGAGEMENT_LOOKBACK_DAYS), b) if has_engagement else None
            history_of_chunk["current"] = history
            rows = build_training_dataset(history, country, channel, catalog.products, a, b, cadence, engagement)
            if rows.height or not cadence.is_weekly:  # a weekly source's chunk without a week day has nothing to write
                yield rows

    def lag_check(chunk: pl.DataFrame) -> ContractReport:
        return check_lag_integrity(chunk, history_of_chunk["current"], lags=plan.lags, windows=plan.windows, period_days=plan.period_days)

    def summarize(chunk: pl.DataFrame) -> pl.DataFrame:
        return chunk.group_by("DATE").agg(
            pl.col("PRODUCT_DEMAND").mean(),
            pl.col("DEMAND_LAG_7").mean(),
            pl.col("DEMAND_ROLL_MEAN_28").mean(),
            pl.col("DEMAND_LAG_28").is_null().mean().alias("LAG_28_NULL_SHARE"),
        )

    def describe(summary: pl.DataFrame) -> dict:
        if summary["DATE"].n_unique() < 2:
            return {}
        chart = line_chart_markdown(
            summary, "DATE", ["PRODUCT_DEMAND", "DEMAND_LAG_7", "DEMAND_ROLL_MEAN_28", "LAG_28_NULL_SHARE"], title="Mean target and its lag features per day"
        )
        return {"chart": dg.MetadataValue.md(chart)}

    yield from publish_window(
        context,
        store,
        Table.TRAINING_DATASET,
        chunks(),
        [
            contract_check(Table.TRAINING_DATASET, TRAINING_DATASET_CONTRACT, ctx),
            ChunkCheck(LAG_INTEGRITY_RULE, lag_check),
            ChunkCheck(
                DOMAIN_COLUMNS_RULE, lambda chunk: check_domain_columns(chunk, has_country=has_country, has_channel=has_channel, has_engagement=has_engagement)
            ),
        ],
        summarize=summarize,
        describe=describe,
        cadence=cadence,
    )
    yield from drift_check_results(store, monitoring, end, selected, context.log.info)
