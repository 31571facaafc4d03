import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from demand_assets.forecasting.backtest import rolling_origin_folds, run_backtest, score_forecasts
from demand_assets.forecasting.models import SeasonalNaive
from demand_assets.forecasting.models.lightgbm_global import LightGBMForecaster
from demand_assets.forecasting.panel import future_frame
from tests.forecasting_panel import small_panel

TINY_LGBM = {"num_boost_round": 40, "num_leaves": 15, "min_data_in_leaf": 10}


def test_fold_boundaries_hand_computed():
    folds = rolling_origin_folds(dt.date(2024, 3, 31), n_folds=3, horizon=7, step=14)
    # test_end = last + 1 - (n_folds - 1 - k) * step; test_start = test_end - horizon; origin the day before
    assert [(f.origin, f.test_start, f.test_end) for f in folds] == [
        (dt.date(2024, 2, 25), dt.date(2024, 2, 26), dt.date(2024, 3, 4)),
        (dt.date(2024, 3, 10), dt.date(2024, 3, 11), dt.date(2024, 3, 18)),
        (dt.date(2024, 3, 24), dt.date(2024, 3, 25), dt.date(2024, 4, 1)),
    ]
    for f in folds:
        assert f.origin < f.test_start and f.horizon == 7


def test_default_folds_tile_the_last_days_without_gaps():
    folds = rolling_origin_folds(dt.date(2024, 12, 31), n_folds=4, horizon=28)
    assert folds[-1].test_end == dt.date(2025, 1, 1)
    for a, b in zip(folds, folds[1:]):
        assert a.test_end == b.test_start
    with pytest.raises(ValueError):
        rolling_origin_folds(dt.date(2024, 1, 1), n_folds=0)


def test_future_frame_carries_no_target_information():
    dataset, _ = small_panel()
    origin = dt.date(2024, 1, 31)
    future = future_frame(dataset, origin, 14)
    assert future["DATE"].min() == origin + dt.timedelta(days=1) and future["DATE"].max() == origin + dt.timedelta(days=14)
    forbidden = {"PRODUCT_DEMAND", "IN_STOCK"} | {c for c in dataset.columns if c.startswith(("DEMAND_", "RESPONSE_"))}
    assert not forbidden & set(future.columns)
    # Macro indicators are as of the origin, not the (unknown) future values.
    at_origin = dataset.filter(pl.col("DATE") == origin).select("COUNTRY", "PRODUCT", "ECONOMIC_INDEX")
    joined = future.join(at_origin, on=["COUNTRY", "PRODUCT"], suffix="_ORIGIN")
    assert (joined["ECONOMIC_INDEX"] == joined["ECONOMIC_INDEX_ORIGIN"]).all()


def test_no_fold_trains_on_a_day_it_is_scored_on():
    dataset, _ = small_panel()
    seen = {}

    class Spy(SeasonalNaive):
        def fit(self, train):
            seen.setdefault("max_train", []).append(train["DATE"].max())
            return self

    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=2, horizon=14)
    result = run_backtest(dataset, {"spy": Spy}, folds)
    for fold, trained_until in zip(folds, seen["max_train"]):
        assert trained_until == fold.origin
        scored = result.forecasts.filter(pl.col("FOLD") == fold.index)["DATE"]
        assert scored.min() == fold.test_start and scored.max() < fold.test_end


def test_seasonal_naive_repeats_last_week_hand_computed():
    dates = pl.date_range(dt.date(2024, 1, 1), dt.date(2024, 1, 21), eager=True)
    history = pl.DataFrame({"DATE": dates, "COUNTRY": "US", "PRODUCT": "P1", "PRODUCT_DEMAND": list(range(21)), "IN_STOCK": [True] * 21})
    future = pl.DataFrame({"DATE": pl.date_range(dt.date(2024, 1, 22), dt.date(2024, 1, 30), eager=True), "COUNTRY": "US", "PRODUCT": "P1"})
    out = SeasonalNaive(error_weeks=1).predict(history, future)
    # Jan 22 is a Monday: the last Monday (Jan 15) sold 14; Jan 29 repeats it too.
    assert out["P50"].to_list() == [14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0, 14.0, 15.0]
    # In-sample errors are all +7 (a linear trend): the band reaches 7 above the point and is
    # clamped to contain the point below.
    assert out["P90"].to_list()[0] == pytest.approx(21.0)
    assert out["P10"].to_list()[0] == pytest.approx(14.0)


