"""Drift statistics on distributions whose answer is known."""

import math

import numpy as np
import polars as pl
import pytest

from demand_assets.monitoring import DriftThresholds, feature_drift, ks_statistic, mix_drift, psi, realised_wape


def test_psi_hand_computed_on_two_bins():
    # Reference median 1.5 -> one edge; reference shares (0.5, 0.5), current (0.8, 0.2).
    reference = np.array([1.0, 1.0, 2.0, 2.0])
    current = np.array([1.0] * 8 + [2.0] * 2)
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi(reference, current, bins=2) == pytest.approx(expected)


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 50_000)
    assert psi(reference, rng.normal(0, 1, 5_000)) < 0.02
    assert psi(reference, rng.normal(1, 1, 5_000)) > 0.5  # a one-sd shift is a major one
    assert 0.1 < psi(reference, rng.normal(0.35, 1, 5_000)) < 0.25  # a third of a sd: moderate


def test_ks_statistic_matches_the_normal_cdf_gap():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 40_000), rng.normal(1, 1, 40_000)
    # sup |Phi(x) - Phi(x - 1)| is at x = 0.5: 2 * Phi(0.5) - 1 = 0.3829
    assert ks_statistic(a, b) == pytest.approx(0.3829, abs=0.015)
    assert ks_statistic(a, a) == 0.0
    assert ks_statistic(np.array([0.0, 1.0]), np.array([5.0, 6.0])) == 1.0


def test_nan_values_are_ignored_not_counted():
    ref = np.array([1.0, 2.0, np.nan, 3.0])
    assert ks_statistic(ref, np.array([1.0, 2.0, 3.0, np.nan])) == 0.0
    assert math.isnan(psi(np.array([np.nan]), np.array([1.0])))


def test_feature_drift_ranks_the_shifted_feature_first_and_flags_only_it():
    rng = np.random.default_rng(2)
    reference = pl.DataFrame({"STABLE": rng.normal(0, 1, 20_000), "SHIFTED": rng.normal(0, 1, 20_000)})
    current = pl.DataFrame({"STABLE": rng.normal(0, 1, 3_000), "SHIFTED": rng.normal(2, 1, 3_000)})
    table = feature_drift(reference, current, ["STABLE", "SHIFTED"], DriftThresholds())
    assert table["FEATURE"].to_list() == ["SHIFTED", "STABLE"]
    assert table["DRIFTED"].to_list() == [True, False]
    assert table.row(0, named=True)["CURRENT_MEAN"] == pytest.approx(2.0, abs=0.1)


