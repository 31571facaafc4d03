"""The raw daily domains, read from the configured source, contract-checked, stored in Delta."""

from collections.abc import Mapping

import dagster as dg
import polars as pl

from contracts import RECONCILIATION_RULE, ContractContext, Table, check_product_reconciles_with_country
from demand_assets.domains.categories import known_categories
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
from demand_assets.domains.snapshot import DomainPlan, publish_snapshot
from demand_assets.reporting import line_chart_markdown, scatter_chart_markdown
from demand_assets.sources import Domain
from resources import ContractSettings, DeltaStore, DemandSourceResource
from resources.staging import StagedTable

__all__ = [
    "CHANNEL_RESPONSE_TRUTH_CONTRACT",
    "CHANNEL_SPEND_RESPONSE_CONTRACT",
    "COUNTRY_DEMAND_CONTRACT",
    "PRODUCT_DEMAND_CONTRACT",
    "PRODUCT_DEMAND_TRUTH_CONTRACT",
    "PRODUCT_ENGAGEMENT_CONTRACT",
    "channel_response_truth",
    "channel_spend_response",
    "country_demand",
    "product_demand",
    "product_demand_truth",
    "product_engagement",
    "raw_domains",
]

COUNTRY_DEMAND_CONTRACT = "country_demand_contract"
CHANNEL_SPEND_RESPONSE_CONTRACT = "channel_spend_response_contract"
PRODUCT_DEMAND_CONTRACT = "product_demand_contract"
PRODUCT_DEMAND_TRUTH_CONTRACT = "product_demand_truth_contract"
PRODUCT_ENGAGEMENT_CONTRACT = "product_engagement_contract"
CHANNEL_RESPONSE_TRUTH_CONTRACT = "channel_response_truth_contract"
_KINDS = {"polars", "deltalake", "pandera"}


RAW_DOMAINS_POOL = "raw_domain_writes"

country_demand = dg.AssetSpec(
    "country_demand",
    group_name="raw_domains",
    kinds=_KINDS,
    freshness_policy=RAW_FRESHNESS,
    description=(
        "Daily organic demand per country (BASELINE_DEMAND) with the macro indicators that move it: ECONOMIC_INDEX, INFLATION_RATE (%), UNEMPLOYMENT_RATE (%)."
    ),
)
channel_spend_response = dg.AssetSpec(
    "channel_spend_response",
    group_name="raw_domains",
    kinds=_KINDS,
    freshness_policy=RAW_FRESHNESS,
    description=(
        "Daily marketing SPEND per country x channel and CHANNEL_RESPONSE, the incremental demand it drove "
        "(carry-over through adstock, diminishing returns through saturation)."
    ),
)
product_demand = dg.AssetSpec(
    "product_demand",
    group_name="raw_domains",
    kinds=_KINDS,
    freshness_policy=RAW_FRESHNESS,
    deps=[country_demand, channel_spend_response],
    description=(
        "Observed daily sales per country x product (PRODUCT_DEMAND) with PRICE, PROMO and IN_STOCK. "
        "On stockout days (IN_STOCK false) sales are censored: they understate demand."
    ),
)
product_engagement = dg.AssetSpec(
    "product_engagement",
    group_name="raw_domains",
    kinds=_KINDS,
    freshness_policy=RAW_FRESHNESS,
    description=(
        "Shoppers' activity per country x product and day from an e-commerce event log: VIEWS, CARTS, REMOVALS (from the cart), "
        "PURCHASES, and the distinct SESSIONS and USERS. Browsing moves before buying: the training dataset takes it lagged. "
        "Sources without an event log record it as not provided."
    ),
)
_COMMON_RULES = "types, finite numbers within plausible bounds, unique keys, dates in the partition, every series on every day, known categories"


