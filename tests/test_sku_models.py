"""Per-SKU models: weekly aggregation, the TCN, the period backtest and the pyfunc."""

import datetime as dt
import pickle

import numpy as np
import polars as pl
import pytest

from demand_assets.forecasting.models.tcn import TCNForecaster, TCNSettings
from demand_assets.forecasting.sku import MeanOfLastForecaster, SkuForecasterPyfunc, period_backtest, to_periods

TINY = TCNSettings(input_len=8, horizon=4, channels=8, epochs=15, seed=1)


def _weekly_panel(weeks: int = 60, series: int = 6, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = dt.date(2023, 1, 2)
    rows = []
    for s in range(series):
        level = 5.0 * (s + 1)
        for w in range(weeks):
            rows.append(
                {"COUNTRY": "US", "PRODUCT": f"P{s}", "PERIOD": start + dt.timedelta(weeks=w), "UNITS": float(rng.poisson(level * (1 + 0.3 * np.sin(w / 4))))}
            )
    return pl.DataFrame(rows)


def test_weekly_periods_start_on_monday_and_drop_incomplete_weeks():
    days = [dt.date(2024, 1, 3) + dt.timedelta(days=i) for i in range(20)]  # Wed 3 Jan .. Mon 22 Jan
    daily = pl.DataFrame({"DATE": days, "COUNTRY": "US", "PRODUCT": "A", "PRODUCT_DEMAND": [1] * 20})
    weekly = to_periods(daily, "weekly")
    assert weekly["PERIOD"].to_list() == [dt.date(2024, 1, 8), dt.date(2024, 1, 15)]
    assert weekly["UNITS"].to_list() == [7.0, 7.0]
    with pytest.raises(ValueError, match="daily' or 'weekly"):
        to_periods(daily, "monthly")


@pytest.fixture(scope="module")
def fitted():
    return TCNForecaster(TINY).fit(_weekly_panel())


def test_tcn_predicts_ordered_non_negative_quantiles_per_step(fitted):
    out = fitted.predict_steps(_weekly_panel(), 4)
    assert out.height == 6 * 4 and out["STEP"].unique().sort().to_list() == [1, 2, 3, 4]
    assert ((out["P10"] <= out["P50"]) & (out["P50"] <= out["P90"]) & (out["P10"] >= 0)).all()
    # Larger series get larger forecasts: the per-window scaling works.
    by_series = out.group_by("PRODUCT").agg(pl.col("P50").mean()).sort("PRODUCT")["P50"].to_numpy()
    assert by_series[-1] > 2 * by_series[0]


def test_tcn_refuses_short_history_and_long_horizons(fitted):
    panel = _weekly_panel()
    with pytest.raises(ValueError, match="too little history"):
        fitted.predict_steps(panel.filter(pl.col("PERIOD") < dt.date(2023, 2, 1)), 4)
    with pytest.raises(ValueError, match="horizon must lie in 1..4"):
        fitted.predict_steps(panel, 9)


def test_tcn_survives_pickling_with_the_same_numbers(fitted):
    again = pickle.loads(pickle.dumps(fitted))
    a, b = fitted.predict_steps(_weekly_panel(), 4), again.predict_steps(_weekly_panel(), 4)
    np.testing.assert_allclose(a["P50"].to_numpy(), b["P50"].to_numpy(), rtol=1e-6)


def test_period_backtest_scores_the_last_folds_only_on_unseen_periods():
    panel = _weekly_panel(weeks=40)
    forecasts, metrics = period_backtest(panel, {"naive": lambda: MeanOfLastForecaster(4, 4), "tcn": lambda: TCNForecaster(TINY)}, n_folds=2, horizon=4)
    periods = sorted(panel["PERIOD"].unique().to_list())
    assert sorted(forecasts["PERIOD"].unique().to_list()) == periods[-8:]
    assert set(metrics["FOLD"]) == {-1, 0, 1} and set(metrics["MODEL"]) == {"naive", "tcn"}
    overall = {r["MODEL"]: r for r in metrics.filter(pl.col("FOLD") == -1).iter_rows(named=True)}
    assert 0 < overall["tcn"]["WAPE"] < 1 and 0 <= overall["tcn"]["COVERAGE_P10_P90"] <= 1


def test_pyfunc_dates_its_periods_after_the_last_one(fitted):
    wrapper = SkuForecasterPyfunc(fitted, "tcn", "weekly")
    panel = _weekly_panel()
    out = wrapper.predict(None, panel.to_pandas(), params={"horizon": 2})
    last = panel["PERIOD"].max()
    assert sorted(set(pl.from_pandas(out)["PERIOD"].cast(pl.Date).to_list())) == [last + dt.timedelta(weeks=1), last + dt.timedelta(weeks=2)]
    assert wrapper.max_horizon == 4 and wrapper.min_history == 8


def test_tcn_mean_is_its_own_head_and_tracks_the_level(fitted):
    panel = _weekly_panel()
    out = fitted.predict_steps(panel, 4)
    assert not np.allclose(out["MEAN"].to_numpy(), out["P50"].to_numpy())  # not a copy of the median
    recent = panel.sort("PERIOD").group_by("PRODUCT").agg(pl.col("UNITS").tail(8).mean().alias("LEVEL"))
    joined = out.group_by("PRODUCT").agg(pl.col("MEAN").mean()).join(recent, on="PRODUCT")
    ratio = joined["MEAN"].to_numpy() / joined["LEVEL"].to_numpy()
    assert np.all((ratio > 0.5) & (ratio < 1.5)), ratio


def test_period_backtest_uses_the_daily_harness_folds_in_weeks():
    from demand_assets.forecasting.backtest import rolling_origin_folds

    panel = _weekly_panel(weeks=40)
    forecasts, metrics = period_backtest(panel, {"naive": lambda: MeanOfLastForecaster(4, 4)}, n_folds=3, horizon=4, frequency="weekly")
    last_sunday = panel["PERIOD"].max() + dt.timedelta(days=6)
    folds = rolling_origin_folds(last_sunday, n_folds=3, horizon=28)
    for fold in folds:
        weeks = forecasts.filter(pl.col("FOLD") == fold.index)["PERIOD"].unique().sort().to_list()
        assert weeks == [fold.test_start + dt.timedelta(weeks=k) for k in range(4)]
    assert {"WAPE", "RMSE", "BIAS", "COVERAGE_P10_P90"} <= set(metrics.columns) and set(metrics["FOLD"]) == {-1, 0, 1, 2}


def test_per_sku_models_speak_the_daily_forecaster_protocol(fitted):
    """predict(history, future) keys the forecast by the future's periods; the numbers are the
    step forecasts of the same history, for the TCN and the naive reference alike."""
    from demand_assets.forecasting.sku import next_periods

    panel = _weekly_panel()
    future = next_periods(panel, 3, "weekly")
    for model in (fitted, MeanOfLastForecaster(4, 4)):
        out = model.predict(panel, future)
        assert out.select("COUNTRY", "PRODUCT", "PERIOD").sort("COUNTRY", "PRODUCT", "PERIOD").equals(future)
        steps = model.predict_steps(panel, 3)
        joined = out.join(steps, on=["COUNTRY", "PRODUCT", "STEP"], suffix="_STEPS")
        assert joined.height == out.height
        np.testing.assert_allclose(joined["P50"].to_numpy(), joined["P50_STEPS"].to_numpy())
