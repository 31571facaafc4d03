"""Where local state lives, and the resources of the code location.

Two kinds of settings, each with one home:

- Deployment settings (which source, where its files are, where tables and MLflow live) come
  from the environment variables in `DEPLOYMENT_SETTINGS`. The code location passes the string
  ones (paths, URIs) as `dg.EnvVar`, so Dagster resolves them when a run launches and the UI
  shows the variable's name, not its value. EnvVar cannot feed a fixed-choice field, and its
  integer form is validated as 0 before it is resolved (which breaks a bound such as >= 1), so
  DEMAND_SOURCE and the integer settings are read and validated when the location loads.
- Model and business knobs (tolerances, thresholds, margins) are resource fields with one
  default each, a description and bounds: they show on the resource's page in the UI and are
  changed per run in the launchpad, or for a deployment where `build_resources` is called.

The command-line tools and the forecast service run outside Dagster; they ask for resolved
values (`resolve=True`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import dagster as dg

from resources.home import DEFAULT_DEMAND_HOME, demand_home

__all__ = ["DEFAULT_DEMAND_HOME", "DEPLOYMENT_SETTINGS", "EnvSetting", "build_resources", "demand_home", "resources_from_env"]


@dataclass(frozen=True)
class EnvSetting:
    """An environment variable that sets a field of a resource."""

    env: str
    resource: str
    field: str
    kind: Literal["str", "int", "choice"] = "str"


DEPLOYMENT_SETTINGS: tuple[EnvSetting, ...] = (
    EnvSetting("DEMAND_SOURCE", "source", "kind", "choice"),
    EnvSetting("DEMAND_CSV_DIR", "source", "csv_dir"),
    EnvSetting("DEMAND_TRANSACTIONS_FILE", "source", "transactions_file"),
    EnvSetting("DEMAND_TRANSACTIONS_MARKET", "source", "transactions_market"),
    EnvSetting("DEMAND_M5_DIR", "source", "m5_dir"),
    EnvSetting("DEMAND_TABLE_SPEC", "source", "table_spec"),
    EnvSetting("DEMAND_SEED", "source", "seed", "int"),
    EnvSetting("DEMAND_COUNTRIES", "source", "n_countries", "int"),
    EnvSetting("DEMAND_PRODUCTS", "source", "n_products", "int"),
    EnvSetting("DEMAND_CHANNELS", "source", "n_channels", "int"),
    EnvSetting("DEMAND_ORIGIN", "source", "origin"),
    EnvSetting("DEMAND_CHUNK_ROWS", "source", "chunk_rows", "int"),
    EnvSetting("DEMAND_REGIME_CHANGE", "source", "regime_change"),
    EnvSetting("DEMAND_DELTA_URI", "store", "root_uri"),
    EnvSetting("MLFLOW_TRACKING_URI", "mlflow_tracking", "tracking_uri"),
    EnvSetting("DEMAND_MLFLOW_UI_URL", "mlflow_tracking", "ui_url"),
    EnvSetting("DEMAND_UNIT_ECONOMICS_CSV", "economics", "overrides_csv"),
)


def _resource_classes() -> dict[str, type[dg.ConfigurableResource]]:
    from resources.contract_settings import ContractSettings
    from resources.data_source import DemandSourceResource
    from resources.delta_store import DeltaStore
    from resources.economics_settings import EconomicsSettings
    from resources.mlflow_tracking import MlflowTracking
    from resources.monitoring_settings import MonitoringSettings

    return {
        "source": DemandSourceResource,
        "store": DeltaStore,
        "mlflow_tracking": MlflowTracking,
        "contract_settings": ContractSettings,
        "economics": EconomicsSettings,
        "monitoring": MonitoringSettings,
    }


def _from_env(setting: EnvSetting, resolve: bool, classes: Mapping[str, type[dg.ConfigurableResource]]) -> Any:
    raw = os.environ.get(setting.env, "").strip()
    if setting.kind == "choice":
        allowed = get_args(classes[setting.resource].model_fields[setting.field].annotation)
        if raw not in allowed:
            raise ValueError(f"{setting.env}={raw!r} is not one of {', '.join(allowed)}")
        return raw
    if setting.kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{setting.env}={raw!r} must be a whole number") from None
    return raw if resolve else dg.EnvVar(setting.env)


def build_resources(*, resolve: bool = False, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of the code location: each field at its default, deployment settings from
    the environment variables that are set, and `overrides` (resource -> field -> value) for a
    deployment that wants other defaults for its knobs."""
    classes = _resource_classes()
    values: dict[str, dict[str, Any]] = {name: {} for name in classes}
    for setting in DEPLOYMENT_SETTINGS:
        if os.environ.get(setting.env, "").strip():
            values[setting.resource][setting.field] = _from_env(setting, resolve, classes)
    for name, fields in (overrides or {}).items():
        values[name].update(fields)
    return {name: cls(**values[name]) for name, cls in classes.items()}


def resources_from_env(*, resolve: bool = False) -> dict[str, dg.ConfigurableResource]:
    """`build_resources` without overrides: what `definitions.py`, the CLI and the service use."""
    return build_resources(resolve=resolve)
