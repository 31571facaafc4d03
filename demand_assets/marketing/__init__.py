"""Marketing-response math: carry-over (adstock) and diminishing returns (saturation)."""

from demand_assets.marketing.response import adstock_geometric, adstock_weights, hill_saturation

__all__ = ["adstock_geometric", "adstock_weights", "hill_saturation"]
