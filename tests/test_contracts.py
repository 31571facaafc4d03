import dataclasses
import datetime as dt

import polars as pl
import pytest

from contracts import (
    CONTRACTS,
    ContractContext,
    ContractError,
    check_lag_integrity,
    check_product_reconciles_with_country,
)
from demand_assets.features import DEMAND_LAGS, LOOKBACK_DAYS, ROLLING_WINDOWS, build_training_dataset
from demand_assets.sources import Domain
from tests.conftest import read_all

START, END = dt.date(2024, 3, 1), dt.date(2024, 3, 8)


@pytest.fixture(scope="module")
def frames(small_source):
    cat = small_source.catalog()
    ctx = ContractContext(START, END, {"COUNTRY": cat.countries, "CHANNEL": cat.channels, "PRODUCT": cat.product_ids})
    data = {d.value: read_all(small_source, d, START, END) for d in small_source.provides}
    return ctx, data


def _only_violation(report):
    assert not report.passed
    return {(v.rule, v.column): v for v in report.violations}


@pytest.mark.parametrize("table", ["country_demand", "channel_spend_response", "product_demand", "product_demand_truth", "channel_response_truth"])
def test_generated_tables_satisfy_their_contracts(frames, table):
    ctx, data = frames
    report = CONTRACTS[table].validate(data[table], ctx)
    assert report.passed, report.describe()


BAD_CASES = [
    # table, column, corruption of row 3, expected rule fragment
    ("channel_spend_response", "SPEND", pl.lit(-5.0), "greater_than_or_equal_to(0)"),
    ("channel_spend_response", "CHANNEL", pl.lit("CARRIER_PIGEON"), "known_channel"),
    ("country_demand", "INFLATION_RATE", pl.lit(75.0), "less_than_or_equal_to(50)"),
    ("country_demand", "UNEMPLOYMENT_RATE", pl.lit(-1.0), "greater_than_or_equal_to(0)"),
    ("country_demand", "COUNTRY", pl.lit("ATLANTIS"), "known_country"),
    ("country_demand", "BASELINE_DEMAND", pl.lit(None, pl.Float64), "not_nullable"),
    ("product_demand", "PRODUCT_DEMAND", pl.lit(-1, pl.Int64), "greater_than_or_equal_to(0)"),
    ("product_demand", "PRICE", pl.lit(0.0), "greater_than(0)"),
    ("product_demand", "PRODUCT", pl.lit("P99999"), "known_product"),
    ("product_demand", "DATE", pl.lit(dt.date(2024, 3, 9)), "date_inside_partition"),
    # Numbers no business produces: stored and fed to the models before these rules existed.
    ("channel_spend_response", "SPEND", pl.lit(float("inf")), "finite_number"),
    ("channel_spend_response", "SPEND", pl.lit(1e308), "at_most_1e+10"),
    ("channel_spend_response", "CHANNEL_RESPONSE", pl.lit(float("inf")), "finite_number"),
    ("channel_spend_response", "CHANNEL_RESPONSE", pl.lit(1e308), "at_most_1e+10"),
    ("product_demand", "PRICE", pl.lit(float("inf")), "finite_number"),
    ("product_demand", "PRICE", pl.lit(1e308), "at_most_1e+07"),
    ("country_demand", "BASELINE_DEMAND", pl.lit(float("nan")), "finite_number"),
    ("country_demand", "BASELINE_DEMAND", pl.lit(1e308), "at_most_1e+10"),
]


