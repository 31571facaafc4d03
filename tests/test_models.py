"""Each model trains and predicts on a tiny panel; DeepAR masks censored days; the hybrid's
stage 2 only sees what was known at each forecast origin."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from demand_assets.forecasting.models.deepar import DeepARConfig, DeepARForecaster
from demand_assets.forecasting.models.ets import ETSForecaster
from demand_assets.forecasting.models.hybrid import DeepARLightGBMHybrid
from demand_assets.forecasting.models.seasonal_naive import SeasonalNaive
from demand_assets.forecasting.panel import future_frame
from tests.forecasting_panel import small_panel

ORIGIN = dt.date(2024, 1, 31)
TINY_DEEPAR = DeepARConfig(
    prediction_length=14, context_length=28, hidden_size=8, num_layers=1, batch_size=16, num_batches_per_epoch=3, max_epochs=1, num_samples=20
)


def _check_forecast(out: pl.DataFrame, future: pl.DataFrame) -> None:
    assert out.height == future.height
    assert (
        out.select("DATE", "COUNTRY", "PRODUCT")
        .sort("DATE", "COUNTRY", "PRODUCT")
        .equals(future.select("DATE", "COUNTRY", "PRODUCT").sort("DATE", "COUNTRY", "PRODUCT"))
    )
    assert (out["P10"] >= 0).all() and (out["P10"] <= out["P50"]).all() and (out["P50"] <= out["P90"]).all()
    assert out["MEAN"].is_finite().all()


@pytest.fixture(scope="module")
def panel():
    dataset, truth = small_panel()
    train = dataset.filter(pl.col("DATE") <= ORIGIN)
    return dataset, truth, train, future_frame(dataset, ORIGIN, 14)


def test_ets_forecasts_every_series_and_day(panel):
    _, _, train, future = panel
    _check_forecast(ETSForecaster(history_days=120).fit(train).predict(train, future), future)


def test_ets_worker_processes_give_the_in_process_forecasts_and_gaps_are_filled(panel):
    """The process-pool path (large panels) returns exactly the serial path's forecasts, and a
    series with missing days (an unlisted week) still gets a forecast."""
    _, _, train, future = panel
    some = train.select("COUNTRY", "PRODUCT").unique().sort("COUNTRY", "PRODUCT").head(4)
    train = train.join(some, on=["COUNTRY", "PRODUCT"])
    future = future.join(some, on=["COUNTRY", "PRODUCT"])
    first = some.row(0)
    unlisted = (
        (pl.col("COUNTRY") == first[0])
        & (pl.col("PRODUCT") == first[1])
        & pl.col("DATE").is_between(ORIGIN - dt.timedelta(days=30), ORIGIN - dt.timedelta(days=24))
    )
    train = train.filter(~unlisted)
    serial = ETSForecaster(history_days=120, n_jobs=1).predict(train, future)
    pooled = ETSForecaster(history_days=120, n_jobs=2, min_series_per_job=1).predict(train, future)
    assert pooled.equals(serial)
    _check_forecast(serial, future)
    gappy = serial.filter((pl.col("COUNTRY") == first[0]) & (pl.col("PRODUCT") == first[1]))
    assert gappy.height == future["DATE"].n_unique() and gappy["MEAN"].std() > 0  # a fitted, weekly forecast


def test_deepar_trains_and_forecasts_on_a_tiny_panel(panel):
    _, _, train, future = panel
    model = DeepARForecaster(TINY_DEEPAR).fit(train)
    out = model.predict(train, future)
    _check_forecast(out, future)
    # sample paths, not a point: the band has width
    assert (out["P90"] - out["P10"]).mean() > 0


def test_deepar_is_a_function_of_the_data_not_of_its_row_order(panel):
    """The same rows in another order (another Delta file layout, another day's rebuild of the
    training dataset) give the same model and the same forecasts, bit for bit."""
    _, _, train, future = panel
    shuffled = train.sample(fraction=1.0, shuffle=True, seed=7)
    assert not shuffled.equals(train) and shuffled.sort(train.columns).equals(train.sort(train.columns))
    ordered = DeepARForecaster(TINY_DEEPAR).fit(train).predict(train, future).sort("COUNTRY", "PRODUCT", "DATE")
    reordered = DeepARForecaster(TINY_DEEPAR).fit(shuffled).predict(shuffled, future.reverse()).sort("COUNTRY", "PRODUCT", "DATE")
    assert reordered.equals(ordered)


def test_a_trained_deepar_lets_its_training_entries_go(panel, monkeypatch):
    """A fitted model keeps the network, not the data it was trained on: Lightning's trainer and
    its data loaders held every training entry (1.4-1.7 GB at M5 size) for as long as the model
    lived, and the hybrid's stage-1 models' through its final DeepAR's training (8.26 GB)."""
    import gc
    import weakref

    _, _, train, future = panel
    model = DeepARForecaster(TINY_DEEPAR)
    held: list[weakref.ref] = []
    entries = model._entries

    def spy(*args, **kwargs):
        out = entries(*args, **kwargs)
        held.append(weakref.ref(out[0]["target"]))
        return out

    monkeypatch.setattr(model, "_entries", spy)
    model.fit(train)
    monkeypatch.undo()
    gc.collect()
    assert len(held) == 1 and held[0]() is None
    _check_forecast(model.predict(train, future), future)  # and it still forecasts


