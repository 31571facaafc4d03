"""The raw daily domains, read from the configured source, contract-checked, stored in Delta."""

import dagster as dg
import polars as pl

from contracts import RECONCILIATION_RULE, Table, check_product_reconciles_with_country
from demand_assets.domains.partitions import BACKFILL_POLICY, RAW_FRESHNESS, daily_partitions
from demand_assets.domains.publishing import (
    ChunkCheck,
    blocking_check_spec,
    contract_check,
    contract_context,
    not_provided,
    partition_dates,
    publish_window,
)
from demand_assets.reporting import line_chart_markdown, scatter_chart_markdown
from demand_assets.sources import Domain
from resources import ContractSettings, DeltaStore, DemandSourceResource

__all__ = [
    "CHANNEL_RESPONSE_TRUTH_CONTRACT",
    "CHANNEL_SPEND_RESPONSE_CONTRACT",
    "COUNTRY_DEMAND_CONTRACT",
    "PRODUCT_DEMAND_CONTRACT",
    "PRODUCT_DEMAND_TRUTH_CONTRACT",
    "channel_response_truth",
    "channel_spend_response",
    "country_demand",
    "product_demand",
    "product_demand_truth",
]

COUNTRY_DEMAND_CONTRACT = "country_demand_contract"
CHANNEL_SPEND_RESPONSE_CONTRACT = "channel_spend_response_contract"
PRODUCT_DEMAND_CONTRACT = "product_demand_contract"
PRODUCT_DEMAND_TRUTH_CONTRACT = "product_demand_truth_contract"
CHANNEL_RESPONSE_TRUTH_CONTRACT = "channel_response_truth_contract"
_KINDS = {"polars", "deltalake", "pandera"}


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name="raw_domains",
    kinds=_KINDS,
    freshness_policy=RAW_FRESHNESS,
    check_specs=[
        blocking_check_spec(
            COUNTRY_DEMAND_CONTRACT,
            "country_demand",
            "Pandera contract CountryDemand: types, ranges, unique DATE x COUNTRY, dates in the partition, known countries.",
        )
    ],
)
def country_demand(context: dg.AssetExecutionContext, source: DemandSourceResource, store: DeltaStore, contract_settings: ContractSettings):
    """Daily organic demand per country (BASELINE_DEMAND) with the macro indicators that move it:
    ECONOMIC_INDEX, INFLATION_RATE (%), UNEMPLOYMENT_RATE (%)."""
    src = source.open()
    if Domain.COUNTRY_DEMAND not in src.provides:
        yield from not_provided(context, src.name, "country demand or macro indicators", [COUNTRY_DEMAND_CONTRACT])
        return
    start, end = partition_dates(context)
    ctx = contract_context(src.catalog(), start, end, contract_settings.upper_bounds)

    def describe(summary: pl.DataFrame) -> dict:
        if summary["DATE"].n_unique() < 2:
            return {}
        chart = line_chart_markdown(
            summary, "DATE", ["BASELINE_DEMAND", "ECONOMIC_INDEX", "UNEMPLOYMENT_RATE"], by="COUNTRY", title="Organic demand and macro indicators"
        )
        return {"chart": dg.MetadataValue.md(chart)}

    yield from publish_window(
        context,
        store,
        Table.COUNTRY_DEMAND,
        src.read(Domain.COUNTRY_DEMAND, start, end),
        [contract_check(Table.COUNTRY_DEMAND, COUNTRY_DEMAND_CONTRACT, ctx)],
        summarize=lambda chunk: chunk,
        describe=describe,
    )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name="raw_domains",
    kinds=_KINDS,
    freshness_policy=RAW_FRESHNESS,
    check_specs=[
        blocking_check_spec(
            CHANNEL_SPEND_RESPONSE_CONTRACT,
            "channel_spend_response",
            "Pandera contract ChannelSpendResponse: SPEND >= 0, CHANNEL_RESPONSE >= 0, unique keys, known channels, dates in the partition.",
        )
    ],
)
def channel_spend_response(context: dg.AssetExecutionContext, source: DemandSourceResource, store: DeltaStore, contract_settings: ContractSettings):
    """Daily marketing SPEND per country x channel and CHANNEL_RESPONSE, the incremental demand
    it drove (carry-over through adstock, diminishing returns through saturation)."""
    src = source.open()
    if Domain.CHANNEL_SPEND_RESPONSE not in src.provides:
        yield from not_provided(context, src.name, "marketing spend or channel response", [CHANNEL_SPEND_RESPONSE_CONTRACT])
        return
    start, end = partition_dates(context)
    ctx = contract_context(src.catalog(), start, end, contract_settings.upper_bounds)

    def summarize(chunk: pl.DataFrame) -> pl.DataFrame:
        return chunk.group_by("DATE", "CHANNEL").agg(pl.col("SPEND").sum(), pl.col("CHANNEL_RESPONSE").sum())

    def describe(summary: pl.DataFrame) -> dict:
        if summary["DATE"].n_unique() < 2:
            return {}
        return {
            "spend_and_response": dg.MetadataValue.md(
                line_chart_markdown(summary, "DATE", ["SPEND", "CHANNEL_RESPONSE"], by="CHANNEL", title="Spend and response by channel (all countries)")
            ),
            "response_vs_spend": dg.MetadataValue.md(
                scatter_chart_markdown(
                    summary, "SPEND", "CHANNEL_RESPONSE", by="CHANNEL", title="Daily response against spend: diminishing returns and carry-over"
                )
            ),
        }

    yield from publish_window(
        context,
        store,
        Table.CHANNEL_SPEND_RESPONSE,
        src.read(Domain.CHANNEL_SPEND_RESPONSE, start, end),
        [contract_check(Table.CHANNEL_SPEND_RESPONSE, CHANNEL_SPEND_RESPONSE_CONTRACT, ctx)],
        summarize=summarize,
        describe=describe,
    )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name="raw_domains",
    kinds=_KINDS,
    freshness_policy=RAW_FRESHNESS,
    deps=[country_demand, channel_spend_response],
    check_specs=[
        blocking_check_spec(
            PRODUCT_DEMAND_CONTRACT,
            "product_demand",
            "Pandera contract ProductDemand: counts >= 0, PRICE > 0, unique keys, known products, dates in the partition.",
        ),
        blocking_check_spec(
            RECONCILIATION_RULE,
            "product_demand",
            "Product sales per country-day add up to BASELINE_DEMAND + sum of CHANNEL_RESPONSE (never above; below only on days with stockouts).",
        ),
    ],
)
def product_demand(context: dg.AssetExecutionContext, source: DemandSourceResource, store: DeltaStore, contract_settings: ContractSettings):
    """Observed daily sales per country x product (PRODUCT_DEMAND) with PRICE, PROMO and
    IN_STOCK. On stockout days (IN_STOCK false) sales are censored: they understate demand."""
    start, end = partition_dates(context)
    src = source.open()
    ctx = contract_context(src.catalog(), start, end, contract_settings.upper_bounds)
    country = store.read_window(Table.COUNTRY_DEMAND, start, end) if Domain.COUNTRY_DEMAND in src.provides else None
    channel = store.read_window(Table.CHANNEL_SPEND_RESPONSE, start, end) if Domain.CHANNEL_SPEND_RESPONSE in src.provides else None
    checks = [contract_check(Table.PRODUCT_DEMAND, PRODUCT_DEMAND_CONTRACT, ctx)]
    if country is not None:
        tolerance = contract_settings.reconcile_tolerance
        checks.append(ChunkCheck(RECONCILIATION_RULE, lambda chunk: check_product_reconciles_with_country(chunk, country, channel, tolerance=tolerance)))

    def summarize(chunk: pl.DataFrame) -> pl.DataFrame:
        return chunk.group_by("DATE", "COUNTRY").agg(
            pl.col("PRODUCT_DEMAND").sum().alias("UNITS_SOLD"),
            (~pl.col("IN_STOCK")).mean().alias("STOCKOUT_SHARE"),
            pl.col("PROMO").mean().alias("PROMO_SHARE"),
        )

    def describe(summary: pl.DataFrame) -> dict:
        meta = {"stockout_share": float(summary["STOCKOUT_SHARE"].mean())}
        if summary["DATE"].n_unique() >= 2:
            chart = line_chart_markdown(
                summary, "DATE", ["UNITS_SOLD", "STOCKOUT_SHARE", "PROMO_SHARE"], by="COUNTRY", title="Units sold, stockout and promotion share"
            )
            meta["chart"] = dg.MetadataValue.md(chart)
        return meta

    yield from publish_window(
        context,
        store,
        Table.PRODUCT_DEMAND,
        src.read(Domain.PRODUCT_DEMAND, start, end),
        checks,
        summarize=summarize,
        describe=describe,
    )
    if country is None:
        note = f"source '{src.name}' provides no country totals: there is nothing to reconcile with"
        yield dg.AssetCheckResult(check_name=RECONCILIATION_RULE, passed=True, metadata={"rows_checked": 0, "note": note})


