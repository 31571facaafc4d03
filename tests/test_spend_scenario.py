"""Closed loop: spend plans, media deltas, scenario forecasts under stock, stock-capped allocation."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from demand_assets.marketing.allocation import AllocationProblem, brute_force_allocation, credited_revenue, optimise_allocation
from demand_assets.marketing.curves import ResponseCurve
from demand_assets.marketing.scenario import bau_spend_plan, media_delta, scenario_forecast, scenario_spend_plan

AS_OF = dt.date(2024, 3, 31)
CURVE = ResponseCurve(decay=0.5, max_lag=3, half_saturation=10.0, slope=1.0, cap=8.0)


def _history(days: int = 30) -> pl.DataFrame:
    rows = []
    for i in range(days):
        day = AS_OF - dt.timedelta(days=days - 1 - i)
        for channel, base in (("SEARCH", 10.0), ("TV", 20.0)):
            rows.append({"DATE": day, "COUNTRY": "US", "CHANNEL": channel, "SPEND": base + day.weekday()})
    return pl.DataFrame(rows)


def test_business_as_usual_repeats_last_week_by_weekday():
    bau = bau_spend_plan(_history(), AS_OF, 10)
    assert bau["DATE"].n_unique() == 10 and bau.height == 20
    for row in bau.iter_rows(named=True):
        assert row["SPEND"] == (10.0 if row["CHANNEL"] == "SEARCH" else 20.0) + row["DATE"].weekday()
    with pytest.raises(ValueError, match="7 days of spend"):
        bau_spend_plan(_history(3), AS_OF, 10)


def test_scenario_plan_changes_only_the_named_channels_and_checks_them():
    bau = bau_spend_plan(_history(), AS_OF, 7)
    plan = scenario_spend_plan(bau, {"SEARCH": 5.0}, {"TV": 2.0})
    joined = plan.join(bau.rename({"SPEND": "BAU"}), on=["DATE", "COUNTRY", "CHANNEL"])
    assert (joined.filter(pl.col("CHANNEL") == "SEARCH")["SPEND"] == 5.0).all()
    np.testing.assert_allclose(joined.filter(pl.col("CHANNEL") == "TV")["SPEND"].to_numpy(), 2 * joined.filter(pl.col("CHANNEL") == "TV")["BAU"].to_numpy())
    with pytest.raises(ValueError, match="rule 'known channels'.*RADIO"):
        scenario_spend_plan(bau, {"RADIO": 1.0})
    with pytest.raises(ValueError, match="rule 'spend >= 0'"):
        scenario_spend_plan(bau, None, {"TV": -1.0})


def test_media_delta_is_zero_for_business_as_usual_and_follows_the_curves():
    history = _history()
    bau = bau_spend_plan(history, AS_OF, 7)
    curves = {("US", "SEARCH"): [CURVE, CURVE], ("US", "TV"): [CURVE, CURVE]}
    same = media_delta(curves, history, bau, bau)
    assert same["DELTA"].abs().max() == 0.0
    plan = scenario_spend_plan(bau, None, {"SEARCH": 2.0})
    delta = media_delta(curves, history, bau, plan).sort("DATE")
    past = history.filter(pl.col("CHANNEL") == "SEARCH").sort("DATE")["SPEND"].to_numpy()
    b = bau.filter(pl.col("CHANNEL") == "SEARCH").sort("DATE")["SPEND"].to_numpy()
    expected = CURVE.response(np.concatenate([past, 2 * b]))[-7:] - CURVE.response(np.concatenate([past, b]))[-7:]
    np.testing.assert_allclose(delta["DELTA"].to_numpy(), expected)
    assert (delta["DELTA"] > 0).all()


def _forecast(horizon: int = 7, mean: float = 10.0) -> pl.DataFrame:
    rows = []
    for product, weight in (("A", 0.75), ("B", 0.25)):
        for h in range(1, horizon + 1):
            m = mean * weight
            rows.append({"COUNTRY": "US", "PRODUCT": product, "TARGET_DATE": AS_OF + dt.timedelta(days=h), "MEAN": m, "P10": 0.6 * m, "P50": m, "P90": 1.4 * m})
    return pl.DataFrame(rows)


def _delta(value: float, horizon: int = 7) -> pl.DataFrame:
    dates = [AS_OF + dt.timedelta(days=h) for h in range(1, horizon + 1)]
    return pl.DataFrame(
        {"DATE": dates, "COUNTRY": "US", "DELTA": value, "DELTA_P10": value, "DELTA_P50": value, "DELTA_P90": value, "_DRAWS": [[value, value]] * horizon}
    )


def test_scenario_forecast_spreads_the_delta_by_product_share():
    daily, series = scenario_forecast(_forecast(), _delta(4.0), None, n_samples=400)
    a = daily.filter(pl.col("PRODUCT") == "A")
    np.testing.assert_allclose(a["SCENARIO_MEAN"].to_numpy(), 7.5 + 0.75 * 4.0)
    np.testing.assert_allclose(a["SCENARIO_P90"].to_numpy(), 10.5 + 0.75 * 4.0)
    assert series["INCREMENTAL_UNITS"].sum() == pytest.approx(7 * 4.0, rel=1e-9)
    assert (series["CREDITED_INCREMENTAL_UNITS"] == series["INCREMENTAL_UNITS"]).all()


def test_stock_caps_what_the_scenario_is_credited():
    stock_tight = pl.DataFrame({"COUNTRY": ["US", "US"], "PRODUCT": ["A", "B"], "STOCK_UNITS": [7 * 7.5, 7 * 2.5]})
    _, tight = scenario_forecast(_forecast(), _delta(4.0), stock_tight, n_samples=2000)
    _, ample = scenario_forecast(_forecast(), _delta(4.0), stock_tight.with_columns(pl.col("STOCK_UNITS") * 10), n_samples=2000)
    assert ample["CREDITED_INCREMENTAL_UNITS"].sum() == pytest.approx(28.0, rel=1e-6)
    # Stock equal to the forecast: about half of the paths already run out, so most of the lift is lost.
    assert tight["CREDITED_INCREMENTAL_UNITS"].sum() < 0.5 * 28.0
    assert (tight["STOCKOUT_PROBABILITY_SCENARIO"] > tight["STOCKOUT_PROBABILITY_BAU"]).all()
    with pytest.raises(ValueError, match="no stock for 1 series"):
        scenario_forecast(_forecast(), _delta(4.0), stock_tight.head(1), n_samples=10)


def _two_country_problem(caps=None) -> AllocationProblem:
    curves = tuple([ResponseCurve(0.3, 3, 20.0, 1.2, 30.0)] for _ in range(4))
    keys = (("DE", "SEARCH"), ("DE", "TV"), ("US", "SEARCH"), ("US", "TV"))
    return AllocationProblem(
        keys=keys,
        curves=curves,
        history=tuple(np.full(3, 10.0) for _ in keys),
        unit_revenue=np.array([5.0, 5.0, 4.0, 4.0]),
        current=np.full(4, 10.0),
        lower=np.zeros(4),
        upper=np.full(4, 60.0),
        budget=80.0 * 14,
        days=14,
        unit_caps=caps,
    )


def test_stock_caps_move_money_to_the_country_that_can_sell():
    free = optimise_allocation(_two_country_problem())
    de_free = free.daily_spend[:2].sum()
    assert de_free > 40.0  # DE earns more per unit, so it gets the larger share without caps
    capped_problem = _two_country_problem({"DE": 100.0})
    capped = optimise_allocation(capped_problem)
    assert capped.daily_spend[:2].sum() < de_free - 5.0
    assert capped.daily_spend.sum() == pytest.approx(80.0, rel=1e-9)
    _, brute = brute_force_allocation(capped_problem, step=5.0)
    assert capped.credited >= brute - 1e-6 * brute
    assert credited_revenue(capped_problem, capped.daily_spend) == pytest.approx(capped.credited)