def test_deepar_refuses_a_horizon_longer_than_it_was_trained_for(panel):
    dataset, _, train, _ = panel
    model = DeepARForecaster(TINY_DEEPAR).fit(train)
    with pytest.raises(ValueError, match="prediction_length"):
        model.predict(train, future_frame(dataset, ORIGIN, 28))


def test_deepar_masks_censored_days_through_observed_values(panel):
    """Censored days become NaN targets, which GluonTS's own transform turns into a zero in the
    observed_values mask (out of the loss); the naive variant keeps them as real zeros."""
    from gluonts.dataset.field_names import FieldName
    from gluonts.transform import AddObservedValuesIndicator

    _, _, train, _ = panel
    series = train.filter((pl.col("COUNTRY") == train["COUNTRY"][0]) & (pl.col("PRODUCT") == train["PRODUCT"][0]))
    assert (~series["IN_STOCK"]).sum() > 0, "the test series needs stockout days"
    indicator = AddObservedValuesIndicator(target_field=FieldName.TARGET, output_field=FieldName.OBSERVED_VALUES)
    masks = {}
    for aware in (True, False):
        (entry,) = DeepARForecaster(TINY_DEEPAR, censoring_aware=aware)._prepare(series)
        masks[aware] = next(iter(indicator([entry], is_train=True)))[FieldName.OBSERVED_VALUES]
    in_stock = series.sort("DATE")["IN_STOCK"].to_numpy()
    np.testing.assert_array_equal(masks[True], in_stock.astype(np.float32))
    assert masks[False].all()


def test_deepar_entries_line_up_each_series_with_its_own_days_and_calendar_flags(panel):
    """Each entry carries its own series' target by day (NaN where a day is missing) and its
    features by day, forward-filled over gaps; a source's SNAP/IS_EVENT flags become features."""
    from gluonts.dataset.field_names import FieldName

    _, _, train, _ = panel
    first_series = train.select("COUNTRY", "PRODUCT").unique().sort("COUNTRY", "PRODUCT").head(3)
    frame = train.join(first_series, on=["COUNTRY", "PRODUCT"]).with_columns(
        ((pl.col("DATE").dt.day() % 3) == 0).cast(pl.Int8).alias("SNAP"), (pl.col("DATE").dt.day() == 1).alias("IS_EVENT")
    )
    gap_series = first_series.row(1)
    start = frame["DATE"].min()
    gap = [start + dt.timedelta(days=d) for d in range(40, 45)]
    in_gap = (pl.col("COUNTRY") == gap_series[0]) & (pl.col("PRODUCT") == gap_series[1]) & pl.col("DATE").is_in(gap)
    frame = frame.filter(~in_gap)

    model = DeepARForecaster(TINY_DEEPAR, censoring_aware=False)
    entries = model._prepare(frame)
    assert model.dynamic_features[-2:] == ["SNAP", "IS_EVENT"]
    assert {e[FieldName.ITEM_ID] for e in entries} == {f"{c}|{p}" for c, p in first_series.iter_rows()}
    snap, event = model.dynamic_features.index("SNAP"), model.dynamic_features.index("IS_EVENT")
    for entry in entries:
        country, product = entry[FieldName.ITEM_ID].split("|")
        own = frame.filter((pl.col("COUNTRY") == country) & (pl.col("PRODUCT") == product)).sort("DATE")
        offsets = ((own["DATE"] - start).dt.total_days()).to_numpy()
        target, feats = entry[FieldName.TARGET], entry[FieldName.FEAT_DYNAMIC_REAL]
        np.testing.assert_array_equal(target[offsets], own["PRODUCT_DEMAND"].to_numpy().astype(np.float32))
        np.testing.assert_array_equal(feats[snap, offsets], own["SNAP"].to_numpy().astype(np.float32))
        np.testing.assert_array_equal(feats[event, offsets], own["IS_EVENT"].to_numpy().astype(np.float32))
        if (country, product) == gap_series:
            missing = [(d - start).days for d in gap]
            assert np.isnan(target[missing]).all()
            # Features over the gap repeat the last known day's values.
            np.testing.assert_array_equal(feats[:, missing], np.repeat(feats[:, [missing[0] - 1]], len(missing), axis=1))
        else:
            assert not np.isnan(target).any()


