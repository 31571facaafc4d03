"""One DataFrameModel per table: types, required non-nulls, plausible ranges, unique keys.

The window a frame must fall in and the categories it may contain depend on the run and the
source, so `TableContract.schema` adds those checks at validation time.
"""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa
import polars as pl

__all__ = [
    "ChannelResponseTruth",
    "ChannelSpendResponse",
    "CountryDemand",
    "DemandForecast",
    "ProductDemand",
    "ProductDemandTruth",
    "ProductEngagement",
    "PurchaseIntent",
    "SpendRoi",
    "TrainingDataset",
]


class CountryDemand(pa.DataFrameModel):
    """Daily organic demand per country and the macro indicators that move it."""

    DATE: dt.date = pa.Field(nullable=False)
    COUNTRY: str = pa.Field(nullable=False)
    # Plausible bounds: an index near 100, rates in percent as published by statistics offices.
    ECONOMIC_INDEX: float = pa.Field(nullable=False, gt=0, le=1000)
    INFLATION_RATE: float = pa.Field(nullable=False, ge=-10, le=50)
    UNEMPLOYMENT_RATE: float = pa.Field(nullable=False, ge=0, le=50)
    BASELINE_DEMAND: float = pa.Field(nullable=False, ge=0)

    class Config:
        strict = True
        unique = ["DATE", "COUNTRY"]


class ChannelSpendResponse(pa.DataFrameModel):
    """Daily spend per country x marketing channel and the incremental demand it drove."""

    DATE: dt.date = pa.Field(nullable=False)
    COUNTRY: str = pa.Field(nullable=False)
    CHANNEL: str = pa.Field(nullable=False)
    SPEND: float = pa.Field(nullable=False, ge=0)
    CHANNEL_RESPONSE: float = pa.Field(nullable=False, ge=0)

    class Config:
        strict = True
        unique = ["DATE", "COUNTRY", "CHANNEL"]


class ProductDemand(pa.DataFrameModel):
    """Observed daily sales per country x product; censored (IN_STOCK false) on stockout days."""

    DATE: dt.date = pa.Field(nullable=False)
    COUNTRY: str = pa.Field(nullable=False)
    PRODUCT: str = pa.Field(nullable=False)
    PRODUCT_DEMAND: int = pa.Field(nullable=False, ge=0)
    PRICE: float = pa.Field(nullable=False, gt=0)
    PROMO: bool = pa.Field(nullable=False)
    IN_STOCK: bool = pa.Field(nullable=False)
    # Sources that infer stockouts (m5, transactions): false on the days of a listing gap, a zero
    # run too long to be a stockout (the item was not on offer); such days are not training rows.
    LISTED: bool | None = pa.Field(nullable=False)
    # Calendar covariates some sources carry (M5): SNAP benefits paid out in the market's state
    # that day, and any calendar event (holiday, sporting, cultural, religious).
    SNAP: bool | None = pa.Field(nullable=False)
    IS_EVENT: bool | None = pa.Field(nullable=False)
    # Declared covariates of a `table` source (demand_assets/sources/table.py): KNOWN_<NAME> is
    # known in advance (price index, markdown, holiday), OBSERVED_<NAME> only once the day is over
    # (CPI, temperature). Finite numbers (finite_number is added to every float column).
    KNOWN: float | None = pa.Field(nullable=False, alias=r"^KNOWN_[A-Z0-9_]+$", regex=True)
    OBSERVED: float | None = pa.Field(nullable=False, alias=r"^OBSERVED_[A-Z0-9_]+$", regex=True)

    class Config:
        strict = True
        unique = ["DATE", "COUNTRY", "PRODUCT"]


