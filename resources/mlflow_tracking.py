"""MLflow as a typed resource: tracking, model logging, the registry and its champion alias.

Embedded default: a SQLite tracking store and local artifacts under $DEMAND_HOME/mlflow. A
tracking server (MLFLOW_TRACKING_URI=http://...) or any database URI swaps in by configuration.
dagster-mlflow's `mlflow_tracking` is an op-era resource configured through run config; assets
take this typed resource instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg
import mlflow
from mlflow import MlflowClient
from mlflow.pyfunc import PyFuncModel, PythonModel
from pydantic import Field

from demand_assets.forecasting.registry import CHAMPION_ALIAS, DAILY_REGISTERED_MODEL
from resources.mlflow_artifacts import home_uri
from resources.postgres import mlflow_postgres_uri
from resources.settings import demand_home

__all__ = ["MlflowTracking"]

# What a logged forecaster needs to load elsewhere; listed so MLflow does not spend a minute
# inferring it from a subprocess on every log.
_PIP_REQUIREMENTS = ["demand-assets", "mlflow", "polars", "pandas", "lightgbm", "statsmodels", "gluonts[torch]", "torch==2.13.0"]


class MlflowTracking(dg.ConfigurableResource):
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking store: a database URI or a tracking server (http://...); default the database demand_mlflow on DEMAND_POSTGRES_URL when set, else SQLite under $DEMAND_HOME/mlflow",
    )
    artifact_location: str | None = Field(
        default=None, description="artifact root for a new experiment; default $DEMAND_HOME/mlflow/artifacts, addressed relative to DEMAND_HOME (demand-home:/)"
    )
    experiment: str = Field(default="demand_assets", description="MLflow experiment name")
    registered_model: str = Field(default=DAILY_REGISTERED_MODEL, description="registered model that holds every candidate as a version")
    ui_url: str = Field(default="http://127.0.0.1:5000", description="base URL of `mlflow ui`, for links in asset metadata")

    def for_model(self, registered_model: str) -> MlflowTracking:
        """The same tracking store, registering under `registered_model` (e.g. a per-SKU model)."""
        return MlflowTracking(
            tracking_uri=self.tracking_uri,
            artifact_location=self.artifact_location,
            experiment=self.experiment,
            registered_model=registered_model,
            ui_url=self.ui_url,
        )

    def _uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        # DEMAND_POSTGRES_URL moves the store to its server's database demand_mlflow; derived at
        # use, so the password is never part of the resource's config the UI shows.
        on_postgres = mlflow_postgres_uri()
        if on_postgres:
            return on_postgres
        folder = demand_home() / "mlflow"
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}"

    def client(self) -> MlflowClient:
        mlflow.set_tracking_uri(self._uri())
        mlflow.set_registry_uri(self._uri())
        return MlflowClient(self._uri(), self._uri())

    def experiment_id(self) -> str:
        client = self.client()
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        # The embedded default is relative to $DEMAND_HOME (resources/mlflow_artifacts.py), so a
        # moved store still opens its models.
        location = self.artifact_location or home_uri("mlflow/artifacts")
        return client.create_experiment(self.experiment, artifact_location=location)

    @contextlib.contextmanager
    def run(self, name: str, tags: dict[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
        experiment_id = self.experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags or {}) as active:
            yield active

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/experiments/{self.experiment_id()}/runs/{run_id}"

    def log_and_register(self, python_model: PythonModel, name: str, tags: dict[str, str]) -> str:
        """Log a pyfunc in the active run and register it as a new version; returns the version."""
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=python_model,
            registered_model_name=self.registered_model,
            pip_requirements=_PIP_REQUIREMENTS,
        )
        version = str(info.registered_model_version)
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(self.registered_model, version, key, value)
        return version

    def set_champion(self, version: str, alias: str = CHAMPION_ALIAS) -> None:
        self.client().set_registered_model_alias(self.registered_model, alias, version)

    def champion_version(self, alias: str = CHAMPION_ALIAS) -> str | None:
        try:
            return str(self.client().get_model_version_by_alias(self.registered_model, alias).version)
        except mlflow.exceptions.MlflowException:
            return None

    def version_tags(self, version: str) -> dict[str, str]:
        return dict(self.client().get_model_version(self.registered_model, version).tags)

    def load(self, version: str) -> PyFuncModel:
        self.client()
        return mlflow.pyfunc.load_model(f"models:/{self.registered_model}/{version}")
