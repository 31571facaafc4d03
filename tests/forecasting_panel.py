"""A small synthetic panel with its truth, built once per test session."""

import datetime as dt
import functools

import polars as pl

from demand_assets.features import build_training_dataset
from demand_assets.sources import Domain
from demand_assets.sources.synthetic import SyntheticConfig, SyntheticDemandSource

PANEL_START, PANEL_END = dt.date(2023, 1, 1), dt.date(2024, 3, 1)


@functools.lru_cache(maxsize=4)
def small_panel(**overrides) -> tuple[pl.DataFrame, pl.DataFrame]:
    cfg = {"seed": 11, "n_countries": 2, "n_products": 8, "n_channels": 3} | overrides
    src = SyntheticDemandSource(SyntheticConfig(**cfg))

    def read(domain):
        return pl.concat(list(src.read(domain, PANEL_START, PANEL_END)))

    dataset = build_training_dataset(
        read(Domain.PRODUCT_DEMAND),
        read(Domain.COUNTRY_DEMAND),
        read(Domain.CHANNEL_SPEND_RESPONSE),
        src.catalog().products,
        PANEL_START,
        PANEL_END,
    )
    return dataset, read(Domain.PRODUCT_DEMAND_TRUTH)