class _RecordingDeepAR:
    """Stands in for DeepAR in the orchestration tests: records which instance was given what,
    answers with a seasonal naive forecast."""

    calls: list = []
    made = 0

    def __init__(self, config, censoring_aware=True, executor=None):
        self.config = config
        self.executor = executor
        _RecordingDeepAR.made += 1
        self.serial = _RecordingDeepAR.made  # not id(): a dropped instance's id can be reused

    def fit(self, train):
        _RecordingDeepAR.calls.append((self.serial, "fit", train["DATE"].max(), None))
        return self

    def predict(self, history, future):
        _RecordingDeepAR.calls.append((self.serial, "predict", history["DATE"].max(), future["DATE"].min()))
        _RecordingDeepAR.executors.append(self.executor)
        return SeasonalNaive().predict(history, future)

    executors: list = []


def test_the_hybrid_draws_every_deepar_pass_on_its_executor_also_when_loaded(panel, monkeypatch):
    """The hybrid's eight DeepAR passes are most of its time at M5 size: each runs on the step's
    executor, in training and, once the registered model is loaded and handed one, in prediction."""
    import pickle

    import demand_assets.forecasting.models.hybrid as hybrid_module
    from demand_assets.forecasting.compute import InProcess
    from demand_assets.forecasting.registry import ForecasterPyfunc

    monkeypatch.setattr(hybrid_module, "DeepARForecaster", _RecordingDeepAR)
    _, _, train, future = panel
    step = InProcess()
    _RecordingDeepAR.executors = []
    model = DeepARLightGBMHybrid(DeepARConfig(prediction_length=14), stage2_windows=2, num_boost_round=5, min_data_in_leaf=5, executor=step).fit(train)
    assert len(_RecordingDeepAR.executors) == 4 and all(e is step for e in _RecordingDeepAR.executors)  # two windows, two passes each
    loaded = pickle.loads(pickle.dumps(ForecasterPyfunc(model, "hybrid")))
    assert loaded.forecaster.executor is None  # the step's executor stays behind
    later = InProcess()
    loaded.use_executor(later)
    _RecordingDeepAR.executors = []
    loaded.forecaster.predict(train, future)
    assert len(_RecordingDeepAR.executors) == 2 and all(e is later for e in _RecordingDeepAR.executors)


