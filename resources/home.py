"""$DEMAND_HOME: where the embedded state lives. Free of Dagster and MLflow, so the MLflow
artifact plugin (resources/mlflow_artifacts.py) can use it while MLflow initialises."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_DEMAND_HOME", "demand_home"]

DEFAULT_DEMAND_HOME = ".demand_home"


def demand_home() -> Path:
    """$DEMAND_HOME (default ./.demand_home), absolute: the embedded Delta tables, MLflow store
    and Dagster instance live under it."""
    return Path(os.environ.get("DEMAND_HOME", DEFAULT_DEMAND_HOME)).expanduser().resolve()
