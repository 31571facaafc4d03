"""Injected regime changes: nothing moves before the break, the intended thing moves after it."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from demand_assets.sources import Domain
from demand_assets.sources.synthetic import RegimeChange, SyntheticConfig, SyntheticDemandSource
from tests.conftest import SMALL, read_all

START, BREAK, END = dt.date(2024, 3, 1), dt.date(2024, 3, 11), dt.date(2024, 3, 21)
KEYS = {
    Domain.COUNTRY_DEMAND: ["DATE", "COUNTRY"],
    Domain.CHANNEL_SPEND_RESPONSE: ["DATE", "COUNTRY", "CHANNEL"],
    Domain.PRODUCT_DEMAND_TRUTH: ["DATE", "COUNTRY", "PRODUCT"],
}


def _pair(change: RegimeChange, domain: Domain) -> tuple[pl.DataFrame, pl.DataFrame]:
    base = read_all(SyntheticDemandSource(SyntheticConfig(**SMALL)), domain, START, END).sort(KEYS[domain])
    shifted = read_all(SyntheticDemandSource(SyntheticConfig(**SMALL, regime_change=change)), domain, START, END).sort(KEYS[domain])
    return base, shifted


def _before(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("DATE") < BREAK)


def _after(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("DATE") >= BREAK)


@pytest.mark.parametrize("kind", ["macro_shock", "channel_response", "elasticity", "product_launch"])
def test_nothing_changes_before_the_break(kind):
    change = RegimeChange(kind, BREAK, 0.3)
    # A product launched later was never on sale before: the product split differs from the
    # no-launch world from day one, so for a launch only the country and channel domains match.
    for domain in [d for d in KEYS if not (kind == "product_launch" and d == Domain.PRODUCT_DEMAND_TRUTH)]:
        base, shifted = _pair(change, domain)
        assert_frame_equal(_before(base), _before(shifted))


def test_macro_shock_drops_the_economy_and_organic_demand():
    base, shifted = _pair(RegimeChange("macro_shock", BREAK, 0.3), Domain.COUNTRY_DEMAND)
    ratio = (_after(shifted)["ECONOMIC_INDEX"] / _after(base)["ECONOMIC_INDEX"]).to_numpy()
    np.testing.assert_allclose(ratio, 0.7)
    np.testing.assert_allclose((_after(shifted)["UNEMPLOYMENT_RATE"] - _after(base)["UNEMPLOYMENT_RATE"]).to_numpy(), 3.0)
    demand_ratio = _after(shifted)["BASELINE_DEMAND"].sum() / _after(base)["BASELINE_DEMAND"].sum()
    assert 0.6 < demand_ratio < 0.8


def test_channel_response_change_scales_only_that_channel():
    base, shifted = _pair(RegimeChange("channel_response", BREAK, 0.5, "SOCIAL"), Domain.CHANNEL_SPEND_RESPONSE)
    b, s = _after(base), _after(shifted)
    social = (b["CHANNEL"] == "SOCIAL").to_numpy()
    np.testing.assert_allclose(s["CHANNEL_RESPONSE"].to_numpy()[social], 1.5 * b["CHANNEL_RESPONSE"].to_numpy()[social])
    np.testing.assert_allclose(s["CHANNEL_RESPONSE"].to_numpy()[~social], b["CHANNEL_RESPONSE"].to_numpy()[~social])
    assert_frame_equal(b.select("SPEND"), s.select("SPEND"))  # spend is a plan, not a response


def test_channel_response_truth_reports_the_new_cap():
    change = RegimeChange("channel_response", BREAK, 0.5, "SOCIAL")
    keys = ["DATE", "COUNTRY", "CHANNEL"]
    base = read_all(SyntheticDemandSource(SyntheticConfig(**SMALL)), Domain.CHANNEL_RESPONSE_TRUTH, START, END).sort(keys)
    shifted = read_all(SyntheticDemandSource(SyntheticConfig(**SMALL, regime_change=change)), Domain.CHANNEL_RESPONSE_TRUTH, START, END).sort(keys)
    ratio = (shifted["TRUE_RESPONSE_CAP"] / base["TRUE_RESPONSE_CAP"]).to_numpy()
    expected = np.where((base["CHANNEL"] == "SOCIAL").to_numpy() & (base["DATE"] >= BREAK).to_numpy(), 1.5, 1.0)
    np.testing.assert_allclose(ratio, expected)


def test_elasticity_shift_moves_demand_towards_promoted_products():
    base, shifted = _pair(RegimeChange("elasticity", BREAK, 1.0), Domain.PRODUCT_DEMAND_TRUTH)
    promo = read_all(SyntheticDemandSource(SyntheticConfig(**SMALL)), Domain.PRODUCT_DEMAND, START, END).select(*KEYS[Domain.PRODUCT_DEMAND_TRUTH], "PROMO")
    joined = _after(base).join(_after(shifted), on=KEYS[Domain.PRODUCT_DEMAND_TRUTH], suffix="_S").join(promo, on=KEYS[Domain.PRODUCT_DEMAND_TRUTH])
    promoted = joined.filter(pl.col("PROMO"))
    assert promoted.height > 0
    # Doubling the elasticity makes a price cut pull harder: promoted products' expected share rises.
    assert (promoted["EXPECTED_DEMAND_S"] > promoted["EXPECTED_DEMAND"]).mean() > 0.9


def test_product_launch_sells_nothing_before_and_something_after():
    change = RegimeChange("product_launch", BREAK, 0.2)
    shifted = read_all(SyntheticDemandSource(SyntheticConfig(**SMALL, regime_change=change)), Domain.PRODUCT_DEMAND_TRUTH, dt.date(2024, 2, 1), END)
    products = sorted(shifted["PRODUCT"].unique().to_list())
    launched = products[-max(1, round(0.2 * len(products))) :]
    new = shifted.filter(pl.col("PRODUCT").is_in(launched))
    assert new.filter(pl.col("DATE") < BREAK)["TRUE_DEMAND"].sum() == 0
    base = read_all(SyntheticDemandSource(SyntheticConfig(**SMALL)), Domain.PRODUCT_DEMAND_TRUTH, dt.date(2024, 2, 1), END)
    totals = [f.group_by("DATE", "COUNTRY").agg(pl.col("TRUE_DEMAND").sum()).sort("DATE", "COUNTRY") for f in (base, shifted)]
    assert_frame_equal(*totals)  # the launch reshuffles products, the country totals are untouched
    assert new.filter(pl.col("DATE") >= BREAK)["TRUE_DEMAND"].sum() > 0


def test_regime_change_text_form_and_bad_values():
    assert RegimeChange.parse("channel_response@2024-10-01:-0.5:TV") == RegimeChange("channel_response", dt.date(2024, 10, 1), -0.5, "TV")
    assert RegimeChange.parse("macro_shock@2024-10-01") == RegimeChange("macro_shock", dt.date(2024, 10, 1), 0.3)
    for bad in ("recession@2024-10-01:0.3", "macro_shock@yesterday", "macro_shock@2024-10-01:1.5"):
        with pytest.raises(ValueError, match="regime change|macro shock"):
            RegimeChange.parse(bad)
    with pytest.raises(ValueError, match="not among this world's channels"):
        SyntheticConfig(**SMALL, regime_change=RegimeChange("channel_response", BREAK, 0.5, "OUT_OF_HOME"))
