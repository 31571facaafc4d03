"""Every setting in one table, generated from the fields themselves: each resource's fields and
each asset's run config, with type, default, bounds, description and, for deployment settings,
the environment variable. `demand-settings-docs` writes it into docs/configuration.md and a
test checks the file against it, so the docs cannot drift from the code."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from resources.settings import DEPLOYMENT_SETTINGS, _resource_classes

__all__ = ["TABLES_END", "TABLES_START", "SettingRow", "asset_configs", "replace_settings_table", "setting_rows", "settings_markdown"]

START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
TABLES_START, TABLES_END = "<!-- tables:start -->", "<!-- tables:end -->"


class SettingRow(typing.NamedTuple):
    where: str  # "resource source" or "config of model_backtest"
    name: str
    type: str
    default: str
    bounds: str
    env: str
    description: str


def asset_configs() -> dict[str, type[BaseModel]]:
    """Asset name -> its run-config class."""
    from demand_assets.domains.forecasts import DemandForecastConfig
    from demand_assets.domains.impact import InstockConfig
    from demand_assets.domains.marketing import SpendResponseConfig
    from demand_assets.domains.models import ForecastingConfig
    from demand_assets.domains.next_event import NextEventConfig, PurchaseIntentConfig
    from demand_assets.domains.planning import BudgetConfig, ScenarioConfig
    from demand_assets.domains.sku import SkuModelConfig

    return {
        "model_backtest": ForecastingConfig,
        "demand_forecast": DemandForecastConfig,
        "spend_response_model": SpendResponseConfig,
        "budget_allocation": BudgetConfig,
        "spend_scenario": ScenarioConfig,
        "instock_value": InstockConfig,
        "sku_forecast_models": SkuModelConfig,
        "next_event_model": NextEventConfig,
        "purchase_intent": PurchaseIntentConfig,
    }


def _type_name(annotation) -> str:
    text = str(annotation) if typing.get_origin(annotation) else getattr(annotation, "__name__", str(annotation))
    return re.sub(r"typing\.|<class '([^']+)'>", lambda m: m.group(1) or "", text).replace("NoneType", "None")


def _bounds(field: FieldInfo) -> str:
    symbols = {annotated_types.Ge: ">=", annotated_types.Gt: ">", annotated_types.Le: "<=", annotated_types.Lt: "<", annotated_types.MinLen: "length >="}
    parts = []
    for item in field.metadata:
        for kind, symbol in symbols.items():
            if isinstance(item, kind):
                value = getattr(item, {">=": "ge", ">": "gt", "<=": "le", "<": "lt", "length >=": "min_length"}[symbol])
                parts.append(f"{symbol} {value}")
    return ", ".join(parts)


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    return "(empty)" if value is None else repr(value) if isinstance(value, str) else str(value)


def _rows(where: str, model: type[BaseModel], envs: dict[str, str]) -> Iterator[SettingRow]:
    for name, field in model.model_fields.items():
        if not field.description:
            raise ValueError(f"{model.__name__}.{name} has no description: every setting must explain itself in the UI")
        yield SettingRow(where, name, _type_name(field.annotation), _default(field), _bounds(field), envs.get(name, ""), field.description)


def setting_rows() -> list[SettingRow]:
    """Every resource field, then every asset config field."""
    rows: list[SettingRow] = []
    for resource, cls in _resource_classes().items():
        envs = {s.field: s.env for s in DEPLOYMENT_SETTINGS if s.resource == resource}
        rows += _rows(f"resource `{resource}`", cls, envs)
    for asset, cls in asset_configs().items():
        rows += _rows(f"config of `{asset}`", cls, {})
    return rows


def settings_markdown() -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = []
    current = None
    for row in setting_rows():
        if row.where != current:
            current = row.where
            lines += [
                "",
                f"**{row.where.capitalize() if row.where[0].islower() else row.where}**",
                "",
                "| setting | type | default | bounds | environment variable | what it does |",
                "|---|---|---|---|---|---|",
            ]
        env = f"`{row.env}`" if row.env else ""
        lines.append(f"| `{row.name}` | {cell(row.type)} | {cell(row.default)} | {cell(row.bounds)} | {env} | {cell(row.description)} |")
    return "\n".join(lines).strip() + "\n"


def replace_settings_table(document: str, table: str, start: str = START, end: str = END) -> str:
    """`document` with the text between the `start` and `end` markers replaced by `table`."""
    if start not in document or end not in document:
        raise ValueError(f"the document has no {start} ... {end} markers")
    head, rest = document.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{table}{end}{tail}"
