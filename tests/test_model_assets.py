"""The model assets end to end in a temporary home: backtest tables, MLflow runs, registry."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from demand_assets.domains.models import ForecastingConfig
from demand_assets.forecasting.panel import future_frame
from demand_assets.forecasting.registry import CHAMPION_ALIAS
from tests.conftest import materialize_range, small_resources

pytestmark = pytest.mark.slow  # trains every model of the line-up on a small world (about a minute)

TINY = ForecastingConfig(
    models=["seasonal_naive", "ets", "lightgbm", "deepar", "hybrid", "lightgbm_uncensored_training"],
    n_folds=2,
    horizon=14,
    history_days=200,
    lgbm_rounds=30,
    ets_history_days=120,
    deepar_epochs=1,
    deepar_batches_per_epoch=3,
    deepar_hidden_size=8,
    deepar_samples=20,
    hybrid_windows=1,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("models") / "delta"
    resources = small_resources(root)
    assert materialize_range(resources, "2023-07-01", "2024-02-29").success
    run_config = dg.RunConfig(ops={"model_backtest": TINY})
    result = dg.materialize(
        __import__("demand_assets.definitions", fromlist=["ALL_ASSETS"]).ALL_ASSETS,
        resources=resources,
        selection=["model_backtest", "champion_model"],
        run_config=run_config,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return resources, result


def test_model_assets_materialize(trained):
    _, result = trained
    assert result.success
    keys = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert keys == {"model_backtest", "champion_model"}


def test_backtest_tables_cover_every_model_fold_and_regime(trained):
    resources, _ = trained
    metrics = resources["store"].read_all("backtest_metrics")
    assert set(metrics["MODEL"]) == set(TINY.models)
    assert set(metrics["FOLD"]) == {-1, 0, 1}
    assert set(metrics["REGIME"]) == {"all", "in_stock", "true"}
    forecasts = resources["store"].read_all("backtest_forecasts")
    per_model = forecasts.group_by("MODEL").agg(pl.len().alias("rows"))["rows"].unique().to_list()
    assert per_model == [2 * 14 * 24]  # folds x horizon x series, for every model


def test_mlflow_has_a_run_per_model_with_lineage_tags(trained):
    resources, _ = trained
    tracking = resources["mlflow_tracking"]
    client = tracking.client()
    runs = client.search_runs([tracking.experiment_id()], "tags.stage = 'backtest'")
    by_model = {r.data.tags.get("model"): r for r in runs if r.data.tags.get("model")}
    assert set(by_model) == set(TINY.models)
    run = by_model["lightgbm"]
    assert "in_stock_wape" in run.data.metrics and "true_coverage_p10_p90" in run.data.metrics
    assert run.data.tags["partition_range"].endswith("2024-02-29")
    assert run.data.tags["delta_version.training_dataset"].isdigit()
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "lightgbm_forecast_bands.png" in artifacts


def test_champion_is_registered_beats_the_baseline_and_loads_back(trained):
    resources, result = trained
    tracking = resources["mlflow_tracking"]
    client = tracking.client()
    versions = client.search_model_versions(f"name = '{tracking.registered_model}'")
    registered = {v.tags["model"] for v in versions}
    assert registered == {"seasonal_naive", "ets", "lightgbm", "deepar", "hybrid"}  # no uncensored reference
    champion = client.get_model_version_by_alias(tracking.registered_model, CHAMPION_ALIAS)
    winner = champion.tags["model"]
    overall = resources["store"].read_all("backtest_metrics").filter((pl.col("FOLD") == -1) & (pl.col("REGIME") == "in_stock"))
    wape = dict(zip(overall["MODEL"], overall["WAPE"]))
    assert winner != "seasonal_naive" and wape[winner] < wape["seasonal_naive"]
    assert wape[winner] == min(v for m, v in wape.items() if not m.endswith("_uncensored_training") and m != "seasonal_naive")
    # The champion's pyfunc answers a request built from the stored training dataset.
    store = resources["store"]
    dataset = store.read_window("training_dataset", dt.date(2024, 1, 1), dt.date(2024, 3, 1))
    origin = dt.date(2024, 2, 15)
    request = pl.concat([dataset.filter(pl.col("DATE") <= origin), future_frame(dataset, origin, 14)], how="diagonal_relaxed")
    out = pl.from_pandas(tracking.load(champion.version).predict(request.to_pandas()))
    assert out.height == 14 * 24 and (out["P10"] <= out["P90"]).all()
    decision = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "champion_model")
    assert winner in decision.materialization.metadata["decision"].value


def test_demand_forecast_as_of_each_day_from_the_champion(trained):
    from demand_assets.definitions import ALL_ASSETS
    from demand_assets.domains.forecasts import DemandForecastConfig

    resources, _ = trained
    result = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        selection=["demand_forecast"],
        instance=dg.DagsterInstance.ephemeral(),
        run_config=dg.RunConfig(ops={"demand_forecast": DemandForecastConfig(horizon=14, history_days=200)}),
        tags={"dagster/asset_partition_range_start": "2024-02-20", "dagster/asset_partition_range_end": "2024-02-29"},
        raise_on_error=False,
    )
    assert result.success
    forecast = resources["store"].read_all("demand_forecast")
    assert forecast.height == 10 * 24 * 14
    # The last origins reach past the stored data: their later days were planned, not stored.
    assert forecast["TARGET_DATE"].max() == dt.date(2024, 3, 14)
    champion = resources["mlflow_tracking"].champion_version()
    assert forecast["MODEL_VERSION"].unique().to_list() == [champion]
    evaluations = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert {e.check_name for e in evaluations} == {"demand_forecast_contract", "demand_forecast_horizon_complete"}
    assert all(e.passed for e in evaluations)


def test_forecast_error_cost_prices_every_backtested_model(trained):
    resources, _ = trained
    result = dg.materialize(
        __import__("demand_assets.definitions", fromlist=["ALL_ASSETS"]).ALL_ASSETS,
        resources=resources,
        selection=["forecast_error_cost"],
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert result.success
    table = resources["store"].read_all("forecast_error_cost")
    assert set(table["MODEL"]) == set(TINY.models)
    assert set(table["REGIME"]) == {"in_stock", "true_demand"}
    assert (table["COST_P50"] > 0).all()
    assert table["CRITICAL_RATIO"].to_list() == pytest.approx([0.35 / 0.45] * table.height)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["cheapest_model"].value in TINY.models
    assert "data:image/png;base64" in metadata["cost_by_model"].value


@pytest.fixture(scope="module")
def forecasted(trained):
    """The champion's forecast as of the last day, and response curves, on the trained store."""
    from demand_assets.domains.marketing import SpendResponseConfig

    resources, _ = trained
    assets = __import__("demand_assets.definitions", fromlist=["ALL_ASSETS"]).ALL_ASSETS
    assert dg.materialize(
        assets, resources=resources, selection=["demand_forecast"], partition_key="2024-02-29", instance=dg.DagsterInstance.ephemeral()
    ).success
    curves = SpendResponseConfig(fit_days=150, n_bootstrap=5, max_lags=[3, 7])
    assert dg.materialize(
        assets,
        resources=resources,
        selection=["spend_response_model"],
        run_config=dg.RunConfig(ops={"spend_response_model": curves}),
        instance=dg.DagsterInstance.ephemeral(),
    ).success
    return resources, assets


