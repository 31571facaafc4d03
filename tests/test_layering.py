"""The import arrows run one way: pure packages never import `dagster` or `resources/`.

Only the Dagster layer (`demand_assets.domains`, `demand_assets.definitions`), the command-line
entry points (`demand_assets.cli`) and the service (`demand_assets.serving`) wire pure code to
resources. The check imports every pure module in a fresh interpreter, one after another, and
names the first module after which a forbidden package appears in `sys.modules`.
"""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import demand_assets

ROOT = Path(__file__).resolve().parent.parent
WIRING = ("demand_assets.domains", "demand_assets.definitions", "demand_assets.cli", "demand_assets.serving")
FORBIDDEN = ("dagster", "resources")
# MLflow loads its artifact-repository plugins (entry points) when it is imported, ours among
# them: resources.mlflow_artifacts and the Dagster-free resources.home. That is MLflow's doing,
# not an import of the pure code; any other module of `resources` still counts.
PLUGIN = ("resources", "resources.home", "resources.mlflow_artifacts")


def pure_modules() -> list[str]:
    names = ["contracts", *(f"contracts.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "contracts")]))]
    for module in pkgutil.walk_packages(demand_assets.__path__, "demand_assets."):
        if not module.name.startswith(WIRING):
            names.append(module.name)
    return sorted(names)


_PROBE = """
import importlib, json, sys
forbidden, plugin = {forbidden!r}, set({plugin!r})
for name in {modules!r}:
    importlib.import_module(name)
    loaded = [m for m in sys.modules if m not in plugin]
    found = sorted(f for f in forbidden if f in loaded or any(m.startswith(f + ".") for m in loaded))
    if found:
        print(json.dumps({{"module": name, "imported": found}}))
        sys.exit(0)
print(json.dumps({{"module": None, "imported": []}}))
"""


def test_the_pure_package_list_covers_the_layers_it_should():
    modules = pure_modules()
    for expected in (
        "contracts.registry",
        "demand_assets.marketing.summary",
        "demand_assets.monitoring.promotion",
        "demand_assets.sources.csv_snapshot",
        "demand_assets.forecasting.registry",
    ):
        assert expected in modules
    assert not any(m.startswith(WIRING) for m in modules)


def test_pure_modules_import_neither_dagster_nor_resources():
    code = _PROBE.format(forbidden=FORBIDDEN, plugin=PLUGIN, modules=pure_modules())
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    verdict = json.loads(out.stdout.strip().splitlines()[-1])
    assert verdict["imported"] == [], f"importing {verdict['module']} pulled in {verdict['imported']}: pure code must not depend on them"


def test_the_service_starts_without_importing_an_asset_module():
    code = (
        "import sys, demand_assets.serving.app as app; "
        "assert callable(app.create_app_from_env); "
        "print(sorted(m for m in sys.modules if m.startswith('demand_assets.domains') or m == 'demand_assets.definitions'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"