def test_hybrid_stage2_only_sees_out_of_sample_deepar_forecasts(panel, monkeypatch):
    import demand_assets.forecasting.models.hybrid as hybrid_module

    _RecordingDeepAR.calls = []
    monkeypatch.setattr(hybrid_module, "DeepARForecaster", _RecordingDeepAR)
    _, _, train, future = panel
    model = DeepARLightGBMHybrid(DeepARConfig(prediction_length=14), stage2_windows=2, num_boost_round=20, min_data_in_leaf=5).fit(train)
    stage1, final = model.stage1.serial, model.final.serial
    fits = [(who, until) for who, kind, until, _ in _RecordingDeepAR.calls if kind == "fit"]
    # Cross-fitting: one stage-1 model per window, each trained up to that window's origin, then
    # the final model on everything.
    assert [until for _, until in fits] == [ORIGIN - dt.timedelta(days=28), ORIGIN - dt.timedelta(days=14), ORIGIN]
    assert len({who for who, _ in fits}) == 3 and fits[1][0] == stage1 and fits[2][0] == final
    trained_until = dict(fits)
    predictions = [c for c in _RecordingDeepAR.calls if c[1] == "predict"]
    for who, _, history_end, first_forecast_day in predictions:
        assert first_forecast_day == history_end + dt.timedelta(days=1)  # forecasts start right after the history
        # A model forecasts either the days after its training window (the stage-2 rows) or the
        # last 14 days of it from 14 days before its end (its residuals: days known at its origin).
        assert history_end in (trained_until[who], trained_until[who] - dt.timedelta(days=14))
    stage2_rows = [(who, end) for who, _, end, _ in predictions if end == trained_until[who]]
    assert [end for _, end in stage2_rows] == [ORIGIN - dt.timedelta(days=28), ORIGIN - dt.timedelta(days=14)]
    assert all(who != final for who, _ in stage2_rows)

    _RecordingDeepAR.calls = []
    out = model.predict(train, future)
    _check_forecast(out, future)
    at_prediction = {(who, history_end) for who, _, history_end, _ in _RecordingDeepAR.calls}
    # The final DeepAR conditions on all history and supplies its own residual features,
    # exactly as each stage-1 model did for its window.
    assert at_prediction == {(final, ORIGIN), (final, ORIGIN - dt.timedelta(days=14))}


def test_hybrid_stage2_corrects_deepar_rather_than_replacing_it(panel, monkeypatch):
    """Boosting starts from DeepAR's forecast: with a negligible learning rate the hybrid returns
    DeepAR's (here: the stand-in's) forecast unchanged."""
    import demand_assets.forecasting.models.hybrid as hybrid_module

    monkeypatch.setattr(hybrid_module, "DeepARForecaster", _RecordingDeepAR)
    _, _, train, future = panel
    model = DeepARLightGBMHybrid(DeepARConfig(prediction_length=14), stage2_windows=2, num_boost_round=2, learning_rate=1e-9, min_data_in_leaf=5)
    out = model.fit(train).predict(train, future)
    deepar = SeasonalNaive().predict(train, future).sort("DATE", "COUNTRY", "PRODUCT")
    out = out.sort("DATE", "COUNTRY", "PRODUCT")
    for column in ("P10", "P50", "P90"):
        np.testing.assert_allclose(out[column].to_numpy(), deepar[column].to_numpy(), atol=1e-6)
    positive = deepar["MEAN"].to_numpy() > 0.05  # the log-scale margin floors DeepAR's mean at 0.05
    np.testing.assert_allclose(out["MEAN"].to_numpy()[positive], deepar["MEAN"].to_numpy()[positive], rtol=1e-6)


def test_hybrid_end_to_end_with_real_deepar(panel):
    _, _, train, future = panel
    model = DeepARLightGBMHybrid(TINY_DEEPAR, stage2_windows=1, num_boost_round=20, min_data_in_leaf=5).fit(train)
    _check_forecast(model.predict(train, future), future)


def test_a_lightgbm_fit_logs_its_rounds_as_it_goes(panel, caplog):
    """Issue 19 point 5: a long LightGBM unit shows progress (rounds done / total, elapsed,
    rate) for each booster, about every tenth of its rounds."""
    import logging

    from demand_assets.forecasting.models.lightgbm_global import LightGBMForecaster

    _, _, train, _ = panel
    with caplog.at_level(logging.INFO, logger="demand_assets.forecasting.models.boosting"):
        LightGBMForecaster(num_boost_round=20).fit(train)
    lines = [r.getMessage() for r in caplog.records if r.name == "demand_assets.forecasting.models.boosting"]
    for booster in ("mean", "p10", "p50", "p90"):
        mine = [line for line in lines if line.startswith(f"lightgbm {booster} booster:")]
        assert [line.split("round ")[1].split(" ")[0] for line in mine] == [f"{k}/20" for k in range(2, 21, 2)], mine
        assert "rounds/s" in mine[-1]
