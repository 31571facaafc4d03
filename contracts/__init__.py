"""Data contracts: one Pandera DataFrameModel per table, plus cross-table rules.

A contract is checked before anything is written; a broken one raises `ContractError`, whose
message names the rule, the column and the offending rows.
"""

from contracts.cadence import DAILY, Cadence
from contracts.cross_table import (
    DOMAIN_COLUMNS_RULE,
    FORECAST_HORIZON_RULE,
    LAG_INTEGRITY_RULE,
    RECONCILIATION_RULE,
    check_domain_columns,
    check_forecast_horizon_complete,
    check_lag_integrity,
    check_product_reconciles_with_country,
)
from contracts.registry import CONTRACTS, TABLES, Table, TableSpec, table_spec
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
from contracts.validation import ContractContext, ContractError, ContractReport, SourceFormatError, TableContract, Violation

__all__ = [
    "CONTRACTS",
    "DAILY",
    "DOMAIN_COLUMNS_RULE",
    "FORECAST_HORIZON_RULE",
    "LAG_INTEGRITY_RULE",
    "RECONCILIATION_RULE",
    "Cadence",
    "ChannelResponseTruth",
    "ChannelSpendResponse",
    "ContractContext",
    "ContractError",
    "ContractReport",
    "CountryDemand",
    "DemandForecast",
    "ProductDemand",
    "ProductDemandTruth",
    "ProductEngagement",
    "PurchaseIntent",
    "SourceFormatError",
    "SpendRoi",
    "TABLES",
    "Table",
    "TableSpec",
    "TableContract",
    "TrainingDataset",
    "Violation",
    "check_domain_columns",
    "check_forecast_horizon_complete",
    "check_lag_integrity",
    "check_product_reconciles_with_country",
    "table_spec",
]