@pytest.mark.parametrize(("table", "column", "value", "rule"), BAD_CASES, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in BAD_CASES])
def test_each_rule_rejects_a_crafted_bad_row(frames, table, column, value, rule):
    ctx, data = frames
    frame = data[table].with_row_index("_i").with_columns(pl.when(pl.col("_i") == 3).then(value).otherwise(pl.col(column)).alias(column)).drop("_i")
    report = CONTRACTS[table].validate(frame, ctx)
    violations = _only_violation(report)
    match = [v for (r, c), v in violations.items() if rule in r and c == column]
    assert match, report.describe()
    offending = match[0]
    assert offending.n_rows == 1
    # The message names the rule, the column and the offending row by its keys.
    message = str(ContractError([report]))
    assert rule in message and column in message
    key_values = data[table].row(3, named=True)
    assert str(key_values["DATE"]) in message or column == "DATE"
    assert str(key_values["COUNTRY"]) in message or column == "COUNTRY"


def test_duplicate_keys_are_rejected(frames):
    ctx, data = frames
    frame = pl.concat([data["product_demand"], data["product_demand"].head(2)])
    violations = _only_violation(CONTRACTS["product_demand"].validate(frame, ctx))
    assert any("uniqueness" in rule for rule, _ in violations)


def test_wrong_dtype_and_missing_column_are_rejected(frames):
    ctx, data = frames
    wrong_type = data["product_demand"].with_columns(pl.col("PRODUCT_DEMAND").cast(pl.Float64))
    violations = _only_violation(CONTRACTS["product_demand"].validate(wrong_type, ctx))
    assert ("dtype('Int64')", "PRODUCT_DEMAND") in violations
    missing = data["product_demand"].drop("IN_STOCK")
    report = CONTRACTS["product_demand"].validate(missing, ctx)
    assert not report.passed and "IN_STOCK" in report.describe()


def test_unexpected_column_is_rejected(frames):
    ctx, data = frames
    report = CONTRACTS["country_demand"].validate(data["country_demand"].with_columns(pl.lit(1.0).alias("GDP")), ctx)
    assert not report.passed and "GDP" in report.describe()


def test_reconciliation_passes_on_generated_data_and_catches_inflated_sales(frames):
    _, data = frames
    product, country, channel = data["product_demand"], data["country_demand"], data["channel_spend_response"]
    assert check_product_reconciles_with_country(product, country, channel, tolerance=0.01).passed
    # A double-counted product (a unit error, a duplicated feed) pushes sales above the total.
    target = product.filter(pl.col("IN_STOCK")).sort("PRODUCT_DEMAND", descending=True).row(0, named=True)
    inflated = product.with_columns(
        pl.when((pl.col("DATE") == target["DATE"]) & (pl.col("COUNTRY") == target["COUNTRY"]) & (pl.col("PRODUCT") == target["PRODUCT"]))
        .then(pl.col("PRODUCT_DEMAND") * 10)
        .otherwise(pl.col("PRODUCT_DEMAND"))
    )
    report = check_product_reconciles_with_country(inflated, country, channel, tolerance=0.01)
    assert not report.passed
    (violation,) = report.violations
    assert violation.rule.startswith("product_sum_at_most_country_total") and violation.column == "PRODUCT_DEMAND"
    assert violation.examples[0]["DATE"] == target["DATE"] and violation.examples[0]["COUNTRY"] == target["COUNTRY"]


def test_reconciliation_catches_missing_products_only_when_nothing_is_censored(frames):
    _, data = frames
    product, country, channel = data["product_demand"], data["country_demand"], data["channel_spend_response"]
    in_stock_days = product.group_by("DATE", "COUNTRY").agg(pl.col("IN_STOCK").all()).filter(pl.col("IN_STOCK"))
    day = in_stock_days.sort("DATE").row(0, named=True)
    # Drop the best seller on a fully in-stock day: sales no longer reach the country's total.
    best = product.filter((pl.col("DATE") == day["DATE"]) & (pl.col("COUNTRY") == day["COUNTRY"])).sort("PRODUCT_DEMAND").row(-1, named=True)
    missing = product.filter(~((pl.col("DATE") == day["DATE"]) & (pl.col("COUNTRY") == day["COUNTRY"]) & (pl.col("PRODUCT") == best["PRODUCT"])))
    report = check_product_reconciles_with_country(missing, country, channel, tolerance=0.01)
    assert any(v.rule.startswith("product_sum_reaches_country_total_when_in_stock") for v in report.violations)
    # The same shortfall on a day flagged as censored is legitimate (lost sales are unobserved).
    censored = missing.with_columns(
        pl.when((pl.col("DATE") == day["DATE"]) & (pl.col("COUNTRY") == day["COUNTRY"]) & (pl.col("PRODUCT") == missing["PRODUCT"][0]))
        .then(False)
        .otherwise(pl.col("IN_STOCK"))
        .alias("IN_STOCK")
    )
    assert check_product_reconciles_with_country(censored, country, channel, tolerance=0.01).passed


