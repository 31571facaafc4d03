"""Inferred stockouts: implausible zero runs are flagged, natural gaps of slow movers are not."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from demand_assets.features.stockouts import infer_stockouts
from demand_assets.sources import Domain
from demand_assets.sources.synthetic import SyntheticConfig, SyntheticDemandSource
from tests.conftest import read_all


def _series(values, product="A") -> pl.DataFrame:
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(len(values))]
    return pl.DataFrame({"DATE": days, "COUNTRY": "US", "PRODUCT": product, "PRODUCT_DEMAND": [int(v) for v in values]})


def test_a_long_zero_run_of_a_steady_seller_is_flagged_and_nothing_else():
    rng = np.random.default_rng(0)
    sales = np.maximum(rng.poisson(6, 120), 1)  # never zero on its own
    sales[50:56] = 0
    out = infer_stockouts(_series(sales)).sort("DATE")
    assert out["INFERRED_OUT"].to_list() == [50 <= i < 56 for i in range(120)]
    assert out["RATE"][0] == pytest.approx(sales[sales > 0].mean())  # the flagged zeros are not demand


def test_natural_gaps_of_a_slow_mover_are_kept():
    rng = np.random.default_rng(1)
    sales = rng.poisson(0.3, 200)
    out = infer_stockouts(_series(sales))
    assert out["ZERO_RUN"].max() >= 5  # long gaps exist ...
    assert not out["INFERRED_OUT"].any()  # ... and are plausible for this item


def test_smaller_alpha_flags_a_subset():
    source = SyntheticDemandSource(SyntheticConfig(seed=4, n_countries=2, n_products=30, n_channels=2))
    daily = read_all(source, Domain.PRODUCT_DEMAND, dt.date(2024, 1, 1), dt.date(2024, 7, 1))
    loose = infer_stockouts(daily, alpha=0.01).sort("COUNTRY", "PRODUCT", "DATE")["INFERRED_OUT"]
    strict = infer_stockouts(daily, alpha=0.0001).sort("COUNTRY", "PRODUCT", "DATE")["INFERRED_OUT"]
    assert (strict & ~loose).sum() == 0 and strict.sum() < loose.sum()


def test_precision_and_recall_against_the_true_flags():
    source = SyntheticDemandSource(SyntheticConfig(seed=4, n_countries=2, n_products=30, n_channels=2))
    daily = read_all(source, Domain.PRODUCT_DEMAND, dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    out = infer_stockouts(daily)
    tp = (out["INFERRED_OUT"] & ~out["IN_STOCK"]).sum()
    precision = tp / out["INFERRED_OUT"].sum()
    recall = tp / (~out["IN_STOCK"]).sum()
    assert precision > 0.4 and recall > 0.15, (precision, recall)


def test_alpha_must_be_a_probability():
    with pytest.raises(ValueError, match="alpha"):
        infer_stockouts(_series([1, 2, 3]), alpha=1.5)
