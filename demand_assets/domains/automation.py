"""What keeps the graph current: the daily schedule of the raw domains and the retraining sensor.

Downstream daily assets (training dataset, forecasts, forecast accuracy) carry the automation
condition DAILY_DOWNSTREAM (see partitions.py): they follow the raw domains through Dagster's
automation sensor, gated on the inputs' blocking contract checks.
"""

import datetime as dt

import dagster as dg

from demand_assets.domains.accuracy import ACCURACY_DRIFT
from demand_assets.domains.drift import DRIFT_CHECKS
from demand_assets.domains.models import champion_model, model_backtest
from demand_assets.domains.next_event import NEXT_EVENT_DRIFT, next_event_model
from demand_assets.monitoring.retraining import CheckSignal, RetrainingCursor, decide_retraining
from resources import MonitoringSettings
from resources.settings import daily_schedule_time

__all__ = [
    "DRIFT_CHECK_KEYS",
    "NEXT_EVENT_DRIFT_KEY",
    "daily_raw_domains_job",
    "daily_raw_domains_schedule",
    "retraining_sensor",
    "weekly_marketing_job",
    "weekly_marketing_schedule",
]

DRIFT_CHECK_KEYS = [
    *(dg.AssetCheckKey(dg.AssetKey("training_dataset"), name) for name in DRIFT_CHECKS),
    dg.AssetCheckKey(dg.AssetKey("forecast_accuracy"), ACCURACY_DRIFT),
]
# The next-event champion's drift check requests its own retraining (next_event_model).
NEXT_EVENT_DRIFT_KEY = dg.AssetCheckKey(dg.AssetKey("purchase_intent"), NEXT_EVENT_DRIFT)

daily_raw_domains_job = dg.define_asset_job(
    "daily_raw_domains",
    selection=dg.AssetSelection.groups("raw_domains", "ground_truth"),
    description="The newest day of every raw domain (and, for the synthetic source, its ground truth).",
)

# At 01:00 UTC (DEMAND_DAILY_SCHEDULE_TIME), the day that just ended. Stopped until turned on in
# the UI (Automation tab).
_HOUR, _MINUTE = daily_schedule_time()
daily_raw_domains_schedule = dg.build_schedule_from_partitioned_job(daily_raw_domains_job, hour_of_day=_HOUR, minute_of_hour=_MINUTE)

# Response curves move slowly and a refit costs a bootstrap: weekly, Monday 03:00 UTC (after the
# daily raw run), refit them and re-plan the budget on the refreshed curves. spend_roi follows the
# new curves through its automation condition.
weekly_marketing_job = dg.define_asset_job(
    "weekly_marketing",
    selection=dg.AssetSelection.assets("spend_response_model", "budget_allocation"),
    description="Refit the spend response curves on the newest year and re-plan the budget.",
)
weekly_marketing_schedule = dg.ScheduleDefinition(job=weekly_marketing_job, cron_schedule="0 3 * * 1", execution_timezone="UTC")


def _trained_until(instance: dg.DagsterInstance, key: dg.AssetKey = champion_model.key) -> dt.date | None:
    """The last day of the window the models were last trained on (the `trained_until` metadata
    of champion_model, or of next_event_model)."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("trained_until")
    return dt.date.fromisoformat(value.value) if value is not None else None


def _newest_day(instance: dg.DagsterInstance) -> dt.date | None:
    keys = instance.get_materialized_partitions(dg.AssetKey("training_dataset"))
    return dt.date.fromisoformat(max(keys)) if keys else None


def _signals(instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey]) -> list[CheckSignal]:
    summaries = instance.event_log_storage.get_asset_check_summary_records(keys)
    signals = []
    for key, summary in summaries.items():
        record = summary.last_completed_check_execution_record
        evaluation = record.evaluation if record is not None else None
        if evaluation is None:
            continue
        signals.append(CheckSignal(f"{key.asset_key.to_user_string()}:{key.name}", record.id, evaluation.passed, evaluation.description or ""))
    return signals


@dg.sensor(
    target=[model_backtest, champion_model, next_event_model],
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests a retraining run (model_backtest, then champion_model) when a drift check fails, "
    "or once DEMAND_RETRAIN_AFTER_DAYS newer days exist than the last training; one run per trigger and training generation. "
    "A failed next-event drift check (purchase_intent) requests a next_event_model run, once per next-event training.",
)
def retraining_sensor(context: dg.SensorEvaluationContext, monitoring: MonitoringSettings):
    # Only the instance's event log is read (no Delta, no MLflow): a tick takes milliseconds.
    cursor = RetrainingCursor.parse(context.cursor)
    request, demand_cursor = decide_retraining(
        _signals(context.instance, DRIFT_CHECK_KEYS),
        cursor,
        trained_until=_trained_until(context.instance),
        newest_day=_newest_day(context.instance),
        retrain_after_days=monitoring.retrain_after_days,
    )
    # The next-event model retrains on drift only (its own generation: its last training day).
    trained = _trained_until(context.instance, next_event_model.key)
    next_request, next_cursor = decide_retraining(
        _signals(context.instance, [NEXT_EVENT_DRIFT_KEY]),
        cursor.nested("next_event"),
        trained_until=trained,
        newest_day=trained,
        retrain_after_days=10**6,
    )
    demand_cursor.children["next_event"] = next_cursor
    runs = []
    if request is not None:
        context.log.info(f"requesting retraining ({request.trigger}): {request.reason}")
        runs.append(
            dg.RunRequest(
                run_key=request.run_key,
                asset_selection=[model_backtest.key, champion_model.key],
                tags={"demand/retrain_trigger": request.trigger, "demand/retrain_reason": request.reason[:200]},
            )
        )
    if next_request is not None and next_request.trigger == "drift":
        context.log.info(f"requesting next-event retraining: {next_request.reason}")
        runs.append(
            dg.RunRequest(
                run_key=f"next-event:{next_request.run_key}",
                asset_selection=[next_event_model.key],
                tags={"demand/retrain_trigger": "next_event_drift", "demand/retrain_reason": next_request.reason[:200]},
            )
        )
    if not runs:
        return dg.SensorResult(skip_reason="no drift check failed and the models are recent enough", cursor=demand_cursor.serialize())
    return dg.SensorResult(run_requests=runs, cursor=demand_cursor.serialize())