def test_instock_value_ranks_series_with_bands(forecasted):
    from demand_assets.domains.impact import InstockConfig

    resources, assets = forecasted
    result = dg.materialize(
        assets,
        resources=resources,
        selection=["instock_value"],
        run_config=dg.RunConfig(ops={"instock_value": InstockConfig(n_samples=200, top_n=5)}),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    table = resources["store"].read_all("instock_value").sort("RANK")
    assert table.height == 24 and table["RANK"].to_list() == list(range(1, 25))
    assert (table["EXTRA_MARGIN"].diff().drop_nulls() <= 1e-9).all()  # ranked by value
    assert ((table["EXTRA_UNITS_P10"] <= table["EXTRA_UNITS_P50"]) & (table["EXTRA_UNITS_P50"] <= table["EXTRA_UNITS_P90"])).all()
    assert table["EXTRA_UNITS"].sum() > 0
    assert (table["EXTRA_UNITS"] <= table["FORECAST_UNITS"] * 1.5 + 1).all()  # never more than the demand itself (plus band)
    assert "data:image/png;base64" in result.get_asset_materialization_events()[0].materialization.metadata["top_chart"].value


def test_spend_scenario_turns_a_plan_into_a_forecast_and_stock_limits_it(forecasted):
    from demand_assets.domains.planning import ScenarioConfig

    resources, assets = forecasted
    store = resources["store"]

    def run(config):
        result = dg.materialize(
            assets,
            resources=resources,
            selection=["spend_scenario"],
            run_config=dg.RunConfig(ops={"spend_scenario": config}),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        return result, (result.get_asset_materialization_events()[0].materialization.metadata if result.success else None)

    channel = store.read_all("response_curves")["CHANNEL"].unique().sort()[0]
    result, free = run(ScenarioConfig(name="double", channel_multipliers={channel: 2.0}))
    assert result.success
    daily = store.read_all("spend_scenario")
    assert daily["SCENARIO"].unique().to_list() == ["double"]
    assert (daily["SCENARIO_MEAN"] >= daily["BAU_MEAN"] - 1e-9).all()
    assert free["incremental_units"].value > 0
    assert free["credited_incremental_units"].value == pytest.approx(free["incremental_units"].value)
    _, tight = run(ScenarioConfig(name="double, 1 day of stock", channel_multipliers={channel: 2.0}, stock_cover_days=1.0))
    assert tight["credited_incremental_units"].value < 0.5 * tight["incremental_units"].value
    bad, _ = run(ScenarioConfig(channel_multipliers={"NO_SUCH_CHANNEL": 2.0}))
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    assert "rule 'known channels'" in failure.event_specific_data.error.message
    assert store.read_all("spend_scenario")["SCENARIO"].unique().to_list() == ["double, 1 day of stock"]  # kept


def test_budget_allocation_can_respect_stock(forecasted):
    from demand_assets.domains.planning import BudgetConfig

    resources, assets = forecasted
    results = {}
    for cover in (None, 0.5):
        config = BudgetConfig(planning_days=14, max_ratio=3.0, stock_cover_days=cover)
        result = dg.materialize(
            assets,
            resources=resources,
            selection=["budget_allocation"],
            run_config=dg.RunConfig(ops={"budget_allocation": config}),
            instance=dg.DagsterInstance.ephemeral(),
        )
        results[cover] = result.get_asset_materialization_events()[0].materialization.metadata
    assert results[0.5]["respects_stock"].value and not results[None]["respects_stock"].value
    # With half a day of stock nothing beyond the current media-driven units can be sold: no uplift.
    assert results[0.5]["expected_uplift"].value <= 1e-6
    assert results[None]["expected_uplift"].value > results[0.5]["expected_uplift"].value


def test_sku_models_register_champions_the_service_loads(trained):
    from fastapi.testclient import TestClient

    from demand_assets.domains.sku import SkuModelConfig
    from demand_assets.serving.app import create_app

    resources, _ = trained
    assets = __import__("demand_assets.definitions", fromlist=["ALL_ASSETS"]).ALL_ASSETS
    config = SkuModelConfig(history_days=200, weekly_epochs=3, daily_epochs=1, channels=8, input_days=28, horizon_days=14)
    result = dg.materialize(
        assets,
        resources=resources,
        selection=["sku_forecast_models"],
        run_config=dg.RunConfig(ops={"sku_forecast_models": config}),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("sku_forecast_models")
    assert materialization.metadata["threads"].value == resources["compute"].threads()  # trained under the step's thread budget
    metrics = resources["store"].read_all("sku_backtest_metrics")
    assert set(metrics["FREQUENCY"]) == {"weekly", "daily"} and set(metrics["MODEL"]) == {"tcn", "mean_of_last_4"}
    with TestClient(create_app(resources["store"], resources["mlflow_tracking"])) as client:  # lifespan loads the champions
        models = client.get("/health").json()["models"]
        assert set(models) == {"weekly", "daily"}
        history = resources["store"].read_window("product_demand", dt.date(2023, 10, 1), dt.date(2024, 3, 1)).filter(pl.col("PRODUCT") == "P00001")
        csv = history.select("DATE", "COUNTRY", "PRODUCT", pl.col("PRODUCT_DEMAND").alias("UNITS")).write_csv().encode()
        response = client.post(
            "/predict",
            params={"horizon": 7, "frequency": "daily", "model": "tcn"},
            files={"file": ("h.csv", csv, "text/csv")},
            data={"metadata": '{"products": ["P00001"], "country": "US"}'},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert f"{body['model']}@{body['model_version']}" == models["daily"]
        assert len(body["forecasts"]) == 7 and body["forecasts"][0]["period"] == "2024-03-01"
        # model=auto (the default) has the registered TCN among its candidates.
        auto = client.post(
            "/predict",
            params={"horizon": 7, "frequency": "daily"},
            files={"file": ("h.csv", csv, "text/csv")},
            data={"metadata": '{"products": ["P00001"], "country": "US"}'},
        )
        assert auto.status_code == 200, auto.text
        (choice,) = auto.json()["series"]
        assert "tcn" in choice["backtest_mae"] and choice["backtest_mae"]["tcn"] is not None


def test_the_champion_refits_with_the_settings_that_were_backtested(trained):
    """champion_model has no model config: it reads backtest_settings, so a refit can never use
    settings other than the ones that produced the backtest scores it was chosen on."""
    resources, result = trained
    record = resources["store"].read_all("backtest_settings").row(0, named=True)
    assert record["HISTORY_DAYS"] == TINY.history_days and record["N_FOLDS"] == TINY.n_folds
    champion = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "champion_model")
    refit = champion.materialization.metadata["refit_settings"].value
    assert refit["lgbm_rounds"] == TINY.lgbm_rounds == 30 and refit["deepar_epochs"] == TINY.deepar_epochs
    assert refit["models"] == list(TINY.models)
