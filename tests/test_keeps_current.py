"""The graph keeps itself current (issue 17, point 1), on a frozen clock with Dagster's own
schedule, automation and sensor evaluation, as the daemon would run them.

After the demo's steps for a window that ends "yesterday", each new day: the daily schedule asks
for that day of the raw domains; the automation then asks for training_dataset, demand_forecast,
forecast_accuracy and spend_roi for that day only (over a few ticks, as each waits for its
inputs' blocking checks); and once `retrain_after_days` (10 here, 28 by default) newer days exist
than the champion was trained on, the retraining sensor asks for a retraining run.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from demand_assets.definitions import ALL_ASSETS
from demand_assets.domains.automation import daily_raw_domains_job, daily_raw_domains_schedule, retraining_sensor
from demand_assets.domains.forecasts import DemandForecastConfig
from demand_assets.domains.marketing import SpendResponseConfig
from demand_assets.domains.models import ForecastingConfig
from resources import DemandSourceResource, MonitoringSettings
from tests.conftest import small_resources

pytestmark = pytest.mark.slow

START, END = dt.date(2024, 1, 1), dt.date(2024, 5, 31)  # the demo's window; END is "yesterday"
FOLLOWED = {"training_dataset", "demand_forecast", "forecast_accuracy", "spend_roi"}
# Drift never fires here (thresholds out of reach), so the age trigger is the one observed. The
# models are retrained after 10 newer days instead of the default 28: the same rule, a third of
# the simulated days.
MONITORING = MonitoringSettings(
    psi_threshold=1e6, target_psi=1e6, mix_psi=1e6, target_level_change=1e6, accuracy_ratio=1e6, accuracy_bias=1e6, retrain_after_days=10
)


def _run(resources, instance, selection, *, partitions: tuple[dt.date, dt.date] | None = None, config=None) -> None:
    tags = {"dagster/asset_partition_range_start": str(partitions[0]), "dagster/asset_partition_range_end": str(partitions[1])} if partitions else None
    result = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=instance,
        selection=selection,
        tags=tags,
        run_config=dg.RunConfig(ops=config) if config else None,
        raise_on_error=False,
    )
    assert result.success, f"{selection} {partitions} failed"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's steps (Makefile `demo`) on a small world ending END."""
    root = tmp_path_factory.mktemp("current") / "delta"
    resources = small_resources(root, source=DemandSourceResource(seed=5, n_countries=1, n_products=5, n_channels=2))
    resources["monitoring"] = MONITORING
    instance = dg.DagsterInstance.ephemeral()
    raw = ["country_demand", "channel_spend_response", "product_demand", "product_demand_truth", "channel_response_truth"]
    _run(resources, instance, [*raw, "training_dataset"], partitions=(START, END))
    _run(resources, instance, ["spend_response_model"], config={"spend_response_model": SpendResponseConfig(fit_days=120, n_bootstrap=3, max_lags=[7])})
    _run(resources, instance, ["spend_roi"], partitions=(END - dt.timedelta(days=1), END))
    models = ForecastingConfig(models=["seasonal_naive", "lightgbm"], n_folds=1, horizon=28, history_days=100, lgbm_rounds=20)
    _run(resources, instance, ["model_backtest", "champion_model"], config={"model_backtest": models})
    # The last 29 days of forecasts, so that the newest day's accuracy (and every later day's)
    # has the forecast made 28 days before it to score.
    _run(
        resources,
        instance,
        ["demand_forecast"],
        partitions=(END - dt.timedelta(days=28), END),
        config={"demand_forecast": DemandForecastConfig(history_days=120)},
    )
    _run(resources, instance, ["forecast_accuracy"], partitions=(END, END))
    return resources, instance


def _requested(result: dg.EvaluateAutomationConditionsResult) -> dict[str, set[str]]:
    out = {}
    for key in (dg.AssetKey(a) for a in sorted(FOLLOWED | {"model_backtest", "champion_model", "budget_allocation"})):
        partitions = result.get_requested_partitions(key)
        if partitions:
            out[key.to_user_string()] = set(partitions)
    return out


def test_each_new_day_flows_through_and_retraining_is_asked_once_the_data_is_retrain_after_days_newer(demo):
    resources, instance = demo
    defs = dg.Definitions(assets=ALL_ASSETS, resources=resources, jobs=[daily_raw_domains_job], schedules=[daily_raw_domains_schedule])
    schedule = defs.get_schedule_def(daily_raw_domains_schedule.name)
    # The automation sensor is turned on right after the demo: the store is current, nothing to do.
    first = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=dt.datetime.combine(END + dt.timedelta(days=1), dt.time(0, 30), tzinfo=dt.UTC)
    )
    assert _requested(first) == {}
    cursor, sensor_cursor = first.cursor, None
    for n in range(1, MONITORING.retrain_after_days + 1):
        day = END + dt.timedelta(days=n)
        now = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(1, 0), tzinfo=dt.UTC)  # 01:00 the next morning

        # The schedule asks for the day that just ended, of the raw domains.
        tick = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=now))
        assert [r.partition_key for r in tick.run_requests or []] == [str(day)]
        raw_job = defs.resolve_job_def(daily_raw_domains_job.name)
        assert raw_job.execute_in_process(instance=instance, partition_key=str(day)).success

        # The automation follows: the same day only, every followed asset once, nothing else.
        followed: set[str] = set()
        for _ in range(4):
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor, evaluation_time=now)
            cursor = result.cursor
            requested = _requested(result)
            if not requested:
                break
            assert all(p == {str(day)} for p in requested.values()), (day, requested)
            assert not followed & set(requested), f"requested twice on {day}: {requested}"
            followed |= set(requested)
            _run(resources, instance, sorted(requested), partitions=(day, day))
        assert followed == FOLLOWED, (day, followed)

        # The retraining sensor: quiet until retrain_after_days newer days exist.
        context = dg.build_sensor_context(instance=instance, cursor=sensor_cursor, resources={"monitoring": MONITORING})
        sensed = retraining_sensor(context)
        sensor_cursor = sensed.cursor
        if n < MONITORING.retrain_after_days:
            assert not sensed.run_requests, (day, sensed.run_requests)
    assert [r.tags["demand/retrain_trigger"] for r in sensed.run_requests] == ["age"]
    store = resources["store"]
    assert store.last_date("training_dataset") == day and store.last_date("demand_forecast") == day and store.last_date("spend_roi") == day
