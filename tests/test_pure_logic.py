"""The logic that moved out of the asset modules, tested without Dagster: budget planning and
stock, scenario summaries, curve recovery, the promotion comparison, realised accuracy,
scoring by regime and the table registry. Expected values are computed by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from contracts import CONTRACTS, TABLES, Table, table_spec
from demand_assets.forecasting.metrics import regime_rows, regime_wape
from demand_assets.forecasting.suite import SuiteSettings
from demand_assets.marketing.curves import ResponseCurve
from demand_assets.marketing.planning import PlanningSettings, plan_budget, spare_stock_by_country, stock_from_cover, stock_from_csv
from demand_assets.marketing.scenario import summarise_scenario
from demand_assets.marketing.summary import curve_panels, recovery_against_truth
from demand_assets.monitoring.accuracy import pooled_accuracy, score_realised
from demand_assets.monitoring.promotion import Incumbent, compare_with_incumbent

D0 = dt.date(2024, 3, 1)


def _days(n: int, start: dt.date = D0) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


# --- scoring by regime ---------------------------------------------------------------------------


def _scored() -> pl.DataFrame:
    return pl.DataFrame({"ACTUAL": [10, 0, 5], "TRUE_DEMAND": [10, 8, 5], "P50": [8.0, 6.0, 5.0], "IN_STOCK": [True, False, True]})


def test_regimes_keep_the_rows_and_truth_they_promise():
    frame = _scored()
    assert regime_wape(frame, "all") == pytest.approx((2 + 6 + 0) / 15)
    assert regime_wape(frame, "in_stock") == pytest.approx(2 / 15)  # the stockout day is not scored
    assert regime_wape(frame, "true") == pytest.approx((2 + 2 + 0) / 23)  # against uncensored demand
    rows, target = regime_rows(frame.drop("TRUE_DEMAND"), "true")
    assert target == "ACTUAL" and rows.height == 3  # a real source's true regime is its all regime
    with pytest.raises(ValueError, match="unknown regime"):
        regime_rows(frame, "weekdays")  # type: ignore[arg-type]


# --- budget planning and stock -------------------------------------------------------------------


def test_spare_stock_is_stock_left_after_the_forecast_over_the_window():
    forecast = pl.DataFrame(
        {"COUNTRY": ["US"] * 6, "PRODUCT": ["A", "A", "A", "B", "B", "B"], "HORIZON_DAY": [1, 2, 3] * 2, "MEAN": [2.0, 2.0, 9.0, 2.0, 2.0, 9.0]}
    )
    stock = pl.DataFrame({"COUNTRY": ["US"], "PRODUCT": ["A"], "STOCK_UNITS": [10.0]})  # B has none
    # Two planning days: A needs 4 of its 10 (6 left), B needs 4 of 0 (nothing left, never negative).
    assert spare_stock_by_country(forecast, stock, planning_days=2) == {"US": pytest.approx(6.0)}
    with pytest.raises(ValueError, match="rule 'forecast covers the window'"):
        spare_stock_by_country(forecast, stock, planning_days=4)


def test_stock_from_cover_uses_in_stock_days_only():
    recent = pl.DataFrame({"DATE": _days(3), "COUNTRY": "US", "PRODUCT": "A", "PRODUCT_DEMAND": [4, 0, 6], "IN_STOCK": [True, False, True]})
    assert stock_from_cover(recent, 2.5)["STOCK_UNITS"].to_list() == [pytest.approx(12.5)]  # mean of 4 and 6, x 2.5
    with pytest.raises(ValueError, match="stock_cover_days >= 0"):
        stock_from_cover(recent, -1)


def test_a_stock_csv_is_refused_naming_the_rule_and_rows(tmp_path):
    bad = tmp_path / "stock.csv"
    pl.DataFrame({"COUNTRY": ["US", "US"], "PRODUCT": ["A", "B"], "STOCK_UNITS": [3.0, -2.0]}).write_csv(bad)
    with pytest.raises(ValueError, match=r"rule 'STOCK_UNITS >= 0' on column STOCK_UNITS: 1 row\(s\).*'PRODUCT': 'B'"):
        stock_from_csv(str(bad))
    pl.DataFrame({"COUNTRY": ["US"], "STOCK_UNITS": [1.0]}).write_csv(bad)
    with pytest.raises(ValueError, match=r"rule 'stock columns'.*\['PRODUCT'\]"):
        stock_from_csv(str(bad))


def test_planning_settings_refuse_inverted_ratios():
    with pytest.raises(ValueError, match="rule 'planning window and ratios'"):
        PlanningSettings(min_ratio=2.0, max_ratio=1.0)


def _two_channel_world() -> tuple[pl.DataFrame, dict]:
    days = _days(40)
    spend = pl.DataFrame(
        {
            "DATE": days * 4,
            "COUNTRY": ["US"] * 80 + ["DE"] * 80,
            "CHANNEL": (["TV"] * 40 + ["SEARCH"] * 40) * 2,
            "SPEND": [100.0] * 40 + [50.0] * 40 + [80.0] * 40 + [40.0] * 40,
        }
    )
    curve = {"TV": ResponseCurve(0.5, 7, 150.0, 1.2, 40.0), "SEARCH": ResponseCurve(0.2, 3, 30.0, 1.0, 30.0)}
    curves = {(c, ch): [curve[ch]] for c in ("US", "DE") for ch in ("TV", "SEARCH")}
    return spend, curves


def test_the_budget_plan_spends_the_budget_within_the_bounds():
    spend, curves = _two_channel_world()
    settings = PlanningSettings(planning_days=28, min_ratio=0.5, max_ratio=2.0, grid_units=100)
    plan = plan_budget(spend, curves, {"US": 2.0, "DE": 3.0}, settings)
    table = plan.table
    assert plan.budget == pytest.approx((100 + 50 + 80 + 40) * 28)  # default: what the current split spends
    assert (table["OPTIMAL_DAILY_SPEND"].sum() * 28) == pytest.approx(plan.budget, rel=1e-6)
    assert ((table["OPTIMAL_DAILY_SPEND"] >= table["LOWER"] - 1e-6) & (table["OPTIMAL_DAILY_SPEND"] <= table["UPPER"] + 1e-6)).all()
    assert table["LOWER"].to_list() == pytest.approx([0.5 * x for x in table["CURRENT_DAILY_SPEND"].to_list()])
    assert plan.uplift >= -1e-6  # never worse than keeping the current split


def test_fixed_country_totals_move_money_between_channels_only():
    spend, curves = _two_channel_world()
    plan = plan_budget(spend, curves, {"US": 2.0, "DE": 3.0}, PlanningSettings(grid_units=100), fixed_country_totals=True)
    per_country = plan.table.group_by("COUNTRY").agg(pl.col("CURRENT_DAILY_SPEND").sum(), pl.col("OPTIMAL_DAILY_SPEND").sum())
    for row in per_country.iter_rows(named=True):
        assert row["OPTIMAL_DAILY_SPEND"] == pytest.approx(row["CURRENT_DAILY_SPEND"], rel=1e-6)


# --- scenario summaries and curve recovery -------------------------------------------------------


def test_a_scenario_is_summarised_in_money_and_spend():
    plan = pl.DataFrame({"DATE": _days(2), "COUNTRY": "US", "CHANNEL": "TV", "SPEND": [150.0, 150.0]})
    bau = plan.with_columns(pl.lit(100.0).alias("SPEND"))
    series = pl.DataFrame(
        {
            "COUNTRY": ["US", "US"],
            "PRODUCT": ["A", "B"],
            "BAU_UNITS": [10.0, 20.0],
            "SCENARIO_UNITS": [14.0, 22.0],
            "INCREMENTAL_UNITS": [4.0, 2.0],
            "CREDITED_INCREMENTAL_UNITS": [4.0, 1.0],
            "STOCKOUT_PROBABILITY_SCENARIO": [0.0, 0.5],
        }
    )
    daily = pl.DataFrame(
        {"TARGET_DATE": _days(2) * 2, "BAU_MEAN": [1.0, 2.0, 3.0, 4.0], "SCENARIO_MEAN": [2.0, 3.0, 4.0, 5.0], "BAU_P50": 1.0, "SCENARIO_P50": 1.0}
    )
    prices = pl.DataFrame({"COUNTRY": ["US", "US"], "PRODUCT": ["A", "B"], "PRICE": [5.0, 10.0]})
    summary = summarise_scenario(plan, bau, daily, series, prices)
    us = summary.by_country.row(0, named=True)
    assert us["CREDITED_INCREMENTAL_REVENUE"] == pytest.approx(4 * 5 + 1 * 10)
    assert us["INCREMENTAL_REVENUE"] == pytest.approx(4 * 5 + 2 * 10)
    assert (us["BAU_SPEND"], us["SCENARIO_SPEND"]) == (200.0, 300.0)
    assert us["CREDITED_REVENUE_PER_EXTRA_SPEND"] == pytest.approx(30 / 100)
    assert summary.totals["BAU_MEAN"].to_list() == [4.0, 6.0]


def test_recovery_against_truth_compares_fitted_with_true_roi():
    summary = pl.DataFrame(
        {
            "COUNTRY": ["US"],
            "CHANNEL": ["TV"],
            "ROI": [1.1],
            "ROI_P10": [0.9],
            "ROI_P90": [1.3],
            "DECAY": [0.5],
            "MAX_LAG": [7],
            "HALF_SATURATION": [1.0],
            "SLOPE": [1.0],
            "CAP": [1.0],
        }
    )
    spend = pl.DataFrame({"DATE": _days(2), "COUNTRY": "US", "CHANNEL": "TV", "SPEND": [10.0, 10.0]})
    revenue = pl.DataFrame({"DATE": _days(2), "COUNTRY": "US", "UNIT_REVENUE": [2.0, 2.0]})
    truth = spend.select("DATE", "COUNTRY", "CHANNEL").with_columns(
        pl.lit(5.0).alias("TRUE_RESPONSE"), pl.lit(0.5).alias("TRUE_DECAY"), pl.lit(7).alias("TRUE_MAX_LAG"),
        pl.lit(1.0).alias("TRUE_HALF_SATURATION"), pl.lit(1.0).alias("TRUE_HILL_SLOPE"), pl.lit(1.0).alias("TRUE_RESPONSE_CAP"),
    )  # fmt: skip
    recovery = recovery_against_truth(summary, truth, spend, revenue)
    assert recovery is not None
    row = recovery.row(0, named=True)
    assert row["TRUE_ROI"] == pytest.approx((5 * 2 * 2) / 20)  # response x revenue / spend = 1.0
    assert row["ROI_ERROR"] == pytest.approx(0.1) and row["TRUE_ROI_IN_BAND"]
    assert recovery_against_truth(summary, truth.head(0), spend, revenue) is None  # real sources


def test_curve_panels_draw_one_panel_per_channel_with_a_band():
    curve = ResponseCurve(0.5, 7, 100.0, 1.0, 50.0)
    curves = {("US", "TV"): [curve, ResponseCurve(0.5, 7, 80.0, 1.0, 50.0), ResponseCurve(0.5, 7, 120.0, 1.0, 50.0)]}
    current = pl.DataFrame({"COUNTRY": ["US"], "CHANNEL": ["TV"], "CURRENT_DAILY_SPEND": [100.0], "UNIT_REVENUE": [2.0]})
    (panel,) = curve_panels(curves, current, points=11)
    (line,) = panel["lines"]
    assert panel["channel"] == "TV" and len(line["spend"]) == 11 and line["spend"][-1] == pytest.approx(300.0)
    assert line["current_value"] == pytest.approx(50.0 * 0.5 * 2.0)  # half saturation at the current spend
    assert np.all(line["p10"] <= line["p90"])


# --- the promotion comparison --------------------------------------------------------------------


def _backtest(challenger_p50: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    forecasts = pl.DataFrame(
        {
            "MODEL": ["lightgbm"] * 4,
            "FOLD": [0, 0, 1, 1],
            "DATE": [D0, D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=10), D0 + dt.timedelta(days=11)],
            "COUNTRY": "US",
            "PRODUCT": "A",
            "MEAN": challenger_p50,
            "P10": 0.0,
            "P50": challenger_p50,
            "P90": 20.0,
            "ACTUAL": [10, 10, 10, 10],
            "IN_STOCK": True,
        }
    )
    overall = pl.DataFrame({"MODEL": ["lightgbm", "ets"], "REGIME": ["in_stock", "in_stock"], "WAPE": [0.2, 0.3]})
    return forecasts, overall


def test_the_frozen_champion_is_scored_on_folds_after_its_training_window():
    forecasts, overall = _backtest(challenger_p50=9.0)  # WAPE 0.1
    asked = []

    def frozen(origin: dt.date, horizon: int) -> pl.DataFrame:
        asked.append((origin, horizon))
        days = [origin + dt.timedelta(days=k) for k in range(1, horizon + 1)]
        return pl.DataFrame({"DATE": days, "COUNTRY": "US", "PRODUCT": "A", "MEAN": 7.0, "P10": 0.0, "P50": 7.0, "P90": 20.0})  # WAPE 0.3

    incumbent = Incumbent("ets", "3", trained_until=D0 + dt.timedelta(days=5))
    decision = compare_with_incumbent(
        overall=overall, forecasts=forecasts, challenger="lightgbm", challenger_reason="best", regime="in_stock", incumbent=incumbent, frozen_forecast=frozen
    )
    assert asked == [(D0 + dt.timedelta(days=9), 2)]  # only fold 1 lies after the training window
    assert decision.promote and decision.challenger_wape == pytest.approx(0.1) and decision.incumbent_wape == pytest.approx(0.3)
    assert "folds [1]" in decision.compared_on


def test_without_a_fresh_fold_the_refitted_family_stands_in():
    forecasts, overall = _backtest(challenger_p50=9.0)
    incumbent = Incumbent("ets", "3", trained_until=D0 + dt.timedelta(days=30))
    decision = compare_with_incumbent(
        overall=overall, forecasts=forecasts, challenger="lightgbm", challenger_reason="best", regime="in_stock", incumbent=incumbent,
        frozen_forecast=lambda origin, horizon: pytest.fail("no fold is after the training window"),
    )  # fmt: skip
    assert decision.promote and (decision.challenger_wape, decision.incumbent_wape) == (0.2, 0.3)
    first = compare_with_incumbent(overall=overall, forecasts=forecasts, challenger="lightgbm", challenger_reason="best", regime="in_stock", incumbent=None)
    assert first.promote and first.reason.startswith("first champion")


# --- realised accuracy -------------------------------------------------------------------------


def test_realised_accuracy_scores_the_forecast_made_horizon_days_earlier():
    origin = D0
    forecasts = pl.DataFrame(
        {
            "DATE": origin,
            "COUNTRY": "US",
            "PRODUCT": "A",
            "HORIZON_DAY": [1, 2],
            "TARGET_DATE": _days(2, origin + dt.timedelta(days=1)),
            "MEAN": [12.0, 8.0],
            "P10": [5.0, 5.0],
            "P50": [12.0, 8.0],
            "P90": [15.0, 15.0],
            "MODEL": "lightgbm",
            "MODEL_VERSION": "4",
        }
    )
    actuals = pl.DataFrame({"DATE": _days(2, origin + dt.timedelta(days=1)), "COUNTRY": "US", "PRODUCT": "A", "PRODUCT_DEMAND": [10, 10], "IN_STOCK": True})
    scores = score_realised(forecasts, actuals, {"lightgbm": 0.1}, origin + dt.timedelta(days=2), origin + dt.timedelta(days=4), horizon=2)
    first, second = scores.row(0, named=True), scores.row(1, named=True)
    assert first["ROWS"] == 2 and first["WAPE"] == pytest.approx(4 / 20) and first["WAPE_RATIO"] == pytest.approx(2.0)
    assert first["BIAS"] == pytest.approx(0.0) and first["COVERAGE_P10_P90"] == 1.0
    assert second["ROWS"] == 0 and second["WAPE"] is None  # its forecast was never made
    pooled = pooled_accuracy(scores)
    assert pooled is not None and pooled.ratio == pytest.approx(2.0) and pooled.scored_days == 1
    assert pooled_accuracy(scores.filter(pl.col("ROWS") == 0)) is None


# --- the table registry and settings records ------------------------------------------------------


def test_the_registry_knows_every_table_and_agrees_with_the_contracts():
    assert set(TABLES) == set(Table)
    for name, contract in CONTRACTS.items():
        assert contract.keys == table_spec(name).keys
    with pytest.raises(KeyError, match="'nope' is not a registered table; known tables: country_demand"):
        table_spec("nope")


def test_backtested_settings_round_trip_through_their_record():
    settings = SuiteSettings(models=("lightgbm",), lgbm_rounds=17, lgbm_params=(("num_leaves", 63),))
    assert SuiteSettings.from_json(settings.to_json()) == settings