class ProductEngagement(pa.DataFrameModel):
    """Shoppers' activity per country x product and day, from an event log: events of each type
    (exact duplicates dropped), and the distinct sessions and users with any event on the product."""

    DATE: dt.date = pa.Field(nullable=False)
    COUNTRY: str = pa.Field(nullable=False)
    PRODUCT: str = pa.Field(nullable=False)
    VIEWS: int = pa.Field(nullable=False, ge=0)
    CARTS: int = pa.Field(nullable=False, ge=0)
    REMOVALS: int = pa.Field(nullable=False, ge=0)
    PURCHASES: int = pa.Field(nullable=False, ge=0)
    SESSIONS: int = pa.Field(nullable=False, ge=0)
    USERS: int = pa.Field(nullable=False, ge=0)

    @pa.dataframe_check(name="users_at_most_sessions")
    def users_at_most_sessions(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("USERS") <= pl.col("SESSIONS"))

    @pa.dataframe_check(name="a_session_for_every_event_day")
    def a_session_for_every_event_day(cls, data) -> pl.LazyFrame:
        events = pl.col("VIEWS") + pl.col("CARTS") + pl.col("REMOVALS") + pl.col("PURCHASES")
        return data.lazyframe.select((events == 0) == (pl.col("SESSIONS") == 0))

    class Config:
        strict = True
        unique = ["DATE", "COUNTRY", "PRODUCT"]


class PurchaseIntent(pa.DataFrameModel):
    """Per day, every session of an event log with a cart, scored by the next-event champion as
    of its first cart event: P_PURCHASE (a purchase still to come), AT_RISK (below the model's
    threshold), what its cart held at the session's end and whether it bought."""

    DATE: dt.date = pa.Field(nullable=False)
    USER_SESSION: str = pa.Field(nullable=False)
    USER_ID: str = pa.Field(nullable=True)
    PRODUCTS_IN_CART: int = pa.Field(nullable=False, ge=0)
    CART_VALUE: float = pa.Field(nullable=False, ge=0)
    P_PURCHASE: float = pa.Field(nullable=False, ge=0, le=1)
    AT_RISK: bool = pa.Field(nullable=False)
    PURCHASED: bool = pa.Field(nullable=False)
    MODEL: str = pa.Field(nullable=False)
    MODEL_VERSION: str = pa.Field(nullable=False)

    @pa.dataframe_check(name="at_risk_means_no_purchase_probability_above_others")
    def at_risk_below_the_rest(cls, data) -> pl.LazyFrame:
        # One threshold per model version: every flagged session scores below every unflagged one.
        flagged = pl.col("P_PURCHASE").filter(pl.col("AT_RISK")).max().over("MODEL_VERSION")
        kept = pl.col("P_PURCHASE").filter(~pl.col("AT_RISK")).min().over("MODEL_VERSION")
        return data.lazyframe.select((flagged.is_null() | kept.is_null() | (flagged <= kept)).alias("ok"))

    class Config:
        strict = True
        unique = ["DATE", "USER_SESSION"]


class ProductDemandTruth(pa.DataFrameModel):
    """Synthetic ground truth: uncensored demand and the generator's expected demand (the oracle)."""

    DATE: dt.date = pa.Field(nullable=False)
    COUNTRY: str = pa.Field(nullable=False)
    PRODUCT: str = pa.Field(nullable=False)
    TRUE_DEMAND: int = pa.Field(nullable=False, ge=0)
    EXPECTED_DEMAND: float = pa.Field(nullable=False, ge=0)
    LOST_SALES: int = pa.Field(nullable=False, ge=0)

    class Config:
        strict = True
        unique = ["DATE", "COUNTRY", "PRODUCT"]


