import numpy as np
import pytest

from demand_assets.marketing import adstock_geometric, adstock_weights, hill_saturation


def test_adstock_weights_normalised_geometric():
    w = adstock_weights(0.5, 2)
    # 1, 0.5, 0.25 normalised by 1.75
    np.testing.assert_allclose(w, [1 / 1.75, 0.5 / 1.75, 0.25 / 1.75])
    np.testing.assert_allclose(adstock_weights(0.5, 2, normalize=False), [1.0, 0.5, 0.25])


def test_adstock_hand_computed_pulse_and_cap_at_max_lag():
    spend = np.array([0.0, 100.0, 0.0, 0.0, 0.0, 50.0])
    out = adstock_geometric(spend, decay=0.5, max_lag=2, normalize=False)
    # a 100 pulse carries 100, 50, 25 and then stops (max_lag 2); 50 later starts a new pulse
    np.testing.assert_allclose(out, [0.0, 100.0, 50.0, 25.0, 0.0, 50.0])


def test_adstock_per_column_parameters_and_constant_spend_is_preserved():
    spend = np.full((30, 2), 10.0)
    out = adstock_geometric(spend, decay=[0.3, 0.8], max_lag=[3, 10])
    # Normalised weights keep a steady spend level once the carry-over window is full.
    np.testing.assert_allclose(out[10:], 10.0)
    assert out[0, 1] < out[5, 1] < 10.0  # the warm-up shows the carry-over building up


def test_hill_saturation_hand_computed_and_diminishing():
    assert hill_saturation(0.0, 100.0, 2.0) == 0.0
    assert hill_saturation(100.0, 100.0, 2.0) == pytest.approx(0.5)
    assert hill_saturation(200.0, 100.0, 2.0) == pytest.approx(40000 / 50000)
    x = np.linspace(100, 1000, 10)
    marginal = np.diff(hill_saturation(x, 100.0, 1.5))
    assert np.all(marginal > 0) and np.all(np.diff(marginal) < 0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: adstock_weights(1.0, 3),
        lambda: adstock_weights(0.5, -1),
        lambda: hill_saturation(1.0, 0.0, 1.0),
        lambda: hill_saturation(-1.0, 1.0, 1.0),
    ],
)
def test_invalid_parameters_are_rejected(call):
    with pytest.raises(ValueError):
        call()