def test_censoring_aware_seasonal_naive_skips_stockout_days():
    dates = pl.date_range(dt.date(2024, 1, 1), dt.date(2024, 1, 14), eager=True)
    demand = [10] * 14
    in_stock = [True] * 14
    demand[7], in_stock[7] = 0, False  # Monday Jan 8 was a stockout
    history = pl.DataFrame({"DATE": dates, "COUNTRY": "US", "PRODUCT": "P1", "PRODUCT_DEMAND": demand, "IN_STOCK": in_stock})
    future = pl.DataFrame({"DATE": [dt.date(2024, 1, 15)], "COUNTRY": "US", "PRODUCT": "P1"})
    assert SeasonalNaive(error_weeks=1).predict(history, future)["P50"][0] == 0.0
    assert SeasonalNaive(error_weeks=1, censoring_aware=True).predict(history, future)["P50"][0] == 10.0


def test_scores_match_hand_computed_metrics():
    forecasts = pl.DataFrame(
        {
            "MODEL": "m",
            "FOLD": 0,
            "DATE": [dt.date(2024, 1, d) for d in (1, 2, 3, 4)],
            "COUNTRY": "US",
            "PRODUCT": "P1",
            "ACTUAL": [10, 0, 5, 5],
            "IN_STOCK": [True, False, True, True],
            "MEAN": [8.0, 1.0, 5.0, 9.0],
            "P50": [8.0, 1.0, 5.0, 9.0],
            "P10": [5.0, 0.0, 4.0, 6.0],
            "P90": [12.0, 2.0, 6.0, 10.0],
        }
    )
    m = score_forecasts(forecasts).filter(pl.col("FOLD") == 0)
    all_days = m.filter(pl.col("REGIME") == "all").row(0, named=True)
    assert all_days["WAPE"] == pytest.approx(7 / 20) and all_days["COVERAGE_P10_P90"] == pytest.approx(3 / 4)
    in_stock = m.filter(pl.col("REGIME") == "in_stock").row(0, named=True)
    assert in_stock["ROWS"] == 3 and in_stock["WAPE"] == pytest.approx(6 / 20)


@pytest.fixture(scope="module")
def lgbm_fit():
    dataset, truth = small_panel()
    origin = dt.date(2024, 1, 31)
    train = dataset.filter(pl.col("DATE") <= origin)
    model = LightGBMForecaster(**TINY_LGBM).fit(train)
    return dataset, truth, origin, train, model


def test_lightgbm_forecasts_are_complete_ordered_and_non_negative(lgbm_fit):
    dataset, _, origin, train, model = lgbm_fit
    future = future_frame(dataset, origin, 14)
    out = model.predict(train, future)
    assert out.height == future.height
    assert (out["P10"] <= out["P50"]).all() and (out["P50"] <= out["P90"]).all() and (out["P10"] >= 0).all()


def test_lightgbm_quantile_boosters_train_on_a_capped_sample():
    """On a large panel the quantile boosters see a seeded sample; the mean sees every row."""
    dataset, _ = small_panel()
    train = dataset.filter(pl.col("DATE") <= dt.date(2024, 1, 31))
    model = LightGBMForecaster(**TINY_LGBM | {"quantile_max_rows": 500}).fit(train)
    assert train.height > 500

    def rows_seen(booster) -> int:  # the first tree's root holds every training row
        return booster.dump_model()["tree_info"][0]["tree_structure"]["internal_count"]

    assert rows_seen(model.models["mean"]) == train.height
    assert {rows_seen(model.models[q]) for q in ("p10", "p50", "p90")} == {500}
    out = model.predict(train, future_frame(dataset, dt.date(2024, 1, 31), 14))
    assert (out["P10"] <= out["P50"]).all() and (out["P50"] <= out["P90"]).all()
    again = LightGBMForecaster(**TINY_LGBM | {"quantile_max_rows": 500}).fit(train)
    assert again.models["p90"].model_to_string() == model.models["p90"].model_to_string()  # seeded sample


def test_lightgbm_cannot_see_the_future_target(lgbm_fit):
    """Scrambling every target after the origin changes nothing in the forecast."""
    dataset, _, origin, train, model = lgbm_fit
    scrambled = dataset.with_columns(
        pl.when(pl.col("DATE") > origin).then(pl.col("PRODUCT_DEMAND") * 13 + 7).otherwise(pl.col("PRODUCT_DEMAND")).alias("PRODUCT_DEMAND")
    )
    a = model.predict(train, future_frame(dataset, origin, 14))
    b = model.predict(scrambled.filter(pl.col("DATE") <= origin), future_frame(scrambled, origin, 14))
    assert_frame_equal(a, b)


def test_lightgbm_recursion_feeds_its_own_forecasts_into_lags(lgbm_fit):
    dataset, _, origin, train, model = lgbm_fit
    one = model.predict(train, future_frame(dataset, origin, 1))
    two = model.predict(train, future_frame(dataset, origin, 2))
    assert_frame_equal(one, two.filter(pl.col("DATE") == origin + dt.timedelta(days=1)))


