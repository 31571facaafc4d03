"""The money cost of forecast error against hand-computed values, and the newsvendor quantile."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
from scipy import stats

from demand_assets.impact.forecast_cost import UnitEconomics, critical_ratio, error_cost, forecast_error_cost, quantile_at, unit_costs


def test_error_cost_is_asymmetric():
    # 3 over at 1.0 a unit, 2 short at 4.0 a unit, exact: 0
    np.testing.assert_allclose(error_cost([13, 8, 5], [10, 10, 5], under_cost=4.0, over_cost=1.0), [3.0, 8.0, 0.0])
    assert critical_ratio(4.0, 1.0) == pytest.approx(0.8)


def test_quantile_interpolates_the_band_and_floors_at_zero():
    frame = pl.DataFrame({"TAU": [0.1, 0.5, 0.9, 0.7, 0.3, 0.95, 0.02], "P10": [2.0] * 7, "P50": [6.0] * 7, "P90": [14.0] * 7})
    q = frame.select(quantile_at(pl.col("TAU"), pl.col("P10"), pl.col("P50"), pl.col("P90")))[:, 0].to_list()
    assert q == pytest.approx([2.0, 6.0, 14.0, 10.0, 4.0, 15.0, 1.2])
    low = pl.DataFrame({"TAU": [0.01], "P10": [0.5], "P50": [5.0], "P90": [9.0]})
    assert low.select(quantile_at(pl.col("TAU"), pl.col("P10"), pl.col("P50"), pl.col("P90"))).item() == 0.0


def test_overrides_by_category_then_product():
    frame = pl.DataFrame({"PRODUCT": ["A", "B", "C"], "CATEGORY": ["FOODS", "FOODS", "HOBBIES"], "PRICE": [10.0, 10.0, 10.0]})
    overrides = pl.DataFrame({"CATEGORY": ["FOODS", None], "PRODUCT": [None, "B"], "MARGIN_RATE": [0.2, 0.5], "HOLDING_RATE": [0.3, None]})
    out = unit_costs(frame, UnitEconomics(margin_rate=0.35, holding_rate=0.1), overrides).sort("PRODUCT")
    assert out["UNDER_COST"].to_list() == pytest.approx([2.0, 5.0, 3.5])  # FOODS 0.2, B 0.5 wins, C default
    assert out["OVER_COST"].to_list() == pytest.approx([3.0, 3.0, 1.0])  # B keeps the FOODS holding rate
    with pytest.raises(ValueError, match="rule 'rates > 0' on column MARGIN_RATE"):
        unit_costs(frame, UnitEconomics(), pl.DataFrame({"PRODUCT": ["A"], "MARGIN_RATE": [-0.1]}))


def _rows(model: str, p10, p50, p90, mean, actual, in_stock, price=10.0) -> pl.DataFrame:
    n = len(actual)
    return pl.DataFrame(
        {
            "MODEL": [model] * n,
            "DATE": [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(n)],
            "COUNTRY": ["US"] * n,
            "PRODUCT": ["A"] * n,
            "P10": [float(v) for v in p10],
            "P50": [float(v) for v in p50],
            "P90": [float(v) for v in p90],
            "MEAN": [float(v) for v in mean],
            "ACTUAL": [int(v) for v in actual],
            "IN_STOCK": in_stock,
            "PRICE": [price] * n,
        }
    )


def test_cost_table_against_hand_computed_values():
    # margin 0.35 x 10 = 3.5 a unit short, holding 0.1 x 10 = 1.0 a unit over; tau* = 3.5 / 4.5
    frame = _rows("m", p10=[1, 1, 1], p50=[5, 5, 5], p90=[9, 9, 9], mean=[6, 6, 6], actual=[3, 8, 100], in_stock=[True, True, False])
    table = forecast_error_cost(frame, UnitEconomics(0.35, 0.10))
    row = table.filter(pl.col("REGIME") == "in_stock").row(0, named=True)
    assert row["ROWS"] == 2  # the stockout day is not scored against sales
    assert row["COST_P50"] == pytest.approx(2 * 1.0 + 3 * 3.5)
    assert row["COST_MEAN"] == pytest.approx(3 * 1.0 + 2 * 3.5)
    tau = 3.5 / 4.5
    q = 5 + (tau - 0.5) * (9 - 5) / 0.4
    assert row["COST_CRITICAL"] == pytest.approx((q - 3) * 1.0 + (8 - q) * 3.5)
    assert row["SAVING"] == pytest.approx(row["COST_P50"] - row["COST_CRITICAL"])
    assert row["CRITICAL_RATIO"] == pytest.approx(tau)
    assert row["OVER_COST_P50"] + row["UNDER_COST_P50"] == pytest.approx(row["COST_P50"])
    assert set(table["REGIME"]) == {"in_stock"}  # no TRUE_DEMAND column, no true_demand regime


def test_stocking_the_critical_quantile_saves_money_when_the_band_is_right():
    """Demand drawn from the very distribution the forecasts describe: the newsvendor quantile
    must cost less than the median, and its saving must match theory within noise."""
    rng = np.random.default_rng(0)
    mu = 10.0
    actual = rng.poisson(mu, 20_000)
    q10, q50, q90 = (stats.poisson.ppf(p, mu) for p in (0.1, 0.5, 0.9))
    n = actual.size
    frame = _rows("oracle", [q10] * n, [q50] * n, [q90] * n, [mu] * n, actual, [True] * n).with_columns(pl.col("ACTUAL").alias("TRUE_DEMAND"))
    table = forecast_error_cost(frame, UnitEconomics(0.35, 0.10))
    row = table.filter(pl.col("REGIME") == "true_demand").row(0, named=True)
    assert row["COST_CRITICAL"] < row["COST_P50"]
    assert 0.05 < row["SAVING_SHARE"] < 0.5


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="PRICE"):
        forecast_error_cost(
            pl.DataFrame({"MODEL": ["m"], "MEAN": [1.0], "P10": [1.0], "P50": [1.0], "P90": [1.0], "ACTUAL": [1], "IN_STOCK": [True]}), UnitEconomics()
        )
