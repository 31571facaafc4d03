import math

import numpy as np
import pytest

from demand_assets.forecasting.metrics import bias, interval_coverage, mase, pinball_loss, rmse, seasonal_scale, wape

A = [10.0, 0.0, 5.0, 5.0]
F = [8.0, 1.0, 5.0, 9.0]


def test_wape_hand_computed():
    # |2| + |1| + 0 + |4| = 7 over 20
    assert wape(A, F) == pytest.approx(7 / 20)
    assert math.isnan(wape([0, 0], [1, 1]))


def test_rmse_hand_computed():
    assert rmse(A, F) == pytest.approx(math.sqrt((4 + 1 + 0 + 16) / 4))


def test_bias_sign_means_over_forecast():
    # (8 + 1 + 5 + 9) - 20 = 3 over 20
    assert bias(A, F) == pytest.approx(3 / 20)
    assert bias([10], [5]) == pytest.approx(-0.5)


def test_seasonal_scale_and_mase_hand_computed():
    history = [1, 2, 3, 4, 5, 6, 7, 3, 2, 3, 4, 5, 6, 7]  # seasonal differences: 2, 0, 0, 0, 0, 0, 0
    assert seasonal_scale(history, 7) == pytest.approx(2 / 7)
    # errors 2, 1, 0, 4 scaled by 2/7 each -> mean 7/4 * 7/2
    assert mase(A, F, 2 / 7) == pytest.approx((7 / 4) / (2 / 7))
    # a row with no usable scale is left out
    assert mase([1, 1], [2, 3], [1.0, 0.0]) == pytest.approx(1.0)


def test_pinball_loss_hand_computed():
    # q=0.9: under-forecast costs 0.9 per unit, over-forecast 0.1 per unit
    assert pinball_loss([10, 10], [8, 13], 0.9) == pytest.approx((0.9 * 2 + 0.1 * 3) / 2)
    assert pinball_loss([10, 10], [8, 13], 0.1) == pytest.approx((0.1 * 2 + 0.9 * 3) / 2)
    # the median's pinball loss is half the MAE
    assert pinball_loss(A, F, 0.5) == pytest.approx(0.5 * np.mean(np.abs(np.array(A) - F)))
    with pytest.raises(ValueError):
        pinball_loss(A, F, 1.0)


def test_interval_coverage_hand_computed():
    assert interval_coverage([1, 5, 9, 3], [0, 6, 8, 3], [2, 7, 10, 3]) == pytest.approx(3 / 4)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        wape([1, 2], [1])
