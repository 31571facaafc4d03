"""Nothing stale in the docs: every name they show in backticks exists in the code, every make
target and console script they name exists, links between pages resolve, the settings table is
the one generated from the fields, and the README stays a front page."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from contracts import Table
from demand_assets.definitions import defs
from demand_assets.domains.settings_catalog import END, START, replace_settings_table, settings_markdown
from resources.settings import DEPLOYMENT_SETTINGS, LOAD_TIME_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE_FILES = [
    p
    for p in ROOT.rglob("*")
    if p.is_file()
    and (p.suffix in {".py", ".yaml", ".toml", ".json"} or p.name in {"Makefile", "Dockerfile"})
    and not any(part.startswith(".") or part in {"tests", "docs", "build"} for part in p.relative_to(ROOT).parts)
]
CODE = "\n".join(p.read_text(errors="replace") for p in CODE_FILES)
# Names the docs may show that live outside this repository's code: other tools' commands,
# file formats, Dagster and MLflow concepts.
EXTERNAL = re.compile(r"^(dg|dagster|mlflow|uvicorn|pip|python|docker|git|curl|pytest)\b|^\.|^[a-z]+://|\.(csv|parquet|png|gz)$")


def _inline_code(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # fenced blocks are examples
    return re.findall(r"`([^`\n]+)`", text)


def _identifiers(snippet: str) -> list[str]:
    """The names a code span asserts exist: identifiers, dotted paths, env vars, file paths."""
    if EXTERNAL.search(snippet) or " " in snippet.strip() and not snippet.startswith(("make ", "demand-")):
        return []
    token = snippet.strip().rstrip("/").split("=")[0].split("(")[0]
    return [token] if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./:-]*", token) else []


def test_every_backticked_name_in_the_docs_exists_in_the_code():
    missing = []
    for page in PAGES:
        for snippet in _inline_code(page):
            for name in _identifiers(snippet):
                if (ROOT / name).exists() or name.split(".")[-1] in CODE or name in CODE or name.replace("-", "_") in CODE:
                    continue
                missing.append(f"{page.relative_to(ROOT)}: `{name}`")
    assert not missing, "names the docs show that the code does not have:\n" + "\n".join(sorted(set(missing)))


def test_assets_tables_settings_and_env_vars_named_in_the_docs_are_real():
    """Stronger than existing somewhere: a name shaped like an asset, a table or a DEMAND_ env
    var must be one."""
    assets = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    tables = {t.value for t in Table}
    envs = {s.env for s in DEPLOYMENT_SETTINGS} | set(LOAD_TIME_SETTINGS) | {"DEMAND_HOME", "DAGSTER_HOME"}
    wrong = []
    for page in PAGES:
        text = page.read_text()
        for name in set(re.findall(r"`(DEMAND_[A-Z0-9_]+)`", text)):
            if name not in envs:
                wrong.append(f"{page.name}: environment variable `{name}` is not read by the code")
        for name in set(re.findall(r"`([a-z]+(?:_[a-z0-9]+)+)`", text)):
            if name.endswith(
                (
                    "_demand",
                    "_response",
                    "_model",
                    "_models",
                    "_forecast",
                    "_forecasts",
                    "_metrics",
                    "_value",
                    "_cost",
                    "_dataset",
                    "_truth",
                    "_roi",
                    "_allocation",
                    "_scenario",
                )
            ):
                if name not in assets | tables and name not in CODE:
                    wrong.append(f"{page.name}: `{name}` is neither an asset nor a table")
    assert not wrong, "\n".join(sorted(wrong))


def test_make_targets_and_console_scripts_named_in_the_docs_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, flags=re.M))
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    wrong = []
    for page in PAGES:
        text = page.read_text()
        for target in set(re.findall(r"`make ([a-z][a-z0-9-]*)", text)):
            if target not in targets:
                wrong.append(f"{page.name}: `make {target}` is not a Makefile target")
        for script in set(re.findall(r"`(demand-[a-z0-9-]+)", text)):
            if script not in scripts:
                wrong.append(f"{page.name}: `{script}` is not a console script")
    assert not wrong, "\n".join(sorted(wrong))


def test_links_between_pages_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "\n".join(broken)


def test_the_settings_table_is_generated_from_the_fields():
    document = (ROOT / "docs" / "configuration.md").read_text()
    assert START in document and END in document
    assert replace_settings_table(document, settings_markdown()) == document, "docs/configuration.md is stale: run demand-settings-docs"
    for field in ("reconcile_tolerance", "margin_rate", "psi_threshold", "lgbm_rounds", "planning_days"):
        assert f"| `{field}` |" in document


def test_the_data_dictionary_lists_every_registered_table():
    from contracts.registry import registry_markdown
    from demand_assets.domains.settings_catalog import TABLES_END, TABLES_START

    document = (ROOT / "docs" / "contracts.md").read_text()
    assert replace_settings_table(document, registry_markdown(), TABLES_START, TABLES_END) == document, "docs/contracts.md is stale: run demand-settings-docs"
    for table in Table:
        assert f"| `{table.value}` |" in document


def test_every_setting_has_a_description_and_deployment_settings_name_their_variable():
    from demand_assets.domains.settings_catalog import setting_rows

    rows = setting_rows()
    assert all(row.description for row in rows)
    assert {row.env for row in rows if row.env} == {s.env for s in DEPLOYMENT_SETTINGS}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_commission_seed_references(page):
    assert not re.search(r"\bseed[ -]00\d", page.read_text(), flags=re.I)


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert 120 <= len(lines) <= 220, len(lines)
    quick_start = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^make \w+", quick_start, flags=re.M) == ["make demo", "make test"]


def test_every_load_time_setting_is_read_somewhere():
    """LOAD_TIME_SETTINGS (what the docs may name besides the resource fields' variables) lists
    only variables some code or instance file actually reads."""
    settings = (ROOT / "resources" / "settings.py").read_text()
    start = settings.index("LOAD_TIME_SETTINGS: dict[str, str] = {")
    settings = settings[:start] + settings[settings.index("}\n", start) :]
    files = [p for p in [*ROOT.glob("demand_assets/**/*.py"), *ROOT.glob("resources/*.py"), *ROOT.glob("deploy/*.yaml")] if p.name != "settings.py"]
    code = settings + "\n".join(p.read_text() for p in files)
    unread = [name for name in LOAD_TIME_SETTINGS if f'"{name}"' not in code and f"env: {name}" not in code]
    assert not unread
