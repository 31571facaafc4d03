"""Transaction logs (seed 002) to weekly product demand, and the errors bad logs get."""

import datetime as dt

import polars as pl
import pytest

from demand_assets.sources.transactions import TRANSACTION_COLUMNS, TransactionLogError, read_transaction_log, synthetic_transaction_log, weekly_product_demand


def _log(rows) -> bytes:
    return pl.DataFrame(rows, schema=list(TRANSACTION_COLUMNS), orient="row").write_csv().encode()


ROWS = [
    ("T1", "2023-01-02", "C1", "Male", 30, "Beauty", 2, 50.0, 100.0),  # Monday, week 1
    ("T2", "2023-01-08", "C2", "Female", 40, "Beauty", 1, 50.0, 50.0),  # Sunday, still week 1
    ("T3", "2023-01-09", "C3", "Female", 22, "Beauty", 3, 25.0, 75.0),  # week 2, another price point
    ("T4", "2023-01-23", "C4", "Male", 51, "Beauty", 4, 50.0, 200.0),  # week 4: week 3 had no sale
]


def test_weekly_demand_per_category_and_price_point_with_zero_weeks():
    weekly = weekly_product_demand(read_transaction_log(_log(ROWS)))
    fifty = weekly.filter(pl.col("PRODUCT") == "Beauty@50.00").sort("WEEK")
    assert fifty["WEEK"].to_list() == [dt.date(2023, 1, 2), dt.date(2023, 1, 9), dt.date(2023, 1, 16), dt.date(2023, 1, 23)]
    assert fifty["UNITS"].to_list() == [3, 0, 0, 4]
    assert fifty["REVENUE"].to_list() == [150.0, 0.0, 0.0, 200.0]
    assert weekly.filter(pl.col("PRODUCT") == "Beauty@25.00")["UNITS"].to_list() == [3]
    assert set(weekly["CATEGORY"]) == {"Beauty"}


@pytest.mark.parametrize(
    "row, rule, column",
    [
        (("T9", "02/01/2023", "C", "Male", 30, "Beauty", 1, 50.0, 50.0), "dates are YYYY-MM-DD", "Date"),
        (("T9", "2023-01-02", "C", "Male", 30, "Beauty", 0, 50.0, 0.0), "quantity is a whole number >= 1", "Quantity"),
        (("T9", "2023-01-02", "C", "Male", 30, "Beauty", 1, -5.0, -5.0), "price per unit > 0", "Price per Unit"),
        (("T9", "2023-01-02", "C", "Male", 30, "Beauty", 2, 50.0, 60.0), "total = quantity x price", "Total Amount"),
        (("T1", "2023-01-02", "C", "Male", 30, "Beauty", 1, 50.0, 50.0), "unique Transaction ID", "Transaction ID"),
    ],
)
def test_a_broken_rule_is_named_with_its_column_and_rows(row, rule, column):
    with pytest.raises(TransactionLogError) as err:
        read_transaction_log(_log([*ROWS, row]))
    message = str(err.value)
    assert f"rule '{rule}'" in message and f"column '{column}'" in message
    assert row[0] in message  # the offending transaction is named


def test_missing_columns_and_non_csv_are_refused():
    with pytest.raises(TransactionLogError, match="required columns.*Quantity"):
        read_transaction_log(pl.DataFrame({"Transaction ID": ["T1"], "Date": ["2023-01-02"]}).write_csv().encode())
    with pytest.raises(TransactionLogError, match="not empty"):
        read_transaction_log(",".join(TRANSACTION_COLUMNS).encode() + b"\n")


def test_the_synthetic_log_round_trips_through_the_upload_format():
    log = synthetic_transaction_log(weeks=6, seed=3)
    parsed = read_transaction_log(log.write_csv().encode())
    assert parsed.height == log.height
    weekly = weekly_product_demand(parsed)
    assert weekly["UNITS"].sum() == log["Quantity"].sum()
