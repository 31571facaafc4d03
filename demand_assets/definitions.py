"""The demand_assets code location: every asset, check and resource in one Definitions."""

from __future__ import annotations

import dagster as dg

from demand_assets.domains.accuracy import forecast_accuracy
from demand_assets.domains.automation import (
    daily_raw_domains_job,
    daily_raw_domains_schedule,
    retraining_sensor,
    weekly_marketing_job,
    weekly_marketing_schedule,
)
from demand_assets.domains.forecasts import demand_forecast
from demand_assets.domains.impact import forecast_error_cost, instock_value
from demand_assets.domains.marketing import spend_response_model, spend_roi
from demand_assets.domains.models import champion_model, model_backtest
from demand_assets.domains.next_event import next_event_model, purchase_intent
from demand_assets.domains.planning import budget_allocation, spend_scenario
from demand_assets.domains.raw import channel_response_truth, product_demand_truth, raw_domains
from demand_assets.domains.sku import sku_forecast_models
from demand_assets.domains.training import training_dataset
from resources import resources_from_env
from resources.settings import executor_setting, step_start_method

RAW_DOMAIN_ASSETS = [raw_domains]  # country_demand, channel_spend_response, product_demand, product_engagement: checked together, committed together
GROUND_TRUTH_ASSETS = [product_demand_truth, channel_response_truth]
FEATURE_ASSETS = [training_dataset]
MODEL_ASSETS = [model_backtest, champion_model, sku_forecast_models]
FORECAST_ASSETS = [demand_forecast]
MONITORING_ASSETS = [forecast_accuracy]
MARKETING_ASSETS = [spend_response_model, spend_roi, budget_allocation, spend_scenario]
IMPACT_ASSETS = [forecast_error_cost, instock_value]
NEXT_EVENT_ASSETS = [next_event_model, purchase_intent]  # sessions of an event log (DEMAND_SOURCE=events)
DATA_ASSETS = [*RAW_DOMAIN_ASSETS, *GROUND_TRUTH_ASSETS, *FEATURE_ASSETS]
ALL_ASSETS = [*DATA_ASSETS, *MODEL_ASSETS, *FORECAST_ASSETS, *MONITORING_ASSETS, *MARKETING_ASSETS, *IMPACT_ASSETS, *NEXT_EVENT_ASSETS]


def _executor() -> dg.ExecutorDefinition | None:
    """DEMAND_EXECUTOR: the same assets run their steps in one process, in local processes, or in
    one Kubernetes pod each (production; see docs/production.md). Unset: Dagster's default."""
    setting = executor_setting()
    if setting is None:
        return None
    kind, max_concurrent = setting
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        # Step processes forked from a server that has already imported the code location: a
        # spawned one re-imports it (about 5 s of CPU per step; docs/scaling.md).
        start = {"forkserver": {"preload_modules": ["demand_assets.definitions"]}} if step_start_method() == "forkserver" else {"spawn": {}}
        return dg.multiprocess_executor.configured({"max_concurrent": max_concurrent, "start_method": start})
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured({"max_concurrent": max_concurrent})


defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[daily_raw_domains_job, weekly_marketing_job],
    schedules=[daily_raw_domains_schedule, weekly_marketing_schedule],
    sensors=[retraining_sensor],
    resources=resources_from_env(),
    executor=_executor(),
)