def test_censoring_aware_training_raises_forecasts_towards_true_demand():
    """With many stockouts, zero-weighting censored days removes part of the downward bias."""
    dataset, truth = small_panel(stockout_start_rate=0.06)
    origin = dt.date(2024, 1, 31)
    train = dataset.filter(pl.col("DATE") <= origin)
    assert 1 - train["IN_STOCK"].mean() > 0.10  # heavy censoring, the case censoring-aware training is for
    future = future_frame(dataset, origin, 28)
    naive = LightGBMForecaster(**TINY_LGBM, censoring_aware=False).fit(train).predict(train, future)
    aware = LightGBMForecaster(**TINY_LGBM, censoring_aware=True).fit(train).predict(train, future)
    true_total = future.join(truth, on=["DATE", "COUNTRY", "PRODUCT"])["TRUE_DEMAND"].sum()
    assert aware["MEAN"].sum() > naive["MEAN"].sum()
    assert abs(aware["MEAN"].sum() - true_total) < abs(naive["MEAN"].sum() - true_total)


def test_lightgbm_beats_seasonal_naive_on_a_small_backtest():
    dataset, truth = small_panel()
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=2, horizon=28)
    result = run_backtest(dataset, {"naive": SeasonalNaive, "lgbm": lambda: LightGBMForecaster(**TINY_LGBM)}, folds, truth=truth)
    overall = result.metrics.filter((pl.col("FOLD") == -1) & (pl.col("REGIME") == "true"))
    wape = dict(zip(overall["MODEL"], overall["WAPE"]))
    assert wape["lgbm"] < wape["naive"]
    assert set(result.timings["MODEL"]) == {"naive", "lgbm"} and np.all(result.timings["FIT_SECONDS"].to_numpy() >= 0)


def test_optuna_tuning_returns_params_it_tried_and_reports_each_trial():
    from demand_assets.forecasting.tuning import tune_lightgbm

    dataset, _ = small_panel()
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=1, horizon=7)
    seen = []
    best, value = tune_lightgbm(dataset, folds, n_trials=3, num_boost_round=15, on_trial=lambda n, p, w: seen.append((n, p, w)))
    assert [n for n, _, _ in seen] == [0, 1, 2]
    assert value == min(w for _, _, w in seen)
    assert best in [p for _, p, _ in seen]
    assert 15 <= best["num_leaves"] <= 127


def test_mase_scales_are_each_series_seasonal_naive_error_on_its_fold_history():
    """The vectorised scales equal metrics.seasonal_scale per series and fold, whatever the
    panel's row order; a series with no more than 7 observed days has none."""
    from demand_assets.forecasting.backtest import _series_scales
    from demand_assets.forecasting.metrics import seasonal_scale

    dataset, _ = small_panel()
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=2, horizon=14)
    first = dataset.select("COUNTRY", "PRODUCT").row(0)
    short = dataset.filter(
        (pl.col("COUNTRY") == first[0]) & (pl.col("PRODUCT") == first[1]) & pl.col("DATE").is_between(folds[0].origin - dt.timedelta(days=6), folds[0].origin)
    ).with_columns(pl.lit("NEW").alias("PRODUCT"))
    assert short.height == 7
    panel = pl.concat([dataset, short]).sample(fraction=1.0, shuffle=True, seed=3)
    scales = _series_scales(panel, folds)
    for fold in folds:
        hist = dataset.filter(pl.col("DATE") <= fold.origin).sort("DATE")
        for (country, product), series in list(hist.group_by(["COUNTRY", "PRODUCT"]))[:5]:
            got = scales.filter((pl.col("FOLD") == fold.index) & (pl.col("COUNTRY") == country) & (pl.col("PRODUCT") == product))["SCALE"].item()
            assert got == pytest.approx(seasonal_scale(series["PRODUCT_DEMAND"].to_numpy(), 7))
    new = scales.filter(pl.col("PRODUCT") == "NEW")
    assert new.height == 2 and new["SCALE"].null_count() == 2


