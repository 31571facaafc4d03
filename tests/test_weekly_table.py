"""Issue 16 point 1, weekly tables: a `table` declared `frequency: weekly` runs the whole graph on
daily partitions. Each week lands on its week's day (the Friday that ends it); the other days
hold no rows by design and say so; lags, folds and horizons are whole weeks; forecasts land on
week days and are scored there. A weekly table with a hole or a row on another weekday is refused
by a named rule with nothing written."""

import datetime as dt

import dagster as dg
import numpy as np
import polars as pl
import pytest

from contracts import Cadence, SourceFormatError
from demand_assets.definitions import ALL_ASSETS
from demand_assets.domains.forecasts import DemandForecastConfig
from demand_assets.domains.models import ForecastingConfig
from demand_assets.features.training_dataset import build_training_dataset
from demand_assets.forecasting.models.deepar import DeepARConfig, DeepARForecaster
from demand_assets.forecasting.panel import future_frame
from demand_assets.forecasting.suite import SuiteSettings, model_factories
from demand_assets.sources import Domain
from demand_assets.sources.table import TableSource, TableSpec, TableSpecError, read_table, write_table_example
from resources import DemandSourceResource
from tests.conftest import materialize_range, small_resources

START = dt.date(2023, 1, 7)  # a Saturday: the first whole week ends on Friday 2023-01-13
DAYS = 546  # 78 weeks: the last 26 have their week of a year before (DEMAND_LAG_364)
FRIDAY = 5
LAST = dt.date(2024, 7, 5)  # the last Friday of the window


