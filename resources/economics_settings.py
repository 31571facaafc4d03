"""Unit economics: what a unit short and a unit over cost, by default and per category or product."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from demand_assets.impact.forecast_cost import UnitEconomics

__all__ = ["EconomicsSettings"]


class EconomicsSettings(dg.ConfigurableResource):
    margin_rate: float = Field(default=0.35, gt=0, description="margin lost per unit of unmet demand, as a share of its price")
    holding_rate: float = Field(default=0.10, gt=0, description="holding, markdown and waste per unit stocked but unsold, as a share of its price")
    overrides_csv: str | None = Field(
        default=None,
        description="CSV with a PRODUCT or CATEGORY column and MARGIN_RATE and/or HOLDING_RATE; product rows win over category rows",
    )

    def economics(self) -> UnitEconomics:
        return UnitEconomics(margin_rate=self.margin_rate, holding_rate=self.holding_rate)

    def overrides(self) -> pl.DataFrame | None:
        if not self.overrides_csv:
            return None
        path = Path(self.overrides_csv).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"DEMAND_UNIT_ECONOMICS_CSV points at {path}, which does not exist")
        frame = pl.read_csv(path)
        if not ({"PRODUCT", "CATEGORY"} & set(frame.columns)) or not ({"MARGIN_RATE", "HOLDING_RATE"} & set(frame.columns)):
            raise ValueError(f"{path}: needs a PRODUCT or CATEGORY column and MARGIN_RATE and/or HOLDING_RATE, got {frame.columns}")
        return frame
