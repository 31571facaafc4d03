"""WRMSSE against a hierarchy small enough to compute by hand."""

import datetime as dt
import math

import numpy as np
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


def _reference_scales(train: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """The level's scales and weights spelled out the slow way: aggregate, sort, filter from the
    first sale, shift within each series."""
    by = list(keys) or ["_TOTAL"]
    if not keys:
        train = train.with_columns(pl.lit("total").alias("_TOTAL"))
    hist = (
        train.with_columns((pl.col("UNITS") * pl.col("PRICE")).alias("DOLLARS"))
        .group_by([*by, "DATE"])
        .agg(pl.col("UNITS").sum(), pl.col("DOLLARS").sum())
        .sort([*by, "DATE"])
    )
    active = hist.filter((pl.col("UNITS") > 0).cum_max().over(by))
    scale = (
        active.with_columns((pl.col("UNITS") - pl.col("UNITS").shift(1).over(by)).alias("DIFF"))
        .group_by(by)
        .agg((pl.col("DIFF").drop_nulls() ** 2).mean().alias("SCALE"))
    )
    cutoff = hist["DATE"].unique().sort().tail(28).min()
    weights = hist.filter(pl.col("DATE") >= cutoff).group_by(by).agg(pl.col("DOLLARS").sum().alias("WEIGHT_DOLLARS"))
    return weights.join(scale, on=by, how="left").select(*by, "SCALE", "WEIGHT_DOLLARS").sort(by)


def test_level_scales_match_the_spelled_out_computation_on_a_shuffled_panel_with_gaps():
    from demand_assets.forecasting.wrmsse import level_scales

    rng = np.random.default_rng(7)
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(60)]
    rows = []
    for store, state in (("A", "S1"), ("B", "S1"), ("C", "S2")):
        for item, dept in (("I1", "D1"), ("I2", "D1"), ("I3", "D2"), ("I4", "D2")):
            first = int(rng.integers(0, 30))  # not on sale before its first day
            for d in days:
                if rng.random() < 0.1:
                    continue  # a day the series is not listed: no row
                units = 0 if days.index(d) < first else int(rng.poisson(2))
                price = None if rng.random() < 0.05 else float(rng.uniform(1, 5))
                rows.append({"ITEM": item, "STORE": store, "STATE": state, "CATEGORY": "C", "DEPARTMENT": dept, "DATE": d, "UNITS": units, "PRICE": price})
    train = pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=3)  # rows in no order
    never_sold = pl.DataFrame(
        [{"ITEM": "I5", "STORE": "A", "STATE": "S1", "CATEGORY": "C", "DEPARTMENT": "D2", "DATE": d, "UNITS": 0, "PRICE": 1.0} for d in days]
    )
    train = pl.concat([train, never_sold])
    for keys in M5_LEVELS:
        by = list(keys) or ["_TOTAL"]
        got = level_scales(train, keys).sort(by)
        want = _reference_scales(train, keys)
        assert got.height == want.height
        assert got["WEIGHT_DOLLARS"].to_list() == pytest.approx(want["WEIGHT_DOLLARS"].to_list())
        assert got["SCALE"].to_list() == pytest.approx(want["SCALE"].to_list(), nan_ok=True)
    assert level_scales(train, ("ITEM", "STORE")).filter(pl.col("ITEM") == "I5")["SCALE"].to_list() == [None]
