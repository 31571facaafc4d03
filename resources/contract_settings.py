"""Tolerances of the data contracts."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

__all__ = ["ContractSettings"]


class ContractSettings(dg.ConfigurableResource):
    reconcile_tolerance: float = Field(
        default=0.01,
        ge=0,
        description=("Relative tolerance when product sales are reconciled with the country total (BASELINE_DEMAND + sum of CHANNEL_RESPONSE)."),
    )