@pytest.fixture(scope="module")
def weekly(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weekly")
    write_table_example(directory, start=START, days=DAYS, n_products=4, frequency="weekly")
    return directory


def _source(weekly) -> TableSource:
    return TableSource(weekly / "table.yaml")


def _rows(source: TableSource) -> pl.DataFrame:
    return pl.concat(list(source.read(Domain.PRODUCT_DEMAND, START, LAST + dt.timedelta(days=1))))


def test_the_weekly_example_is_whole_weeks_on_fridays_and_declares_it(weekly):
    spec = TableSpec.from_yaml(weekly / "table.yaml")
    assert (spec.frequency, spec.week_ending) == ("weekly", FRIDAY)
    source = _source(weekly)
    assert source.cadence == Cadence.weekly(FRIDAY)
    rows = _rows(source)
    assert set(rows["DATE"].dt.weekday()) == {FRIDAY}
    assert (rows["DATE"].min(), rows["DATE"].max()) == (dt.date(2023, 1, 13), LAST)
    per_series = rows.group_by("COUNTRY", "PRODUCT").len()["len"]
    assert set(per_series) == {78}  # every series, every week
    # A week is the sum of its seven days, Saturday to Friday.
    daily = weekly.parent / "daily"
    write_table_example(daily, start=START, days=DAYS, n_products=4)
    days = pl.read_csv(daily / "example.csv").filter(pl.col("store") == "DE", pl.col("sku") == rows["PRODUCT"][0].split("/")[1])
    week = days.filter(pl.col("date").str.to_date().is_between(dt.date(2023, 1, 7), dt.date(2023, 1, 13)))
    first = rows.filter(pl.col("COUNTRY") == "DE", pl.col("PRODUCT") == rows["PRODUCT"][0], pl.col("DATE") == dt.date(2023, 1, 13))
    assert week.height == 7 and first["PRODUCT_DEMAND"][0] == week["units"].sum()


def test_week_ending_is_checked_against_the_rows_and_needs_weekly(tmp_path):
    (tmp_path / "s.csv").write_text("day,sku,units\n2024-01-05,A,10\n2024-01-12,A,12\n2024-01-19,A,9\n")
    base = {"path": "s.csv", "date": "day", "product": "sku", "target": "units", "frequency": "weekly"}
    assert read_table(TableSpec.from_mapping(base | {"week_ending": "fri"}, base=tmp_path)).height == 3
    with pytest.raises(SourceFormatError, match=r"weekly rows fall on one weekday \(the week's day: Sunday, declared week_ending\)"):
        read_table(TableSpec.from_mapping(base | {"week_ending": "Sunday"}, base=tmp_path))
    with pytest.raises(TableSpecError, match="week_ending is a weekday name"):
        TableSpec.from_mapping(base | {"week_ending": "payday"}, base=tmp_path)
    with pytest.raises(TableSpecError, match="week_ending only for a weekly table"):
        TableSpec.from_mapping(base | {"frequency": "daily", "week_ending": "friday"}, base=tmp_path)


def test_weekly_lags_are_whole_weeks_named_in_days(weekly):
    source = _source(weekly)
    rows = _rows(source)
    start = dt.date(2024, 1, 1)
    dataset = build_training_dataset(rows, None, None, source.catalog().products, start, LAST + dt.timedelta(days=1), source.cadence)
    assert set(dataset["DATE"].dt.weekday()) == {FRIDAY}
    assert {"DEMAND_LAG_7", "DEMAND_LAG_14", "DEMAND_LAG_28", "DEMAND_LAG_364", "DEMAND_ROLL_MEAN_28", "DEMAND_ROLL_MEAN_91"} <= set(dataset.columns)
    assert "DEMAND_LAG_1" not in dataset.columns  # a weekly series has no yesterday
    assert {"OBSERVED_ECONOMIC_INDEX_LAG_7", "OBSERVED_ECONOMIC_INDEX_LAG_28"} <= set(dataset.columns)
    one = dataset.filter(pl.col("DATE") == dt.date(2024, 3, 1)).row(0, named=True)
    series = rows.filter(pl.col("COUNTRY") == one["COUNTRY"], pl.col("PRODUCT") == one["PRODUCT"])
    value = dict(series.select("DATE", "PRODUCT_DEMAND").iter_rows())
    day = one["DATE"]
    for k in (7, 14, 28, 364):
        assert one[f"DEMAND_LAG_{k}"] == value[day - dt.timedelta(days=k)]
    assert one["DEMAND_ROLL_MEAN_28"] == pytest.approx(np.mean([value[day - dt.timedelta(days=7 * i)] for i in (1, 2, 3, 4)]))
    assert one["DEMAND_ROLL_MEAN_91"] == pytest.approx(np.mean([value[day - dt.timedelta(days=7 * i)] for i in range(1, 14)]))
    cpi = dict(series.select("DATE", "OBSERVED_ECONOMIC_INDEX").iter_rows())
    assert one["OBSERVED_ECONOMIC_INDEX_LAG_7"] == cpi[day - dt.timedelta(days=7)]
    # A holiday in the week ending on the row's Friday: Christmas 2023 (Monday) is in the week of Friday 2023-12-29.
    christmas = build_training_dataset(rows, None, None, source.catalog().products, dt.date(2023, 12, 20), dt.date(2024, 1, 6), source.cadence)
    flags = dict(christmas.filter(pl.col("COUNTRY") == "DE").select("DATE", "IS_HOLIDAY").unique().iter_rows())
    assert flags == {dt.date(2023, 12, 22): False, dt.date(2023, 12, 29): True, dt.date(2024, 1, 5): True}  # New Year's Day in the next


@pytest.mark.slow
def test_deepar_forecasts_weekly_series_in_weeks(weekly):
    source = _source(weekly)
    dataset = build_training_dataset(_rows(source), None, None, source.catalog().products, dt.date(2023, 7, 1), LAST + dt.timedelta(days=1), source.cadence)
    suite = SuiteSettings(models=("deepar",), horizon=28, deepar_epochs=1, deepar_batches_per_epoch=3, deepar_samples=20, deepar_hidden_size=8, period_days=7)
    model = model_factories(suite)["deepar"]()
    assert isinstance(model, DeepARForecaster) and model.config == DeepARConfig(
        prediction_length=4,
        context_length=8,
        hidden_size=8,
        max_epochs=1,
        num_batches_per_epoch=3,
        num_samples=20,
        lags_seq=model.config.lags_seq,
        period_days=7,
    )
    origin = LAST - dt.timedelta(days=28)
    history = dataset.filter(pl.col("DATE") <= origin)
    forecast = model.fit(history).predict(history, future_frame(dataset, origin, 28))
    assert sorted(set(forecast["DATE"])) == [origin + dt.timedelta(days=7 * h) for h in (1, 2, 3, 4)]
    assert forecast.height == 4 * 8 and np.isfinite(forecast["MEAN"].to_numpy()).all()
    with pytest.raises(ValueError, match="hybrid cannot forecast a weekly series"):
        model_factories(SuiteSettings(models=("hybrid",), period_days=7))


@pytest.fixture(scope="module")
def weekly_graph(tmp_path_factory, weekly):
    """Data, training, backtest, champion, forecasts and their accuracy on the weekly example."""
    root = tmp_path_factory.mktemp("weeklygraph") / "delta"
    resources = small_resources(root, source=DemandSourceResource(kind="table", table_spec=str(weekly / "table.yaml")))
    instance = dg.DagsterInstance.ephemeral()
    # The assets the source provides (as `make demo` selects for a real source), in one single run.
    results = {"data": materialize_range(resources, str(START), str(LAST), instance=instance, selection=["product_demand", "training_dataset"])}
    config = ForecastingConfig(models=["seasonal_naive", "ets", "lightgbm", "hybrid"], n_folds=2, horizon=28, history_days=DAYS, lgbm_rounds=50)
    results["models"] = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        selection=["model_backtest", "champion_model"],
        run_config=dg.RunConfig(ops={"model_backtest": config}),
        instance=instance,
        raise_on_error=False,
    )
    # Forecasts as of the last five weeks' days (5 Fridays, 30 other days), one single run.
    forecast_config = dg.RunConfig(ops={"demand_forecast": DemandForecastConfig(horizon=28)})
    first = LAST - dt.timedelta(days=34)
    results["forecast"] = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        selection=["demand_forecast"],
        run_config=forecast_config,
        instance=instance,
        tags={"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(LAST)},
        raise_on_error=False,
    )
    # Realised accuracy of the week ending on LAST (its forecast was made 28 days earlier).
    results["accuracy"] = materialize_range(resources, str(LAST - dt.timedelta(days=6)), str(LAST), selection=["forecast_accuracy"], instance=instance)
    # One day that is not a Friday, alone: recorded with no rows, nothing invented.
    results["thursday"] = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        selection=["product_demand", "training_dataset", "demand_forecast"],
        run_config=forecast_config,
        instance=instance,
        partition_key=str(LAST - dt.timedelta(days=1)),
        raise_on_error=False,
    )
    return resources["store"], results


