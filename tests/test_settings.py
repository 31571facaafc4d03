"""Settings: deployment settings reach the resources from the environment (as dg.EnvVar inside
Dagster, resolved for the CLI and the service); knobs keep their one default."""

import dagster as dg
import pytest

from resources import DemandSourceResource, EconomicsSettings, build_resources, resources_from_env


def test_deployment_settings_are_env_vars_resolved_at_launch(monkeypatch, tmp_path):
    monkeypatch.setenv("DEMAND_SOURCE", "csv")
    monkeypatch.setenv("DEMAND_CSV_DIR", str(tmp_path))
    monkeypatch.setenv("DEMAND_PRODUCTS", "7")
    lazy = resources_from_env()
    assert lazy["source"].kind == "csv"  # a fixed choice: validated when the location loads
    assert isinstance(lazy["source"].csv_dir, dg.EnvVar)  # resolved by Dagster when a run launches
    resolved = resources_from_env(resolve=True)
    assert resolved["source"].csv_dir == str(tmp_path) and resolved["source"].n_products == 7

    @dg.asset
    def probe(source: DemandSourceResource) -> None:
        assert source.csv_dir == str(tmp_path) and source.n_products == 7

    assert dg.materialize([probe], resources={"source": lazy["source"]}).success


def test_a_wrong_deployment_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("DEMAND_SOURCE", "excel")
    with pytest.raises(ValueError, match="DEMAND_SOURCE='excel' is not one of synthetic, csv, transactions, m5"):
        resources_from_env()
    monkeypatch.setenv("DEMAND_SOURCE", "synthetic")
    monkeypatch.setenv("DEMAND_SEED", "seven")
    with pytest.raises(ValueError, match="DEMAND_SEED='seven' must be a whole number"):
        resources_from_env()


def test_knobs_have_one_default_and_no_environment_variable(monkeypatch):
    monkeypatch.setenv("DEMAND_MARGIN_RATE", "0.9")  # the variable of earlier versions: ignored now
    economics = resources_from_env(resolve=True)["economics"]
    assert economics.margin_rate == EconomicsSettings.model_fields["margin_rate"].default == 0.35
    overridden = build_resources(resolve=True, overrides={"economics": {"margin_rate": 0.5}})["economics"]
    assert overridden.margin_rate == 0.5


def test_the_multiprocess_executor_forks_steps_from_a_preloaded_server_unless_told_to_spawn(monkeypatch):
    import importlib

    import demand_assets.definitions as definitions

    monkeypatch.setenv("DEMAND_EXECUTOR", "multiprocess")
    monkeypatch.setenv("DEMAND_MAX_CONCURRENT", "3")
    monkeypatch.delenv("DEMAND_STEP_START", raising=False)
    config = definitions._executor().config_schema.resolve_config({}).value["config"]  # type: ignore[union-attr]
    assert config["max_concurrent"] == 3
    assert config["start_method"] == {"forkserver": {"preload_modules": ["demand_assets.definitions"]}}
    importlib.import_module(config["start_method"]["forkserver"]["preload_modules"][0])  # a module that exists
    monkeypatch.setenv("DEMAND_STEP_START", "spawn")
    assert definitions._executor().config_schema.resolve_config({}).value["config"]["start_method"] == {"spawn": {}}  # type: ignore[union-attr]
    monkeypatch.setenv("DEMAND_STEP_START", "fork")
    with pytest.raises(ValueError, match="DEMAND_STEP_START='fork' is not one of forkserver, spawn"):
        definitions._executor()
