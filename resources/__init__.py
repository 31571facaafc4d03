"""Typed Dagster resources: where data comes from, where tables live, contract settings."""

from resources.contract_settings import ContractSettings
from resources.data_source import DemandSourceResource
from resources.delta_store import DeltaStore, MissingTableError, WriteSummary
from resources.economics_settings import EconomicsSettings
from resources.mlflow_tracking import MlflowTracking
from resources.monitoring_settings import MonitoringSettings
from resources.settings import DEPLOYMENT_SETTINGS, build_resources, demand_home, resources_from_env

__all__ = [
    "DEPLOYMENT_SETTINGS",
    "ContractSettings",
    "DeltaStore",
    "DemandSourceResource",
    "EconomicsSettings",
    "MissingTableError",
    "MlflowTracking",
    "MonitoringSettings",
    "WriteSummary",
    "build_resources",
    "demand_home",
    "resources_from_env",
]