@dg.multi_asset(
    name="raw_domains",
    specs=[country_demand, channel_spend_response, product_demand, product_engagement],
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    pool=RAW_DOMAINS_POOL,
    # Subsettable only to leave out domains the source does not provide (no placeholder record
    # per day in a real source's backfill); every provided domain must be selected (snapshot.py).
    can_subset=True,
    check_specs=[
        blocking_check_spec(COUNTRY_DEMAND_CONTRACT, "country_demand", f"Pandera contract CountryDemand: {_COMMON_RULES}."),
        blocking_check_spec(
            CHANNEL_SPEND_RESPONSE_CONTRACT, "channel_spend_response", f"Pandera contract ChannelSpendResponse: SPEND, CHANNEL_RESPONSE >= 0; {_COMMON_RULES}."
        ),
        blocking_check_spec(PRODUCT_DEMAND_CONTRACT, "product_demand", f"Pandera contract ProductDemand: counts >= 0, PRICE > 0; {_COMMON_RULES}."),
        blocking_check_spec(
            PRODUCT_ENGAGEMENT_CONTRACT,
            "product_engagement",
            f"Pandera contract ProductEngagement: counts >= 0, USERS <= SESSIONS, sessions exactly on days with events; {_COMMON_RULES}.",
        ),
        blocking_check_spec(
            RECONCILIATION_RULE,
            "product_demand",
            "Product sales per country-day add up to BASELINE_DEMAND + sum of CHANNEL_RESPONSE (never above; below only on days with stockouts). "
            "Without channel data only the floor holds: sales reach BASELINE_DEMAND on days without stockouts.",
        ),
    ],
)
def raw_domains(context: dg.AssetExecutionContext, source: DemandSourceResource, store: DeltaStore, contract_settings: ContractSettings):
    """The snapshot's raw domains for the run's window, all checked before any is written (see
    domains/snapshot.py): a refusal of one leaves every table as it was."""
    src = source.open()
    start, end = partition_dates(context)
    categories = known_categories(src.catalog(), store)
    ctx = ContractContext(start, end, categories.allowed(contract_settings.new_categories), contract_settings.upper_bounds)
    tolerance = contract_settings.reconcile_tolerance

    def reconciliation(staged: Mapping[str, StagedTable]) -> list[ChunkCheck]:
        if Table.COUNTRY_DEMAND not in staged or (Domain.CHANNEL_SPEND_RESPONSE in src.provides and Table.CHANNEL_SPEND_RESPONSE not in staged):
            return []  # not provided (reported below), or refused (the run fails anyway)
        country = staged[Table.COUNTRY_DEMAND].frame()
        channel = staged[Table.CHANNEL_SPEND_RESPONSE].frame() if Table.CHANNEL_SPEND_RESPONSE in staged else None
        return [ChunkCheck(RECONCILIATION_RULE, lambda chunk: check_product_reconciles_with_country(chunk, country, channel, tolerance=tolerance))]

    def nothing_to_reconcile() -> list[dg.AssetCheckResult]:
        if Domain.COUNTRY_DEMAND in src.provides:
            return []
        note = f"source '{src.name}' provides no country totals: there is nothing to reconcile with"
        return [dg.AssetCheckResult(asset_key=product_demand.key, check_name=RECONCILIATION_RULE, passed=True, metadata={"rows_checked": 0, "note": note})]

    plans = [
        DomainPlan(Domain.COUNTRY_DEMAND, COUNTRY_DEMAND_CONTRACT, "country demand or macro indicators", summarize=lambda c: c, describe=_describe_country),
        DomainPlan(
            Domain.CHANNEL_SPEND_RESPONSE,
            CHANNEL_SPEND_RESPONSE_CONTRACT,
            "marketing spend or channel response",
            summarize=_summarize_channel,
            describe=_describe_channel,
        ),
        DomainPlan(
            Domain.PRODUCT_DEMAND,
            PRODUCT_DEMAND_CONTRACT,
            "product demand",
            extra_checks=reconciliation,
            check_names=(PRODUCT_DEMAND_CONTRACT, RECONCILIATION_RULE),
            summarize=_summarize_product,
            describe=_describe_product,
            when_absent=nothing_to_reconcile,
        ),
        DomainPlan(
            Domain.PRODUCT_ENGAGEMENT,
            PRODUCT_ENGAGEMENT_CONTRACT,
            "shoppers' engagement (an event log's views, carts and sessions)",
            summarize=_summarize_engagement,
            describe=_describe_engagement,
        ),
    ]
    yield from publish_snapshot(context, store, src, plans, ctx, categories)


def _describe_country(summary: pl.DataFrame) -> dict:
    if summary["DATE"].n_unique() < 2:
        return {}
    chart = line_chart_markdown(
        summary, "DATE", ["BASELINE_DEMAND", "ECONOMIC_INDEX", "UNEMPLOYMENT_RATE"], by="COUNTRY", title="Organic demand and macro indicators"
    )
    return {"chart": dg.MetadataValue.md(chart)}


def _summarize_channel(chunk: pl.DataFrame) -> pl.DataFrame:
    return chunk.group_by("DATE", "CHANNEL").agg(pl.col("SPEND").sum(), pl.col("CHANNEL_RESPONSE").sum())


def _describe_channel(summary: pl.DataFrame) -> dict:
    if summary["DATE"].n_unique() < 2:
        return {}
    return {
        "spend_and_response": dg.MetadataValue.md(
            line_chart_markdown(summary, "DATE", ["SPEND", "CHANNEL_RESPONSE"], by="CHANNEL", title="Spend and response by channel (all countries)")
        ),
        "response_vs_spend": dg.MetadataValue.md(
            scatter_chart_markdown(summary, "SPEND", "CHANNEL_RESPONSE", by="CHANNEL", title="Daily response against spend: diminishing returns and carry-over")
        ),
    }


def _summarize_product(chunk: pl.DataFrame) -> pl.DataFrame:
    return chunk.group_by("DATE", "COUNTRY").agg(
        pl.col("PRODUCT_DEMAND").sum().alias("UNITS_SOLD"),
        (~pl.col("IN_STOCK")).mean().alias("STOCKOUT_SHARE"),
        pl.col("PROMO").mean().alias("PROMO_SHARE"),
    )


def _describe_product(summary: pl.DataFrame) -> dict:
    meta: dict = {"stockout_share": float(summary["STOCKOUT_SHARE"].mean())}
    if summary["DATE"].n_unique() >= 2:
        chart = line_chart_markdown(
            summary, "DATE", ["UNITS_SOLD", "STOCKOUT_SHARE", "PROMO_SHARE"], by="COUNTRY", title="Units sold, stockout and promotion share"
        )
        meta["chart"] = dg.MetadataValue.md(chart)
    return meta


def _summarize_engagement(chunk: pl.DataFrame) -> pl.DataFrame:
    return chunk.group_by("DATE").agg(pl.col("VIEWS", "CARTS", "REMOVALS", "PURCHASES", "SESSIONS").sum())


def _describe_engagement(summary: pl.DataFrame) -> dict:
    totals = summary.select(pl.col("VIEWS", "CARTS", "PURCHASES").sum()).row(0, named=True)
    meta: dict = {
        "views": int(totals["VIEWS"]),
        "carts": int(totals["CARTS"]),
        "purchases": int(totals["PURCHASES"]),
        "cart_to_purchase": round(totals["PURCHASES"] / totals["CARTS"], 4) if totals["CARTS"] else None,
    }
    if summary["DATE"].n_unique() >= 2:
        meta["chart"] = dg.MetadataValue.md(line_chart_markdown(summary, "DATE", ["VIEWS", "CARTS", "PURCHASES"], title="Views, carts and purchases per day"))
    return meta


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
