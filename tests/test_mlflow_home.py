"""The embedded MLflow store is relocatable: a DEMAND_HOME copied elsewhere (a backup restored,
a folder moved) still opens its registered models, because artifacts are addressed relative to
DEMAND_HOME (resources/mlflow_artifacts.py), not by the absolute path of the day."""

from __future__ import annotations

import shutil

import pandas as pd
from mlflow.pyfunc import PythonModel

from resources import MlflowTracking


class Doubler(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input * 2


def test_a_moved_store_still_loads_its_champion(tmp_path, monkeypatch):
    first, moved = tmp_path / "first_home", tmp_path / "elsewhere" / "home"
    monkeypatch.setenv("DEMAND_HOME", str(first))
    tracking = MlflowTracking(registered_model="relocatable")
    with tracking.run("fit"):
        version = tracking.log_and_register(Doubler(), "model", {"kind": "test"})
    tracking.set_champion(version)
    source = tracking.client().get_model_version("relocatable", version).source
    assert str(first) not in tracking.client().get_experiment_by_name(tracking.experiment).artifact_location

    shutil.copytree(first, moved)
    shutil.rmtree(first)
    monkeypatch.setenv("DEMAND_HOME", str(moved))
    relocated = MlflowTracking(registered_model="relocatable")
    assert relocated.champion_version() == version
    model = relocated.load(version)
    assert model.predict(pd.DataFrame({"x": [1, 2]}))["x"].tolist() == [2, 4], source
    assert (moved / "mlflow" / "artifacts").is_dir()


def test_an_explicit_artifact_location_is_kept_as_given(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMAND_HOME", str(tmp_path / "home"))
    location = (tmp_path / "bucket").as_uri()
    tracking = MlflowTracking(artifact_location=location, experiment="explicit")
    tracking.experiment_id()
    assert tracking.client().get_experiment_by_name("explicit").artifact_location == location