def test_mix_drift_sees_a_share_move_and_a_new_product():
    reference = pl.DataFrame({"PRODUCT": ["A", "B"], "PRODUCT_DEMAND": [50, 50]})
    assert mix_drift(reference, reference)[0] == pytest.approx(0.0)
    launched = pl.DataFrame({"PRODUCT": ["A", "B", "NEW"], "PRODUCT_DEMAND": [25, 25, 50]})
    value, table = mix_drift(reference, launched)
    expected = 2 * (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert value == pytest.approx(expected)
    assert table.row(0, named=True)["PRODUCT"] == "NEW"


def test_realised_wape_hand_computed_on_in_stock_days():
    keys = {"DATE": [1, 2, 3], "COUNTRY": ["US"] * 3, "PRODUCT": ["A"] * 3}
    forecasts = pl.DataFrame(keys | {"P50": [10.0, 10.0, 10.0], "MEAN": [99.0, 99.0, 99.0]})
    actuals = pl.DataFrame(keys | {"PRODUCT_DEMAND": [12, 6, 0], "IN_STOCK": [True, True, False]})
    wape, rows = realised_wape(forecasts, actuals)
    assert rows == 2 and wape == pytest.approx((2 + 4) / 18)


# ------------------------------------------------------------------------ promotion decisions
from demand_assets.monitoring.promotion import decide_promotion  # noqa: E402


def _decide(**kw):
    base = dict(
        challenger="hybrid",
        challenger_reason="hybrid is best",
        incumbent="lightgbm",
        challenger_wape=0.40,
        incumbent_wape=0.45,
        frozen_incumbent=True,
        compared_on="fold 3",
    )
    return decide_promotion(**base | kw)


def test_promotion_needs_a_strictly_better_challenger_on_the_same_days():
    assert _decide().promote
    assert not _decide(challenger_wape=0.45).promote
    assert not _decide(challenger_wape=0.50).promote
    assert "not promoted" in _decide(challenger_wape=0.50).reason


def test_promotion_edge_cases():
    assert _decide(incumbent=None).promote  # the first champion
    assert not _decide(challenger=None, challenger_reason="no model beat seasonal_naive").promote
    assert not _decide(incumbent_wape=None).promote  # never promote blind
    # Same family against its own refitted stand-in: equal by construction, newer data wins.
    assert _decide(challenger="lightgbm", challenger_wape=0.45, frozen_incumbent=False).promote
    # ... but against the frozen champion it must actually be better.
    assert not _decide(challenger="lightgbm", challenger_wape=0.45, frozen_incumbent=True).promote


# ------------------------------------------------------------------------ retraining decisions
import datetime as dt  # noqa: E402

from demand_assets.monitoring.retraining import CheckSignal, RetrainingCursor, decide_retraining  # noqa: E402

T0, D = dt.date(2024, 6, 30), dt.timedelta(days=1)


def _retrain(signals, cursor=None, trained_until=T0, newest_day=T0 + 3 * D, after=28):
    return decide_retraining(signals, cursor or RetrainingCursor(), trained_until=trained_until, newest_day=newest_day, retrain_after_days=after)


def test_a_failed_drift_check_requests_retraining_once_per_generation():
    failed = CheckSignal("training_dataset:feature_drift", 7, False, "3 of 20 features drifted")
    request, cursor = _retrain([failed])
    assert request.trigger == "drift" and request.run_key == "retrain:after-2024-06-30"
    assert "feature_drift" in request.reason and "3 of 20" in request.reason
    assert cursor.handled == {"training_dataset:feature_drift": 7} and cursor.requested_for == "2024-06-30"
    again, cursor2 = _retrain([failed], cursor)  # the same evaluation: already handled
    assert again is None and cursor2 == cursor
    newer = CheckSignal("training_dataset:feature_drift", 9, False)
    request3, cursor3 = _retrain([newer], cursor, newest_day=T0 + 40 * D)  # new failure, old data: same generation
    assert request3 is None and cursor3.handled["training_dataset:feature_drift"] == 9  # handled, no second request
    request4, _ = _retrain([CheckSignal("training_dataset:feature_drift", 11, False)], cursor3, trained_until=T0 + 28 * D, newest_day=T0 + 30 * D)
    assert request4.run_key == "retrain:after-2024-07-28"  # a new generation may retrain again


def test_passing_checks_do_not_request_but_advance_the_cursor():
    request, cursor = _retrain([CheckSignal("forecast_accuracy:accuracy_drift", 3, True)])
    assert request is None and cursor.handled == {"forecast_accuracy:accuracy_drift": 3} and cursor.requested_for is None
    assert RetrainingCursor.parse(cursor.serialize()) == cursor


def test_age_and_initial_triggers():
    assert _retrain([], newest_day=T0 + 27 * D)[0] is None
    request, cursor = _retrain([], newest_day=T0 + 28 * D)
    assert request.trigger == "age" and request.run_key == "retrain:after-2024-06-30"
    assert _retrain([], cursor, newest_day=T0 + 29 * D)[0] is None  # one request per generation
    first, _ = _retrain([], trained_until=None)
    assert first.trigger == "initial" and first.run_key == "retrain:after-never"
    assert _retrain([], trained_until=None, newest_day=None)[0] is None