@pytest.mark.slow
def test_weekly_table_runs_data_training_backtest_champion_forecast_and_accuracy(weekly_graph):
    store, results = weekly_graph
    assert all(r.success for r in results.values()), {k: r.success for k, r in results.items()}
    demand = store.read_all("product_demand")
    training = store.read_all("training_dataset")
    assert set(demand["DATE"].dt.weekday()) == {FRIDAY} and set(training["DATE"].dt.weekday()) == {FRIDAY}
    assert training.height == demand.height == 78 * 8
    # Lags per week: each DEMAND_LAG_7 is the same series' demand on the Friday before.
    before = training.select("COUNTRY", "PRODUCT", (pl.col("DATE") + dt.timedelta(days=7)).alias("DATE"), pl.col("PRODUCT_DEMAND").alias("PREVIOUS"))
    paired = training.join(before, on=["DATE", "COUNTRY", "PRODUCT"])
    assert paired.height == 77 * 8 and (paired["DEMAND_LAG_7"] == paired["PREVIOUS"]).all()
    assert training.filter(pl.col("DATE") >= dt.date(2024, 1, 12))["DEMAND_LAG_364"].null_count() == 0
    # The backtest: whole weeks, the hybrid left out by name, finite scores, LightGBM sane.
    settings = store.read_all("backtest_settings").row(0, named=True)
    assert '"hybrid"' not in settings["MODELS"] and '"period_days": 7' in settings["SUITE_JSON"]
    model_event = results["models"].asset_materializations_for_node("model_backtest")[0]
    assert "hybrid" in model_event.metadata["left_out_for_weekly"].value
    backtest = store.read_all("backtest_forecasts")
    assert set(backtest["DATE"].dt.weekday()) == {FRIDAY}
    assert set(backtest.group_by("MODEL", "FOLD", "COUNTRY", "PRODUCT").len()["len"]) == {4}  # 28 days ahead: 4 weeks
    metrics = store.read_all("backtest_metrics").filter(pl.col("FOLD") == -1, pl.col("REGIME") == "all")
    wape = dict(metrics.select("MODEL", "WAPE").iter_rows())
    assert set(wape) == {"seasonal_naive", "ets", "lightgbm"} and all(np.isfinite(list(wape.values())))
    assert np.isfinite(metrics["MASE"].to_numpy()).all()
    assert wape["lightgbm"] < wape["seasonal_naive"], wape
    # Forecasts: as of Fridays only, landing on Fridays 1..4 weeks ahead.
    forecast = store.read_all("demand_forecast")
    origins = sorted(set(forecast["DATE"]))
    assert origins == [LAST - dt.timedelta(days=7 * k) for k in (4, 3, 2, 1, 0)]
    assert set(forecast["TARGET_DATE"].dt.weekday()) == {FRIDAY} and set(forecast["HORIZON_DAY"]) == {7, 14, 21, 28}
    assert forecast.height == 5 * 8 * 4
    forecast_event = results["forecast"].asset_materializations_for_node("demand_forecast")[0]
    assert forecast_event.metadata["days_without_rows_by_design"].value == 30
    # forecast_accuracy: the Friday's realised accuracy of the forecast made 4 weeks before; no row on other days.
    accuracy = store.read_all("forecast_accuracy")
    assert accuracy["DATE"].to_list() == [LAST] and accuracy["ORIGIN"].to_list() == [LAST - dt.timedelta(days=28)]
    assert accuracy["ROWS"][0] == 4 * 8 and np.isfinite(accuracy["WAPE"][0])
    # A Thursday alone: each asset materialized with no rows by design, and says why.
    for event in results["thursday"].get_asset_materialization_events():
        metadata = event.materialization.metadata
        assert metadata["dagster/row_count"].value == 0 and "no week day" in metadata["note"].value, event.asset_key
    assert store.read_all("product_demand").height == demand.height


