"""WRMSSE against a hierarchy small enough to compute by hand."""

import datetime as dt
import math

import polars as pl
import pytest

from demand_assets.forecasting.wrmsse import M5_LEVELS, rmsse_by_series, wrmsse

DAYS = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(6)]


def _frames(forecast_b=(2.0, 2.0)):
    base = {"ITEM": "I1", "STATE": "S", "CATEGORY": "C", "DEPARTMENT": "D"}
    train = pl.DataFrame(
        [base | {"STORE": "A", "DATE": d, "UNITS": u, "PRICE": 1.0} for d, u in zip(DAYS[:4], [0, 2, 4, 4])]
        + [base | {"STORE": "B", "DATE": d, "UNITS": u, "PRICE": 2.0} for d, u in zip(DAYS[:4], [1, 3, 1, 3])]
    )
    test = pl.DataFrame(
        [base | {"STORE": "A", "DATE": d, "UNITS": a, "FORECAST": f} for d, a, f in zip(DAYS[4:], [4, 6], [5.0, 5.0])]
        + [base | {"STORE": "B", "DATE": d, "UNITS": a, "FORECAST": f} for d, a, f in zip(DAYS[4:], [2, 2], forecast_b)]
    )
    return train, test


def test_bottom_level_scales_from_the_first_sale_and_weights_by_dollars():
    train, test = _frames()
    table = rmsse_by_series(train, test, ("ITEM", "STORE")).sort("SERIES")
    # A: history from its first sale [2, 4, 4]: scale (2^2 + 0^2) / 2 = 2; MSE (1 + 1) / 2 = 1
    # B: [1, 3, 1, 3]: scale (4 + 4 + 4) / 3 = 4; perfect forecast
    assert table["SCALE"].to_list() == pytest.approx([2.0, 4.0])
    assert table["RMSSE"].to_list() == pytest.approx([math.sqrt(0.5), 0.0])
    assert table["WEIGHT_DOLLARS"].to_list() == pytest.approx([10.0, 16.0])


def test_wrmsse_by_hand():
    train, test = _frames()
    score, levels = wrmsse(train, test)
    total = math.sqrt(1 / (20 / 3))  # aggregate: train [1, 5, 5, 7], diffs 4, 0, 2; test error 1 each day
    store = (math.sqrt(0.5) * 10 + 0.0 * 16) / 26  # store-level series equal the bottom ones here
    expected = {1: total, 2: total, 3: store, 4: total, 5: total, 6: total, 7: total, 8: store, 9: store, 10: total, 11: total, 12: store}
    assert levels.height == 12 == len(M5_LEVELS)
    assert levels.sort("LEVEL")["SCORE"].to_list() == pytest.approx([expected[i] for i in range(1, 13)])
    assert score == pytest.approx(sum(expected.values()) / 12)


def test_a_perfect_forecast_scores_zero_and_a_flat_series_is_left_out():
    train, test = _frames()
    perfect = test.with_columns(pl.col("UNITS").cast(pl.Float64).alias("FORECAST"))
    assert wrmsse(train, perfect)[0] == pytest.approx(0.0)
    flat = train.with_columns(pl.when(pl.col("STORE") == "B").then(2).otherwise(pl.col("UNITS")).alias("UNITS"))
    _, levels = wrmsse(flat, test)
    assert levels.filter(pl.col("LEVEL") == 12)["UNSCALED_SERIES"][0] == 1


def test_missing_hierarchy_columns_are_named():
    train, test = _frames()
    with pytest.raises(ValueError, match="DEPARTMENT"):
        wrmsse(train.drop("DEPARTMENT"), test)