class ChannelResponseTruth(pa.DataFrameModel):
    """Synthetic ground truth: the expected response and the true adstock and Hill parameters
    behind the measured CHANNEL_RESPONSE."""

    DATE: dt.date = pa.Field(nullable=False)
    COUNTRY: str = pa.Field(nullable=False)
    CHANNEL: str = pa.Field(nullable=False)
    TRUE_RESPONSE: float = pa.Field(nullable=False, ge=0)
    ADSTOCKED_SPEND: float = pa.Field(nullable=False, ge=0)
    TRUE_DECAY: float = pa.Field(nullable=False, ge=0, lt=1)
    TRUE_MAX_LAG: int = pa.Field(nullable=False, ge=0)
    TRUE_HALF_SATURATION: float = pa.Field(nullable=False, gt=0)
    TRUE_HILL_SLOPE: float = pa.Field(nullable=False, gt=0)
    TRUE_RESPONSE_CAP: float = pa.Field(nullable=False, ge=0)

    class Config:
        strict = True
        unique = ["DATE", "COUNTRY", "CHANNEL"]


class TrainingDataset(pa.DataFrameModel):
    """One row per DATE x COUNTRY x PRODUCT: the target and features known at forecast time.

    Lags and rolling means are null where the look-back reaches before the first stored day.
    Lags and windows are in days: a daily source has lags 1/7/14/28 and means over 7/28 days, a
    weekly one lags 7/14/28/364 (1, 2, 4, 52 weeks) and means over 28/91 days (4, 13 weeks).
    Spend and macro columns are optional: a source without those domains yields none.
    """

    DATE: dt.date = pa.Field(nullable=False)
    COUNTRY: str = pa.Field(nullable=False)
    PRODUCT: str = pa.Field(nullable=False)
    CATEGORY: str = pa.Field(nullable=False)
    PRODUCT_DEMAND: int = pa.Field(nullable=False, ge=0)
    IN_STOCK: bool = pa.Field(nullable=False)
    PRICE: float = pa.Field(nullable=False, gt=0)
    PROMO: bool = pa.Field(nullable=False)
    DEMAND_LAG_1: int | None = pa.Field(nullable=True, ge=0)
    DEMAND_LAG_7: int | None = pa.Field(nullable=True, ge=0)
    DEMAND_LAG_14: int | None = pa.Field(nullable=True, ge=0)
    DEMAND_LAG_28: int | None = pa.Field(nullable=True, ge=0)
    DEMAND_LAG_364: int | None = pa.Field(nullable=True, ge=0)  # weekly sources: 52 weeks earlier
    DEMAND_ROLL_MEAN_7: float | None = pa.Field(nullable=True, ge=0)
    DEMAND_ROLL_MEAN_28: float | None = pa.Field(nullable=True, ge=0)
    DEMAND_ROLL_MEAN_91: float | None = pa.Field(nullable=True, ge=0)  # weekly sources: the 13 weeks before
    DAY_OF_WEEK: int = pa.Field(nullable=False, ge=1, le=7)
    WEEK_OF_YEAR: int = pa.Field(nullable=False, ge=1, le=53)
    MONTH: int = pa.Field(nullable=False, ge=1, le=12)
    DAY_OF_YEAR: int = pa.Field(nullable=False, ge=1, le=366)
    IS_HOLIDAY: bool = pa.Field(nullable=False)
    ECONOMIC_INDEX: float | None = pa.Field(nullable=True, gt=0)
    INFLATION_RATE: float | None = pa.Field(nullable=True)
    UNEMPLOYMENT_RATE: float | None = pa.Field(nullable=True, ge=0)
    SNAP: bool | None = pa.Field(nullable=False)
    IS_EVENT: bool | None = pa.Field(nullable=False)
    SPEND: float | None = pa.Field(nullable=True, ge=0, alias=r"^SPEND_[A-Z0-9_]+$", regex=True)
    RESPONSE: float | None = pa.Field(nullable=True, ge=0, alias=r"^RESPONSE_[A-Z0-9_]+$", regex=True)
    # A table source's covariates: known ones on the same day, observed ones only lagged (null
    # where the look-back reaches before the first stored day).
    KNOWN: float | None = pa.Field(nullable=True, alias=r"^KNOWN_[A-Z0-9_]+$", regex=True)
    OBSERVED_LAG: float | None = pa.Field(nullable=True, alias=r"^OBSERVED_[A-Z0-9_]+_LAG_[0-9]+$", regex=True)
    # An event log's engagement, only lagged (demand_assets/features/engagement.py).
    ENGAGEMENT_LAG: float | None = pa.Field(nullable=True, ge=0, alias=r"^ENGAGEMENT_[A-Z0-9_]+_LAG_[0-9]+$", regex=True)

    class Config:
        strict = True
        unique = ["DATE", "COUNTRY", "PRODUCT"]


