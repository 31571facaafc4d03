import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from demand_assets.forecasting.models.lightgbm_global import LightGBMForecaster
from demand_assets.forecasting.panel import future_frame
from demand_assets.forecasting.registry import ForecasterPyfunc, choose_champion, split_request
from resources import MlflowTracking
from tests.forecasting_panel import small_panel


def test_a_registered_pyfunc_loads_back_and_gives_the_same_numbers(tmp_path):
    dataset, _ = small_panel()
    origin = dt.date(2024, 1, 31)
    train = dataset.filter(pl.col("DATE") <= origin)
    future = future_frame(dataset, origin, 7)
    model = LightGBMForecaster(num_boost_round=20).fit(train)
    direct = model.predict(train, future)

    tracking = MlflowTracking(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=(tmp_path / "artifacts").as_uri())
    with tracking.run("test"):
        version = tracking.log_and_register(ForecasterPyfunc(model, "lightgbm"), "lightgbm", {"model": "lightgbm"})
    tracking.set_champion(version)
    assert tracking.champion_version() == version
    loaded = tracking.load(tracking.champion_version())
    request = pl.concat([train, future], how="diagonal_relaxed").to_pandas()
    served = pl.from_pandas(loaded.predict(request)).with_columns(pl.col("DATE").cast(pl.Date))
    assert_frame_equal(served, direct)


def test_a_request_needs_history_and_future_rows():
    frame = pl.DataFrame({"DATE": [dt.date(2024, 1, 1)], "COUNTRY": ["US"], "PRODUCT": ["P1"], "PRODUCT_DEMAND": [3]})
    with pytest.raises(ValueError, match="future rows"):
        split_request(frame)


def _overall(wapes: dict[str, float]) -> pl.DataFrame:
    return pl.DataFrame({"MODEL": list(wapes), "REGIME": "in_stock", "WAPE": list(wapes.values())})


def test_champion_is_the_best_model_that_beats_the_baseline():
    winner, reason = choose_champion(_overall({"seasonal_naive": 0.6, "lightgbm": 0.4, "deepar": 0.45}), baseline="seasonal_naive", regime="in_stock")
    assert winner == "lightgbm" and "0.400" in reason and "0.600" in reason


def test_no_champion_when_nothing_beats_the_baseline():
    winner, reason = choose_champion(_overall({"seasonal_naive": 0.4, "lightgbm": 0.41}), baseline="seasonal_naive", regime="in_stock")
    assert winner is None and "no model beat seasonal_naive" in reason
    winner, _ = choose_champion(_overall({"lightgbm": 0.41}), baseline="seasonal_naive", regime="in_stock")
    assert winner is None


def test_a_reference_model_that_scores_best_is_never_the_challenger():
    """Regression: on real M5 series LightGBM trained as if stockouts were demand scored best, was
    chosen as challenger and champion_model failed with KeyError (references are not registered)."""
    overall = _overall({"seasonal_naive": 0.6, "lightgbm_uncensored_training": 0.38, "lightgbm": 0.4, "ets": 0.5})
    winner, reason = choose_champion(overall, baseline="seasonal_naive", regime="in_stock", candidates=["seasonal_naive", "lightgbm", "ets"])
    assert winner == "lightgbm" and "0.400" in reason
    only_reference = _overall({"seasonal_naive": 0.6, "lightgbm_uncensored_training": 0.38})
    assert choose_champion(only_reference, baseline="seasonal_naive", regime="in_stock", candidates=["seasonal_naive"])[0] is None
