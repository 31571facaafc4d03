"""The table registry: every Delta table the graph writes, with its keys, contract and meaning.

One entry per table is the single home of its name (the `Table` member, a `str`), the key
columns the store sorts reads by, the Pandera contract that gates its writes (if any), the
asset that writes it and how (a daily window or a whole snapshot), and the description the
docs' data dictionary shows. The store, the contracts, the CSV exporter and the docs read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from contracts.tables import (
    ChannelResponseTruth,
    ChannelSpendResponse,
    CountryDemand,
    DemandForecast,
    ProductDemand,
    ProductDemandTruth,
    ProductEngagement,
    PurchaseIntent,
    SpendRoi,
    TrainingDataset,
)
from contracts.validation import TableContract

__all__ = ["CONTRACTS", "PLAUSIBLE_UPPER_BOUNDS", "TABLES", "Table", "TableSpec", "registry_markdown", "table_spec"]


class Table(StrEnum):
    """Names of the Delta tables (each member is its table's name as a plain string)."""

    COUNTRY_DEMAND = "country_demand"
    CHANNEL_SPEND_RESPONSE = "channel_spend_response"
    PRODUCT_DEMAND = "product_demand"
    PRODUCT_DEMAND_TRUTH = "product_demand_truth"
    PRODUCT_ENGAGEMENT = "product_engagement"
    CHANNEL_RESPONSE_TRUTH = "channel_response_truth"
    TRAINING_DATASET = "training_dataset"
    BACKTEST_FORECASTS = "backtest_forecasts"
    BACKTEST_METRICS = "backtest_metrics"
    BACKTEST_SETTINGS = "backtest_settings"
    DRIFT_REFERENCE = "drift_reference"
    DEMAND_FORECAST = "demand_forecast"
    FORECAST_ACCURACY = "forecast_accuracy"
    RESPONSE_CURVES = "response_curves"
    SPEND_ROI = "spend_roi"
    BUDGET_ALLOCATION = "budget_allocation"
    SPEND_SCENARIO = "spend_scenario"
    SPEND_SCENARIO_SERIES = "spend_scenario_series"
    FORECAST_ERROR_COST = "forecast_error_cost"
    INSTOCK_VALUE = "instock_value"
    SKU_BACKTEST_METRICS = "sku_backtest_metrics"
    NEXT_EVENT_METRICS = "next_event_metrics"
    PURCHASE_INTENT = "purchase_intent"


@dataclass(frozen=True)
class TableSpec:
    """What the graph knows about one table."""

    table: Table
    keys: tuple[str, ...]  # unique per row; reads come back sorted by them
    asset: str  # the asset that writes it
    write: Literal["window", "snapshot"]  # a daily window replaced per run, or the whole table
    description: str
    contract: TableContract | None = None
    csv_file: str | None = None  # its file in a daily CSV snapshot (the raw domains only)
    # Columns that follow the source's domains (spend features only where there is spend): a
    # window written with other columns adds them to the table, earlier rows read them as null.
    evolving_columns: bool = False

    @property
    def name(self) -> str:
        return self.table.value


# The largest value a column can plausibly hold, per row (a day of one country, channel or
# product). Generous on purpose: they catch unit and parsing errors (1e308, cents read as
# millions), not unusual days. Override per deployment with the contract_settings resource.
PLAUSIBLE_UPPER_BOUNDS: dict[str, float] = {
    "BASELINE_DEMAND": 1e10,
    "SPEND": 1e10,
    "CHANNEL_RESPONSE": 1e10,
    "PRICE": 1e7,
    "TRUE_RESPONSE": 1e10,
    "ADSTOCKED_SPEND": 1e10,
    "EXPECTED_DEMAND": 1e9,
}

_DATE_COUNTRY_PRODUCT = ("DATE", "COUNTRY", "PRODUCT")
_DATE_COUNTRY_CHANNEL = ("DATE", "COUNTRY", "CHANNEL")


def _contracted(
    table: Table,
    model,
    keys: tuple[str, ...],
    categories: tuple[str, ...],
    asset: str,
    description: str,
    csv_file: str | None = None,
    *,
    evolving_columns: bool = False,
) -> TableSpec:
    contract = TableContract(table.value, model, keys, categories, upper_bounds=PLAUSIBLE_UPPER_BOUNDS)
    return TableSpec(table, keys, asset, "window", description, contract, csv_file, evolving_columns)


_SPECS = [
    _contracted(
        Table.COUNTRY_DEMAND,
        CountryDemand,
        ("DATE", "COUNTRY"),
        ("COUNTRY",),
        "country_demand",
        "Daily organic demand per country (BASELINE_DEMAND) and the macro indicators that move it.",
        "demand_spend_country_daily.csv",
    ),
    _contracted(
        Table.CHANNEL_SPEND_RESPONSE,
        ChannelSpendResponse,
        _DATE_COUNTRY_CHANNEL,
        ("COUNTRY", "CHANNEL"),
        "channel_spend_response",
        "Daily marketing SPEND per country x channel and the incremental demand it drove (CHANNEL_RESPONSE).",
        "demand_spend_by_channel_daily.csv",
    ),
    _contracted(
        Table.PRODUCT_DEMAND,
        ProductDemand,
        _DATE_COUNTRY_PRODUCT,
        ("COUNTRY", "PRODUCT"),
        "product_demand",
        "Observed daily sales per country x product with PRICE, PROMO and IN_STOCK (censored on stockout days).",
        "demand_by_product_daily.csv",
        # LISTED (listing gaps, real sources) joined later: a store written before keeps its rows.
        evolving_columns=True,
    ),
    _contracted(
        Table.PRODUCT_ENGAGEMENT,
        ProductEngagement,
        _DATE_COUNTRY_PRODUCT,
        ("COUNTRY", "PRODUCT"),
        "product_engagement",
        "Shoppers' activity per country x product and day from an event log: VIEWS, CARTS, REMOVALS, PURCHASES, SESSIONS, USERS.",
    ),
    _contracted(
        Table.PRODUCT_DEMAND_TRUTH,
        ProductDemandTruth,
        _DATE_COUNTRY_PRODUCT,
        ("COUNTRY", "PRODUCT"),
        "product_demand_truth",
        "Synthetic ground truth per country x product: uncensored TRUE_DEMAND, EXPECTED_DEMAND (the oracle) and LOST_SALES.",
    ),
    _contracted(
        Table.CHANNEL_RESPONSE_TRUTH,
        ChannelResponseTruth,
        _DATE_COUNTRY_CHANNEL,
        ("COUNTRY", "CHANNEL"),
        "channel_response_truth",
        "Synthetic ground truth per country x channel: the true adstock and Hill parameters and the expected response.",
    ),
    _contracted(
        Table.TRAINING_DATASET,
        TrainingDataset,
        _DATE_COUNTRY_PRODUCT,
        ("COUNTRY", "PRODUCT"),
        "training_dataset",
        "One row per day x country x product: the target with its lags, rolling means, calendar, price, promotion, macro and spend features.",
        evolving_columns=True,
    ),
    _contracted(
        Table.SPEND_ROI,
        SpendRoi,
        _DATE_COUNTRY_CHANNEL,
        ("COUNTRY", "CHANNEL"),
        "spend_roi",
        "Per day x country x channel: spend, credited incremental units and revenue, daily and 28-day ROI, marginal ROI.",
    ),
    _contracted(
        Table.DEMAND_FORECAST,
        DemandForecast,
        ("DATE", "COUNTRY", "PRODUCT", "HORIZON_DAY"),
        ("COUNTRY", "PRODUCT"),
        "demand_forecast",
        "The champion's forecast made as of DATE for each of the next HORIZON_DAY days: MEAN, P10, P50, P90, model and version.",
    ),
    TableSpec(
        Table.FORECAST_ACCURACY,
        ("DATE",),
        "forecast_accuracy",
        "window",
        "Per day: the realised in-stock WAPE, bias and P10-P90 coverage of the forecast made 28 days earlier, beside its backtest WAPE.",
    ),
    TableSpec(
        Table.BACKTEST_FORECASTS,
        ("MODEL", "FOLD", "DATE", "COUNTRY", "PRODUCT"),
        "model_backtest",
        "snapshot",
        "Every backtested model's forecasts per fold with the actuals, IN_STOCK and (synthetic) TRUE_DEMAND.",
    ),
    TableSpec(
        Table.BACKTEST_METRICS,
        ("MODEL", "FOLD", "REGIME"),
        "model_backtest",
        "snapshot",
        "Metrics per model, fold (-1: all folds) and regime (all, in_stock, true): WAPE, RMSE, MASE, bias, pinball losses, coverage, WRMSSE.",
    ),
    TableSpec(
        Table.BACKTEST_SETTINGS,
        (),
        "model_backtest",
        "snapshot",
        "The settings the newest backtest ran with (models, folds, training window, model settings as JSON); champion_model refits with them.",
    ),
    TableSpec(
        Table.DRIFT_REFERENCE,
        _DATE_COUNTRY_PRODUCT,
        "champion_model",
        "snapshot",
        "A seeded sample of the champion's training window: the reference the drift checks compare the newest days with.",
    ),
    TableSpec(
        Table.RESPONSE_CURVES,
        ("COUNTRY", "CHANNEL", "DRAW"),
        "spend_response_model",
        "snapshot",
        "Fitted adstock + Hill response curves per country x channel; DRAW 0 is the point estimate, 1..B bootstrap replicates.",
    ),
    TableSpec(
        Table.BUDGET_ALLOCATION,
        ("COUNTRY", "CHANNEL"),
        "budget_allocation",
        "snapshot",
        "The optimal daily spend per country x channel for the planning window, against the current spend, with revenues and marginal ROI.",
    ),
    TableSpec(
        Table.SPEND_SCENARIO,
        ("COUNTRY", "PRODUCT", "TARGET_DATE"),
        "spend_scenario",
        "snapshot",
        "A spend plan's daily demand forecast per country x product against business as usual, with quantiles.",
    ),
    TableSpec(
        Table.SPEND_SCENARIO_SERIES,
        ("COUNTRY", "PRODUCT"),
        "spend_scenario",
        "snapshot",
        "A spend plan's incremental and stock-credited units and revenue per country x product over the horizon.",
    ),
    TableSpec(
        Table.FORECAST_ERROR_COST,
        ("MODEL", "REGIME"),
        "forecast_error_cost",
        "snapshot",
        "The money cost of each backtested model's errors (holding vs lost margin), stocking P50 or the critical-ratio quantile.",
    ),
    TableSpec(
        Table.INSTOCK_VALUE,
        ("COUNTRY", "PRODUCT"),
        "instock_value",
        "snapshot",
        "Per country x product: extra units, revenue and margin over the horizon if the series never ran out of stock (P10/P50/P90).",
    ),
    TableSpec(
        Table.SKU_BACKTEST_METRICS,
        ("FREQUENCY", "MODEL", "FOLD"),
        "sku_forecast_models",
        "snapshot",
        "Backtest metrics of the per-SKU service models (TCN against the mean of the last four periods), weekly and daily.",
    ),
    TableSpec(
        Table.NEXT_EVENT_METRICS,
        ("MODEL",),
        "next_event_model",
        "snapshot",
        "Next-event models scored on the newest sessions of an event log (time split): accuracy, macro-F1, log loss, ECE, purchase ROC/PR-AUC; the truth's scores on a generated log.",
    ),
    _contracted(
        Table.PURCHASE_INTENT,
        PurchaseIntent,
        ("DATE", "USER_SESSION"),
        (),
        "purchase_intent",
        "Per day, the sessions with a cart scored as of their first cart: P_PURCHASE, the AT_RISK flag, cart contents and value, whether they bought.",
    ),
]

TABLES: dict[Table, TableSpec] = {spec.table: spec for spec in _SPECS}
CONTRACTS: dict[str, TableContract] = {spec.name: spec.contract for spec in _SPECS if spec.contract is not None}


def table_spec(name: str) -> TableSpec:
    """The registry entry of `name`; a clear error for a table the graph does not know."""
    try:
        return TABLES[Table(name)]
    except ValueError:
        raise KeyError(f"'{name}' is not a registered table; known tables: {', '.join(t.value for t in Table)} (see contracts/registry.py)") from None


def registry_markdown() -> str:
    """The registry as the markdown table of the docs' data dictionary (generated, never hand-kept)."""
    lines = ["| table | written by | write | keys | contract | what it holds |", "|---|---|---|---|---|---|"]
    for spec in TABLES.values():
        keys = ", ".join(spec.keys) or "(one row)"
        contract = "Pandera, blocking" if spec.contract is not None else ""
        lines.append(f"| `{spec.name}` | `{spec.asset}` | {spec.write} | {keys} | {contract} | {spec.description} |")
    return "\n".join(lines) + "\n"