def test_mase_scales_skip_days_without_an_observed_target():
    """A day whose target is missing is left out before the seasonal change is taken (the change
    is to the 7th observed row before), in every fold."""
    from demand_assets.forecasting.backtest import _series_scales
    from demand_assets.forecasting.metrics import seasonal_scale

    dataset, _ = small_panel()
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=2, horizon=14)
    first = dataset.select("COUNTRY", "PRODUCT").row(0)
    one = (pl.col("COUNTRY") == first[0]) & (pl.col("PRODUCT") == first[1])
    gappy = dataset.with_columns(pl.when(one & (pl.col("DATE").dt.day() % 5 == 0)).then(None).otherwise(pl.col("PRODUCT_DEMAND")).alias("PRODUCT_DEMAND"))
    scales = _series_scales(gappy.sample(fraction=1.0, shuffle=True, seed=5), folds)
    for fold in folds:
        series = gappy.filter(one & (pl.col("DATE") <= fold.origin)).sort("DATE")["PRODUCT_DEMAND"].drop_nulls().to_numpy()
        got = scales.filter((pl.col("FOLD") == fold.index) & (pl.col("COUNTRY") == first[0]) & (pl.col("PRODUCT") == first[1]))["SCALE"].item()
        assert got == pytest.approx(seasonal_scale(series, 7))


def test_forecasts_are_sorted_by_model_fold_and_series_whatever_order_and_shards_the_units_came_in():
    from demand_assets.forecasting.backtest import sorted_forecasts

    rng = np.random.default_rng(1)
    day = dt.date(2024, 3, 1)
    rows = [
        {"MODEL": m, "FOLD": f, "DATE": day + dt.timedelta(days=d), "COUNTRY": c, "PRODUCT": p, "MEAN": float(rng.random())}
        for m in ("lightgbm", "ets", "seasonal_naive")
        for f in (0, 1)
        for c in ("DE", "FR")
        for p in ("A", "B", "C")
        for d in range(3)
    ]
    full = pl.DataFrame(rows).with_columns(pl.col("FOLD").cast(pl.Int32))
    # ETS in one frame per country (shard), the others one frame per model and fold; shuffled rows.
    frames = [full.filter((pl.col("MODEL") == "ets") & (pl.col("COUNTRY") == c)).sample(fraction=1.0, shuffle=True, seed=2) for c in ("FR", "DE")]
    frames += [g.sample(fraction=1.0, shuffle=True, seed=4) for _, g in full.filter(pl.col("MODEL") != "ets").group_by(["MODEL", "FOLD"])]
    frames.reverse()
    got = sorted_forecasts(frames)
    assert got.equals(full.sort("MODEL", "FOLD", "DATE", "COUNTRY", "PRODUCT"))


def test_scores_do_not_depend_on_how_the_forecasts_rows_are_ordered():
    """Slices of a frame grouped by model and fold, or the same rows interleaved: the same
    metrics (scaled per fold by each fold's own MASE scales)."""
    from demand_assets.forecasting.backtest import _series_scales, sorted_forecasts

    dataset, _ = small_panel()
    folds = rolling_origin_folds(dataset["DATE"].max(), n_folds=2, horizon=7)
    result = run_backtest(dataset, {"seasonal_naive": SeasonalNaive, "narrow_band": lambda: SeasonalNaive(error_weeks=2)}, folds)
    scales = _series_scales(dataset, folds)
    grouped = score_forecasts(sorted_forecasts([result.forecasts]), scales)
    shuffled = score_forecasts(result.forecasts.sample(fraction=1.0, shuffle=True, seed=11), scales)
    assert grouped.height == 2 * 3 * 2  # 2 models x (2 folds + all) x 2 regimes
    assert grouped["MASE"].null_count() == 0 and grouped.filter(pl.col("FOLD") == 0)["MASE"].to_list() != grouped.filter(pl.col("FOLD") == 1)["MASE"].to_list()
    assert_frame_equal(grouped, shuffled, check_exact=False, rel_tol=1e-12)
    assert_frame_equal(grouped, result.metrics, check_exact=False, rel_tol=1e-12)


def test_is_sorted_by_reads_the_columns_in_turn():
    from demand_assets.forecasting.backtest import _is_sorted_by

    d1, d2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
    frame = pl.DataFrame({"DATE": [d1, d1, d2, d2], "COUNTRY": ["DE", "FR", "DE", "DE"], "PRODUCT": ["Z", "A", "A", "B"]})
    assert _is_sorted_by(frame, ["DATE", "COUNTRY", "PRODUCT"])
    assert not _is_sorted_by(frame, ["COUNTRY", "DATE"])
    assert not _is_sorted_by(frame.reverse(), ["DATE", "COUNTRY", "PRODUCT"])
    assert not _is_sorted_by(frame.with_columns(pl.Series("PRODUCT", ["Z", "A", "B", "A"])), ["DATE", "COUNTRY", "PRODUCT"])
    assert _is_sorted_by(frame.head(1), ["DATE"])


def test_seasonal_naive_refuses_a_season_other_than_a_week():
    """Its forecast is the same weekday of the last week; a 14-day season doubled every row."""
    with pytest.raises(ValueError, match="season must be 7 days, got 14"):
        SeasonalNaive(season=14)
