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

__all__ = [
    "DAILY_SCHEDULE_TIME",
    "DEFAULT_DEMAND_HOME",
    "DEPLOYMENT_SETTINGS",
    "EnvSetting",
    "build_resources",
    "daily_schedule_time",
    "demand_home",
    "resources_from_env",
]


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
    EnvSetting("DEMAND_EVENTS_PATH", "source", "events_path"),
    EnvSetting("DEMAND_EVENTS_LEVEL", "source", "events_level", "choice"),
    EnvSetting("DEMAND_EVENTS_TIMEZONE", "source", "events_timezone"),
    EnvSetting("DEMAND_EVENTS_MARKET", "source", "events_market"),
    EnvSetting("DEMAND_SEED", "source", "seed", "int"),
    EnvSetting("DEMAND_COUNTRIES", "source", "n_countries", "int"),
    EnvSetting("DEMAND_PRODUCTS", "source", "n_products", "int"),
    EnvSetting("DEMAND_CHANNELS", "source", "n_channels", "int"),
    EnvSetting("DEMAND_ORIGIN", "source", "origin"),
    EnvSetting("DEMAND_CHUNK_ROWS", "source", "chunk_rows", "int"),
    EnvSetting("DEMAND_REGIME_CHANGE", "source", "regime_change"),
    EnvSetting("DEMAND_DELTA_URI", "store", "root_uri"),
    EnvSetting("MLFLOW_TRACKING_URI", "mlflow_tracking", "tracking_uri"),
    EnvSetting("DEMAND_MLFLOW_ARTIFACTS", "mlflow_tracking", "artifact_location"),
    EnvSetting("DEMAND_MLFLOW_UI_URL", "mlflow_tracking", "ui_url"),
    EnvSetting("DEMAND_UNIT_ECONOMICS_CSV", "economics", "overrides_csv"),
    EnvSetting("DEMAND_COMPUTE", "compute", "backend", "choice"),
    EnvSetting("DEMAND_DASK_ADDRESS", "compute", "dask_address"),
    EnvSetting("DEMAND_STEP_THREADS", "compute", "step_threads", "int"),
    EnvSetting("DEMAND_STEP_OUTPUTS_URI", "io_manager", "base_dir"),
)


# Environment variables read when the code location or a `demand-deploy` process starts, not
# resource fields (a schedule's time, the executor, where processes find each other).
LOAD_TIME_SETTINGS: dict[str, str] = {
    "DEMAND_PARTITION_START": "the first daily partition (demand_assets/domains/partitions.py)",
    "DEMAND_DAILY_SCHEDULE_TIME": "HH:MM UTC of the daily schedule (default 01:00)",
    "DEMAND_EXECUTOR": "multiprocess, in_process or k8s; unset: Dagster's default",
    "DEMAND_MAX_CONCURRENT": "steps at once per run for DEMAND_EXECUTOR (default 4)",
    "DEMAND_STEP_START": "forkserver (default) or spawn: how DEMAND_EXECUTOR=multiprocess starts a step's process",
    "DEMAND_TRAINING_SLOTS": "training steps (backtest units, refits) at once across all runs: the model_training pool's limit, set by `demand-deploy pools` (default 1); each training step uses cores / this many threads unless DEMAND_STEP_THREADS says",
    "DEMAND_POSTGRES_URL": "the PostgreSQL server of the Dagster instance and MLflow (resources/postgres.py)",
    "DEMAND_DAGSTER_PG_URL": "the instance's database URL, derived from DEMAND_POSTGRES_URL by demand-deploy",
    "DEMAND_CODE_SERVER_HOST": "where the code server listens / is found (default 127.0.0.1)",
    "DEMAND_CODE_SERVER_PORT": "its port (default 4000)",
}


def _resource_classes() -> dict[str, type[dg.ConfigurableResource] | type[dg.ConfigurableIOManagerFactory]]:
    from resources.compute import ComputeResource
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
        "compute": ComputeResource,
        # What one step hands the next inside a graph-backed asset (the backtest's and the
        # refit's plan and units): pickles under DEMAND_STEP_OUTPUTS_URI (default: the instance's
        # storage folder). On Kubernetes, where each step is a pod, a URI all pods share.
        "io_manager": dg.FilesystemIOManager,
    }


def _from_env(setting: EnvSetting, resolve: bool, classes: Mapping[str, type[dg.ConfigurableResource] | type[dg.ConfigurableIOManagerFactory]]) -> Any:
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


def build_resources(*, resolve: bool = False, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
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


def resources_from_env(*, resolve: bool = False) -> dict[str, Any]:
    """`build_resources` without overrides: what `definitions.py`, the CLI and the service use."""
    return build_resources(resolve=resolve)


DAILY_SCHEDULE_TIME = "DEMAND_DAILY_SCHEDULE_TIME"


def daily_schedule_time() -> tuple[int, int]:
    """(hour, minute), UTC, at which the daily schedule loads the day that just ended: HH:MM from
    DEMAND_DAILY_SCHEDULE_TIME, default 01:00. Read when the code location loads, since a schedule
    is not a resource."""
    raw = os.environ.get(DAILY_SCHEDULE_TIME, "").strip() or "01:00"
    hour, _, minute = raw.partition(":")
    if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
        raise ValueError(f"{DAILY_SCHEDULE_TIME}={raw!r} is not a time of day HH:MM (UTC), e.g. 01:00")
    return int(hour), int(minute)


EXECUTORS = ("multiprocess", "in_process", "k8s")


def executor_setting() -> tuple[str, int] | None:
    """(executor, max concurrent steps) from DEMAND_EXECUTOR and DEMAND_MAX_CONCURRENT, or None
    for Dagster's default (steps in parallel processes, as many as cores). `k8s` runs each step
    in its own Kubernetes pod (dagster-k8s's k8s_job_executor; the production image installs it)."""
    kind = os.environ.get("DEMAND_EXECUTOR", "").strip()
    if not kind:
        return None
    if kind not in EXECUTORS:
        raise ValueError(f"DEMAND_EXECUTOR={kind!r} is not one of {', '.join(EXECUTORS)}")
    raw = os.environ.get("DEMAND_MAX_CONCURRENT", "").strip() or "4"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"DEMAND_MAX_CONCURRENT={raw!r} must be a whole number >= 1")
    return kind, int(raw)


def step_start_method() -> str:
    """DEMAND_STEP_START: how the multiprocess executor starts a step's process. `forkserver`
    (the default) forks it from a server process that has imported the code location once;
    `spawn` starts a fresh interpreter that imports it again (Dagster's own default)."""
    raw = os.environ.get("DEMAND_STEP_START", "").strip() or "forkserver"
    if raw not in ("forkserver", "spawn"):
        raise ValueError(f"DEMAND_STEP_START={raw!r} is not one of forkserver, spawn")
    return raw


def training_slots() -> int:
    """DEMAND_TRAINING_SLOTS: the model_training pool's limit (default 1), which `demand-deploy
    pools` (run by `demand-deploy init` and `make demo`) sets on the instance."""
    raw = os.environ.get("DEMAND_TRAINING_SLOTS", "").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"DEMAND_TRAINING_SLOTS={raw!r} must be a whole number >= 1")
    return int(raw)