class DemandForecast(pa.DataFrameModel):
    """The champion's forecast made as of DATE for each of the next HORIZON_DAY days."""

    DATE: dt.date = pa.Field(nullable=False)  # the forecast origin (as-of day, the partition)
    COUNTRY: str = pa.Field(nullable=False)
    PRODUCT: str = pa.Field(nullable=False)
    HORIZON_DAY: int = pa.Field(nullable=False, ge=1)
    TARGET_DATE: dt.date = pa.Field(nullable=False)
    MEAN: float = pa.Field(nullable=False, ge=0)
    P10: float = pa.Field(nullable=False, ge=0)
    P50: float = pa.Field(nullable=False, ge=0)
    P90: float = pa.Field(nullable=False, ge=0)
    MODEL: str = pa.Field(nullable=False)
    MODEL_VERSION: str = pa.Field(nullable=False)

    @pa.dataframe_check(name="quantiles_ordered(P10 <= P50 <= P90)")
    def quantiles_ordered(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("P10") <= pl.col("P50")) & (pl.col("P50") <= pl.col("P90")))

    @pa.dataframe_check(name="target_date_is_date_plus_horizon_day")
    def target_date_consistent(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("TARGET_DATE") == pl.col("DATE") + pl.duration(days=pl.col("HORIZON_DAY")))

    class Config:
        strict = True
        unique = ["DATE", "COUNTRY", "PRODUCT", "HORIZON_DAY"]


class SpendRoi(pa.DataFrameModel):
    """Per day x country x channel: spend, the incremental units and revenue the fitted response
    curve credits it with, ROI and marginal ROI, with bootstrap bands."""

    DATE: dt.date = pa.Field(nullable=False)
    COUNTRY: str = pa.Field(nullable=False)
    CHANNEL: str = pa.Field(nullable=False)
    SPEND: float = pa.Field(nullable=False, ge=0)
    ADSTOCKED_SPEND: float = pa.Field(nullable=False, ge=0)
    INCREMENTAL_UNITS: float = pa.Field(nullable=False, ge=0)
    INCREMENTAL_UNITS_P10: float = pa.Field(nullable=False, ge=0)
    INCREMENTAL_UNITS_P90: float = pa.Field(nullable=False, ge=0)
    UNIT_REVENUE: float = pa.Field(nullable=False, gt=0)
    INCREMENTAL_REVENUE: float = pa.Field(nullable=False, ge=0)
    ROI: float | None = pa.Field(nullable=True, ge=0)  # null: no spend that day
    ROI_28D: float | None = pa.Field(nullable=True, ge=0)
    ROI_28D_P10: float | None = pa.Field(nullable=True, ge=0)
    ROI_28D_P90: float | None = pa.Field(nullable=True, ge=0)
    MARGINAL_ROI: float = pa.Field(nullable=False, ge=0)
    MARGINAL_ROI_P10: float = pa.Field(nullable=False, ge=0)
    MARGINAL_ROI_P90: float = pa.Field(nullable=False, ge=0)

    @pa.dataframe_check(name="band_ordered(INCREMENTAL_UNITS_P10 <= INCREMENTAL_UNITS_P90)")
    def band_ordered(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("INCREMENTAL_UNITS_P10") <= pl.col("INCREMENTAL_UNITS_P90") + 1e-9)

    class Config:
        strict = True
        unique = ["DATE", "COUNTRY", "CHANNEL"]
