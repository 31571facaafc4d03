"""The deployment manifests (issue 18, point 3) name only what exists: Docker and Kubernetes do
not run on the project's machines, so what can be checked is checked here: the files parse, and
every command, module path, port and environment variable they name is real. The commands
themselves run as processes in tests/test_production_layout.py."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from demand_assets.cli import DEPLOY_COMMANDS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
HELM = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
DOCKERFILE = (ROOT / "deploy" / "Dockerfile.dagster").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Variables read by the programs the manifests start, not by this repository's code.
THIRD_PARTY = {
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",  # the postgres image
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",  # delta-rs and MLflow's S3 client
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PIP_NO_CACHE_DIR",
    "DAGSTER_HOME",  # Dagster
}


def _code_text() -> str:
    files = [*ROOT.glob("demand_assets/**/*.py"), *ROOT.glob("resources/*.py"), *ROOT.glob("deploy/*.yaml")]
    return "\n".join(p.read_text() for p in files if p.name != "compose.yaml")


def _named_variables() -> set[str]:
    names = set()
    for service in COMPOSE["services"].values():
        names |= set((service.get("environment") or {}).keys())
    for deployment in HELM["dagster-user-deployments"]["deployments"]:
        names |= {e["name"] for e in deployment["env"]}
    names |= set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", DOCKERFILE))
    names |= set(re.findall(r"--from-literal=([A-Z][A-Z0-9_]+)=", (ROOT / "deploy" / "helm" / "values.yaml").read_text()))
    return names


def test_every_environment_variable_the_manifests_set_is_read_by_the_code():
    code = _code_text()
    names = _named_variables()
    assert {"DEMAND_POSTGRES_URL", "DEMAND_HOME", "DEMAND_EXECUTOR", "DEMAND_DELTA_URI"} <= names
    unknown = sorted(n for n in names - THIRD_PARTY if f'"{n}"' not in code and f"env: {n}" not in code)
    assert not unknown, f"set by the manifests but read nowhere: {unknown}"


def test_compose_runs_the_dagster_image_as_demand_deploy_commands_on_consistent_ports():
    services = COMPOSE["services"]
    assert {"postgres", "init", "code-server", "webserver", "daemon", "mlflow", "serve"} <= set(services)
    for name, service in services.items():
        if service.get("image") == "demand-assets-dagster":
            assert service["command"][0] in DEPLOY_COMMANDS, name
            assert service["build"]["dockerfile"] == "deploy/Dockerfile.dagster"
    port = services["code-server"]["environment"]["DEMAND_CODE_SERVER_PORT"]
    assert port in services["code-server"]["healthcheck"]["test"]
    assert services["webserver"]["environment"]["DEMAND_CODE_SERVER_HOST"] == "code-server"
    assert services["code-server"]["environment"]["DEMAND_CODE_SERVER_HOST"] == "0.0.0.0"
    assert services["webserver"]["ports"] == ["3000:3000"] and "3000" in services["webserver"]["command"]
    assert services["mlflow"]["ports"] == ["5000:5000"] and "5000" in services["mlflow"]["command"]
    exposed = set(re.search(r"^EXPOSE (.+)$", DOCKERFILE, re.M).group(1).split())
    assert {port, "3000", "5000"} <= exposed
    # The forecast service's image and its port.
    assert services["serve"]["build"]["dockerfile"] == "Dockerfile"
    assert "EXPOSE 8000" in (ROOT / "Dockerfile").read_text() and services["serve"]["ports"] == ["8000:8000"]
    # Every service that needs the stores waits for init, which waits for a healthy Postgres.
    assert services["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("code-server", "mlflow", "serve"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"


def test_the_image_copies_what_exists_and_its_entrypoint_is_a_console_script():
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert re.search(r'^ENTRYPOINT \["demand-deploy"\]$', DOCKERFILE, re.M)
    assert PYPROJECT["project"]["scripts"]["demand-deploy"] == "demand_assets.cli:deploy"
    command = re.search(r'^CMD \["([a-z-]+)"\]$', DOCKERFILE, re.M).group(1)
    assert command in DEPLOY_COMMANDS
    extra = re.search(r"pip install -e '\.\[(\w+)\]'", DOCKERFILE).group(1)
    assert extra in PYPROJECT["project"]["optional-dependencies"]


def test_the_helm_values_point_at_this_code_location_and_its_kubernetes_executor():
    deployment = HELM["dagster-user-deployments"]["deployments"][0]
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("--module-name") + 1]
    assert module == PYPROJECT["tool"]["dagster"]["module_name"]
    assert args[args.index("--location-name") + 1] == PYPROJECT["tool"]["dagster"]["code_location_name"]
    assert HELM["runLauncher"]["type"] == "K8sRunLauncher"
    assert HELM["postgresql"]["postgresqlDatabase"] == "demand_dagster"
    assert HELM["dagsterDaemon"]["runRetries"]["enabled"] and HELM["dagsterDaemon"]["runMonitoring"]["enabled"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    # The code location, loaded with the deployment's environment, runs each step as a pod, at
    # most DEMAND_MAX_CONCURRENT at once.
    probe = (
        "from demand_assets.definitions import defs\n"
        "job = defs.resolve_implicit_global_asset_job_def()\n"
        "from resources.settings import executor_setting\n"
        "print(job.executor_def.name, *executor_setting())\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        env={**__import__("os").environ, "DEMAND_EXECUTOR": env["DEMAND_EXECUTOR"], "DEMAND_MAX_CONCURRENT": env["DEMAND_MAX_CONCURRENT"]},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split() == ["k8s", "k8s", env["DEMAND_MAX_CONCURRENT"]]


def test_the_production_instance_file_loads_as_dagster_config():
    from dagster._core.instance.config import dagster_instance_config

    config = yaml.safe_load((ROOT / "deploy" / "dagster-postgres.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DEMAND_DAGSTER_PG_URL"}
    assert config["run_retries"]["enabled"] and config["run_monitoring"]["enabled"]
    folder = ROOT / "deploy"
    import os
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as home:
        shutil.copyfile(folder / "dagster-postgres.yaml", Path(home) / "dagster.yaml")
        os.environ.setdefault("DEMAND_DAGSTER_PG_URL", "postgresql+psycopg2://u:p@127.0.0.1:1/demand_dagster")
        validated, _ = dagster_instance_config(home)
    assert validated["concurrency"]["pools"]["default_limit"] == 1


def test_heavy_steps_run_in_the_pools_the_production_page_names():
    import dagster as dg

    from demand_assets.definitions import defs

    def pool(asset: str) -> str | None:
        pools = defs.get_assets_def(dg.AssetKey(asset)).node_def.pools  # a graph-backed asset: its steps' pools
        assert len(pools) <= 1, pools
        return next(iter(pools), None)

    expected = {
        "raw_domain_writes": ["country_demand", "product_demand"],
        "model_training": ["model_backtest", "champion_model", "sku_forecast_models"],
        "curve_fits": ["spend_response_model"],
    }
    page = (ROOT / "docs" / "production.md").read_text()
    for name, assets in expected.items():
        assert f"`{name}`" in page
        assert {pool(a) for a in assets} == {name}
    assert pool("training_dataset") is None and pool("demand_forecast") is None