def _broken(tmp_path, edit) -> tuple[dg.ExecuteInProcessResult, object]:
    directory = tmp_path / "table"
    write_table_example(directory, start=START, days=70, n_products=2, frequency="weekly")
    table = edit(pl.read_csv(directory / "example.csv"))
    table.write_csv(directory / "example.csv")
    resources = small_resources(tmp_path / "delta", source=DemandSourceResource(kind="table", table_spec=str(directory / "table.yaml")))
    result = materialize_range(resources, str(START), "2023-03-17", selection=["product_demand"])
    return result, resources["store"]


@pytest.mark.parametrize(
    "edit, rule, example",
    [
        # One series misses a week: a hole, not a zero.
        (
            lambda t: t.filter(~((pl.col("date") == "2023-02-03") & (pl.col("store") == "DE") & (pl.col("sku") == t["sku"][0]))),
            "every series has a row on every week between its first and last",
            "weeks missing",
        ),
        # Every series misses the same week.
        (lambda t: t.filter(pl.col("date") != "2023-02-10"), "every week of the window has rows", "2023-02-10"),
        # A row on a Thursday.
        (
            lambda t: t.with_columns(pl.when(pl.col("date") == "2023-02-17").then(pl.lit("2023-02-16")).otherwise(pl.col("date")).alias("date")),
            "weekly rows fall on one weekday (the week's day: Friday, declared week_ending)",
            "Thursday",
        ),
    ],
    ids=["one_series_misses_a_week", "every_series_misses_a_week", "a_row_on_a_thursday"],
)
def test_a_broken_weekly_table_is_refused_by_a_named_rule_with_nothing_written(tmp_path, edit, rule, example):
    result, store = _broken(tmp_path, edit)
    assert not result.success
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "product_demand_contract")
    violations = check.metadata["violations"].value
    assert not check.passed and rule in violations and example in violations, violations
    assert check.metadata["written"].value is False
    assert not store.exists("product_demand")
