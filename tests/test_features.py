import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from demand_assets.features import CHANNEL_LOOKBACK_DAYS, LOOKBACK_DAYS, build_training_dataset, holiday_calendar
from demand_assets.sources import Domain
from tests.conftest import read_all

START, END = dt.date(2024, 5, 1), dt.date(2024, 5, 15)


@pytest.fixture(scope="module")
def inputs(small_source):
    first = START - dt.timedelta(days=LOOKBACK_DAYS)
    return {
        "history": read_all(small_source, Domain.PRODUCT_DEMAND, first, END),
        "country": read_all(small_source, Domain.COUNTRY_DEMAND, START, END),
        "channel": read_all(small_source, Domain.CHANNEL_SPEND_RESPONSE, START - dt.timedelta(days=CHANNEL_LOOKBACK_DAYS), END),
        "products": small_source.catalog().products,
    }


def _build(inputs, start, end, **override):
    args = inputs | override
    return build_training_dataset(args["history"], args["country"], args["channel"], args["products"], start, end)


def test_one_row_per_series_day_and_lags_by_calendar(inputs):
    frame = _build(inputs, START, END)
    assert frame.height == (END - START).days * inputs["products"].height * 2
    assert frame.select("DATE", "COUNTRY", "PRODUCT").is_duplicated().sum() == 0
    row = frame.filter((pl.col("DATE") == dt.date(2024, 5, 10)) & (pl.col("PRODUCT") == "P00003") & (pl.col("COUNTRY") == "US")).row(0, named=True)
    hist = inputs["history"].filter((pl.col("PRODUCT") == "P00003") & (pl.col("COUNTRY") == "US"))
    value = lambda d: hist.filter(pl.col("DATE") == d)["PRODUCT_DEMAND"][0]  # noqa: E731
    assert row["DEMAND_LAG_7"] == value(dt.date(2024, 5, 3))
    assert row["DEMAND_LAG_28"] == value(dt.date(2024, 4, 12))
    week = hist.filter(pl.col("DATE").is_between(dt.date(2024, 5, 3), dt.date(2024, 5, 9)))["PRODUCT_DEMAND"].mean()
    assert row["DEMAND_ROLL_MEAN_7"] == pytest.approx(week)
    assert row["DAY_OF_WEEK"] == 5 and row["MONTH"] == 5  # a Friday


def test_a_day_built_alone_equals_the_same_day_in_a_range(inputs):
    whole = _build(inputs, START, END)
    for day in (START, dt.date(2024, 5, 9), END - dt.timedelta(days=1)):
        alone = _build(inputs, day, day + dt.timedelta(days=1))
        assert_frame_equal(alone, whole.filter(pl.col("DATE") == day))


def test_no_future_target_leaks_into_features(inputs):
    """Changing the target on and after a day must not change any feature of that day."""
    day = dt.date(2024, 5, 8)
    base = _build(inputs, START, END).filter(pl.col("DATE") == day)
    future_scrambled = inputs["history"].with_columns(
        pl.when(pl.col("DATE") >= day).then(pl.col("PRODUCT_DEMAND") * 7 + 3).otherwise(pl.col("PRODUCT_DEMAND")).alias("PRODUCT_DEMAND")
    )
    again = _build(inputs, START, END, history=future_scrambled).filter(pl.col("DATE") == day)
    features = [c for c in base.columns if c != "PRODUCT_DEMAND"]
    assert_frame_equal(base.select(features), again.select(features))
    assert not base["PRODUCT_DEMAND"].equals(again["PRODUCT_DEMAND"])


def test_a_missing_history_day_gives_null_lags_not_shifted_ones(inputs):
    gap = dt.date(2024, 5, 3)
    holed = inputs["history"].filter(pl.col("DATE") != gap)
    frame = _build(inputs, START, END, history=holed)
    on_10th = frame.filter(pl.col("DATE") == dt.date(2024, 5, 10))
    assert on_10th["DEMAND_LAG_7"].null_count() == on_10th.height
    assert on_10th["DEMAND_ROLL_MEAN_7"].null_count() == on_10th.height  # window incomplete
    assert on_10th["DEMAND_LAG_1"].null_count() == 0


def test_channel_features_are_wide_and_response_only_lagged(inputs):
    frame = _build(inputs, START, END)
    channels = sorted(inputs["channel"]["CHANNEL"].unique())
    for ch in channels:
        assert {f"SPEND_{ch}", f"SPEND_{ch}_LAG_7", f"RESPONSE_{ch}_LAG_1", f"RESPONSE_{ch}_LAG_7"} <= set(frame.columns)
        assert f"RESPONSE_{ch}" not in frame.columns  # same-day response is an outcome, not a feature
    day = dt.date(2024, 5, 9)
    expected = inputs["channel"].filter((pl.col("DATE") == day - dt.timedelta(days=1)) & (pl.col("COUNTRY") == "US") & (pl.col("CHANNEL") == channels[0]))[
        "CHANNEL_RESPONSE"
    ][0]
    got = frame.filter((pl.col("DATE") == day) & (pl.col("COUNTRY") == "US"))[f"RESPONSE_{channels[0]}_LAG_1"].unique()
    assert got.to_list() == [expected]


def test_sources_without_spend_or_macro_get_no_such_columns(inputs):
    frame = _build(inputs, START, END, country=None, channel=None)
    assert not any(c.startswith(("SPEND_", "RESPONSE_")) for c in frame.columns)
    assert "ECONOMIC_INDEX" not in frame.columns


def test_holiday_calendar_knows_real_holidays_and_tolerates_unknown_markets():
    cal = holiday_calendar(["US", "DE", "CA_1"], dt.date(2024, 12, 24), dt.date(2024, 12, 27))
    flags = {(r["COUNTRY"], r["DATE"].day): r["IS_HOLIDAY"] for r in cal.iter_rows(named=True)}
    assert flags[("US", 25)] and flags[("DE", 26)] and not flags[("US", 26)]
    assert not any(v for (c, _), v in flags.items() if c == "CA_1")