def _truth_asset(name: str, domain: Domain, check_name: str, description: str):
    """Ground truth only a generator knows; a "not provided" record for sources without it."""

    @dg.asset(
        name=name,
        group_name="ground_truth",
        kinds=_KINDS,
        description=description,
        deps=["product_demand"],
        check_specs=[blocking_check_spec(check_name, name, f"Pandera contract for {name}.")],
        partitions_def=daily_partitions,
        backfill_policy=BACKFILL_POLICY,
    )
    def _asset(context: dg.AssetExecutionContext, source: DemandSourceResource, store: DeltaStore):
        src = source.open()
        if domain not in src.provides:
            yield from not_provided(context, src.name, "ground truth", [check_name])
            return
        start, end = partition_dates(context)
        ctx = contract_context(src.catalog(), start, end)
        yield from publish_window(
            context,
            store,
            name,
            src.read(domain, start, end),
            [contract_check(name, check_name, ctx)],
        )

    return _asset


product_demand_truth = _truth_asset(
    "product_demand_truth",
    Domain.PRODUCT_DEMAND_TRUTH,
    PRODUCT_DEMAND_TRUTH_CONTRACT,
    "Synthetic ground truth per country x product and day: TRUE_DEMAND (uncensored), EXPECTED_DEMAND "
    "(the generator's mean, the oracle forecast) and LOST_SALES to stockouts. Only the synthetic source has it.",
)
channel_response_truth = _truth_asset(
    "channel_response_truth",
    Domain.CHANNEL_RESPONSE_TRUTH,
    CHANNEL_RESPONSE_TRUTH_CONTRACT,
    "Synthetic ground truth per country x channel and day: the true adstock decay and max lag, Hill "
    "half-saturation and slope, response cap, and ADSTOCKED_SPEND. Only the synthetic source has it.",
)