def test_reconciliation_flags_a_missing_country_total(frames):
    _, data = frames
    country = data["country_demand"].filter(pl.col("DATE") != START)
    report = check_product_reconciles_with_country(data["product_demand"], country, data["channel_spend_response"], tolerance=0.01)
    assert [v.rule for v in report.violations] == ["country_total_present"]


@pytest.fixture(scope="module")
def training(small_source):
    history = read_all(small_source, Domain.PRODUCT_DEMAND, START - dt.timedelta(days=LOOKBACK_DAYS), END)
    frame = build_training_dataset(history, None, None, small_source.catalog().products, START, END)
    return history, frame


def test_lag_integrity_passes_on_built_features(training):
    history, frame = training
    assert check_lag_integrity(frame, history, lags=DEMAND_LAGS, windows=ROLLING_WINDOWS).passed


@pytest.mark.parametrize("column", ["DEMAND_LAG_7", "DEMAND_LAG_28", "DEMAND_ROLL_MEAN_7"])
def test_lag_integrity_catches_a_shifted_feature(training, column):
    history, frame = training
    tampered = frame.with_row_index("_i").with_columns(pl.when(pl.col("_i") == 5).then(pl.col(column) + 1).otherwise(pl.col(column)).alias(column)).drop("_i")
    report = check_lag_integrity(tampered, history, lags=DEMAND_LAGS, windows=ROLLING_WINDOWS)
    assert [v.column for v in report.violations] == [column]
    assert report.violations[0].n_rows == 1
    assert column in report.describe()


def test_training_contract_accepts_built_features_and_rejects_negative_lag(training, frames):
    ctx, _ = frames
    _, frame = training
    contract = CONTRACTS["training_dataset"]
    assert contract.validate(frame, ctx).passed
    bad = frame.with_columns(pl.lit(-1, pl.Int64).alias("DEMAND_LAG_1"))
    assert not contract.validate(bad, ctx).passed


def _forecast_frame():
    rows = [
        {
            "DATE": START,
            "COUNTRY": "US",
            "PRODUCT": "P00001",
            "HORIZON_DAY": h,
            "TARGET_DATE": START + dt.timedelta(days=h),
            "MEAN": 2.0,
            "P10": 1.0,
            "P50": 2.0,
            "P90": 3.0,
            "MODEL": "lightgbm",
            "MODEL_VERSION": "1",
        }
        for h in (1, 2, 3)
    ]
    return pl.DataFrame(rows)


def test_forecast_contract_rejects_crossed_quantiles_and_wrong_target_dates(frames):
    ctx, _ = frames
    contract = CONTRACTS["demand_forecast"]
    assert contract.validate(_forecast_frame(), ctx).passed
    crossed = _forecast_frame().with_columns(pl.when(pl.col("HORIZON_DAY") == 2).then(5.0).otherwise(pl.col("P10")).alias("P10"))
    report = contract.validate(crossed, ctx)
    assert any("quantiles_ordered" in v.rule and v.n_rows == 1 for v in report.violations), report.describe()
    shifted = _forecast_frame().with_columns(pl.col("TARGET_DATE") + dt.timedelta(days=1))
    assert any("target_date" in v.rule for v in contract.validate(shifted, ctx).violations)


