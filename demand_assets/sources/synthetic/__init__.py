"""A generative model of retail demand with known ground truth (see `model.py`)."""

from demand_assets.sources.synthetic.config import CHANNEL_PROFILES, COUNTRY_CODES, REGIME_KINDS, RegimeChange, SyntheticConfig
from demand_assets.sources.synthetic.model import SyntheticDemandSource

__all__ = ["CHANNEL_PROFILES", "COUNTRY_CODES", "REGIME_KINDS", "RegimeChange", "SyntheticConfig", "SyntheticDemandSource"]
