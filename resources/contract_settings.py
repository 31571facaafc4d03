"""Tolerances of the data contracts."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field

__all__ = ["ContractSettings"]


class ContractSettings(dg.ConfigurableResource):
    reconcile_tolerance: float = Field(
        default=0.01,
        ge=0,
        description=("Relative tolerance when product sales are reconciled with the country total (BASELINE_DEMAND + sum of CHANNEL_RESPONSE)."),
    )
    upper_bounds: dict[str, float] = Field(
        default={},
        description=(
            "Column -> the largest plausible value per row, overriding the defaults in contracts/registry.py "
            "(PLAUSIBLE_UPPER_BOUNDS: SPEND, CHANNEL_RESPONSE, BASELINE_DEMAND 1e10, PRICE 1e7); larger values break the rule at_most_<bound>."
        ),
    )
    new_categories: Literal["reject", "admit"] = Field(
        default="reject",
        description=(
            "A country, channel or product in a snapshot that is neither in the source's declared catalogue nor already in the store: "
            "'reject' refuses the run naming it (rule known_<column>); 'admit' stores it. Reported as new_categories either way."
        ),
    )