def test_forecast_horizon_completeness(frames):
    from contracts import check_forecast_horizon_complete

    series = pl.DataFrame({"COUNTRY": ["US", "DE"], "PRODUCT": ["P00001", "P00001"]})
    report = check_forecast_horizon_complete(_forecast_frame(), series, 3)
    (violation,) = report.violations
    assert violation.n_rows == 1 and violation.examples[0]["COUNTRY"] == "DE"  # DE has no forecast at all
    gap = _forecast_frame().filter(pl.col("HORIZON_DAY") != 2)
    assert not check_forecast_horizon_complete(gap, series.head(1), 3).passed
    assert check_forecast_horizon_complete(_forecast_frame(), series.head(1), 3).passed


def test_domain_columns_follow_what_the_source_provides(training):
    from contracts import DOMAIN_COLUMNS_RULE, check_domain_columns

    _, frame = training  # built without country or channel data: no macro, no spend columns
    assert check_domain_columns(frame, has_country=False, has_channel=False).passed
    missing = check_domain_columns(frame, has_country=True, has_channel=True)
    assert missing.check == DOMAIN_COLUMNS_RULE
    assert [v.rule for v in missing.violations] == ["macro_columns_only_from_country_data", "spend_columns_only_from_channel_data"]
    invented = frame.with_columns(pl.lit(1.0).alias("SPEND_TV"))
    report = check_domain_columns(invented, has_country=False, has_channel=False)
    assert [v.column for v in report.violations] == ["SPEND_*"] and "SPEND_TV" in report.describe()


def test_upper_bounds_are_configurable_per_deployment(frames):
    """A bound from the run's context (the contract_settings resource) overrides the registry's."""
    ctx, data = frames
    frame = data["channel_spend_response"]
    big = float(frame["SPEND"].max())
    assert CONTRACTS["channel_spend_response"].validate(frame, ctx).passed
    tight = dataclasses.replace(ctx, upper_bounds={"SPEND": big / 2})
    report = CONTRACTS["channel_spend_response"].validate(frame, tight)
    assert not report.passed and any(v.rule == f"at_most_{big / 2:g}" and v.column == "SPEND" for v in report.violations)


def test_a_series_missing_a_day_in_a_middle_chunk_is_a_named_hole():
    """Completeness is judged across the window's chunks, whose per-series spans are folded as
    they pass: a series with rows in the first and last chunks but none on a day of the middle
    one is refused, naming the series and the day count; the same window whole passes."""
    from contracts import ContractError, ContractReport
    from contracts.registry import Table
    from demand_assets.domains.publishing import ChunkCheck, WindowCheck

    start = dt.date(2024, 1, 1)
    days = [start + dt.timedelta(days=i) for i in range(9)]
    rows = pl.DataFrame(
        [(d, c, p, 1) for d in days for c, p in (("DE", "P1"), ("DE", "P2"), ("FR", "P1"))],
        schema=["DATE", "COUNTRY", "PRODUCT", "UNITS"],
        orient="row",
    )
    chunks = [rows.filter(pl.col("DATE").is_between(days[i], days[i + 2])) for i in (0, 3, 6)]
    always = ChunkCheck("contract", lambda chunk: ContractReport("contract", chunk.height))

    def run(parts):
        window = WindowCheck(Table.PRODUCT_DEMAND, [always], start, days[-1] + dt.timedelta(days=1), complete_series=True)
        return sum(c.height for c in window.chunks(parts))

    assert run(chunks) == rows.height
    holed = [chunks[0], chunks[1].filter(~((pl.col("PRODUCT") == "P2") & (pl.col("DATE") == days[4]))), chunks[2]]
    with pytest.raises(ContractError) as refused:
        run(holed)
    (violation,) = [v for report in refused.value.reports for v in report.violations]
    assert violation.rule == "every series has a row on every day between its first and last"
    assert violation.n_rows == 1
    assert [(e["COUNTRY"], e["PRODUCT"], e["days missing"]) for e in violation.examples] == [("DE", "P2", 1)]
