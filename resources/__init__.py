"""Typed Dagster resources: where data comes from, where tables live, where per-series work runs, settings.

The names are imported on first use (PEP 562), so that importing one light module of this
package, such as the MLflow artifact plugin MLflow loads while it initialises
(`resources.mlflow_artifacts`), does not import Dagster and MLflow's client half-way.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resources.compute import ComputeResource
    from resources.contract_settings import ContractSettings
    from resources.data_source import DemandSourceResource
    from resources.delta_store import DeltaStore, MissingTableError, WriteSummary
    from resources.economics_settings import EconomicsSettings
    from resources.mlflow_tracking import MlflowTracking
    from resources.monitoring_settings import MonitoringSettings
    from resources.settings import DEPLOYMENT_SETTINGS, build_resources, demand_home, resources_from_env

_WHERE = {
    "ComputeResource": "compute",
    "ContractSettings": "contract_settings",
    "DemandSourceResource": "data_source",
    "DeltaStore": "delta_store",
    "MissingTableError": "delta_store",
    "WriteSummary": "delta_store",
    "EconomicsSettings": "economics_settings",
    "MlflowTracking": "mlflow_tracking",
    "MonitoringSettings": "monitoring_settings",
    "DEPLOYMENT_SETTINGS": "settings",
    "build_resources": "settings",
    "demand_home": "settings",
    "resources_from_env": "settings",
}

__all__ = [
    "DEPLOYMENT_SETTINGS",
    "ComputeResource",
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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'resources' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"resources.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
