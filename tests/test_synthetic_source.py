import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from demand_assets.sources import Domain
from demand_assets.sources.synthetic import SyntheticConfig, SyntheticDemandSource
from tests.conftest import SMALL, read_all

START, END = dt.date(2024, 3, 1), dt.date(2024, 3, 15)


@pytest.mark.parametrize("domain", sorted(SyntheticDemandSource(SyntheticConfig(**SMALL)).provides, key=lambda d: d.value))
def test_same_seed_same_data_across_instances(domain):
    a = read_all(SyntheticDemandSource(SyntheticConfig(**SMALL)), domain, START, END)
    b = read_all(SyntheticDemandSource(SyntheticConfig(**SMALL)), domain, START, END)
    assert_frame_equal(a, b)


def test_different_seed_different_data():
    a = read_all(SyntheticDemandSource(SyntheticConfig(**SMALL)), Domain.PRODUCT_DEMAND, START, END)
    b = read_all(SyntheticDemandSource(SyntheticConfig(**(SMALL | {"seed": 12}))), Domain.PRODUCT_DEMAND, START, END)
    assert not a.equals(b)


@pytest.mark.parametrize("domain", sorted(SyntheticDemandSource(SyntheticConfig(**SMALL)).provides, key=lambda d: d.value))
def test_range_equals_its_days_generated_in_reverse_order(small_source, domain):
    whole = read_all(small_source, domain, START, END)
    days = [START + dt.timedelta(days=i) for i in range((END - START).days)]
    # Fresh instance, days produced newest first: no hidden state carried between calls.
    fresh = SyntheticDemandSource(SyntheticConfig(**SMALL))
    one_by_one = pl.concat([read_all(fresh, domain, d, d + dt.timedelta(days=1)) for d in reversed(days)])
    keys = [c for c in ("DATE", "COUNTRY", "CHANNEL", "PRODUCT") if c in whole.columns]
    assert_frame_equal(whole.sort(keys), one_by_one.sort(keys))


def test_small_chunks_equal_one_chunk():
    tiny = SyntheticDemandSource(SyntheticConfig(**(SMALL | {"chunk_rows": 50})))  # ~2 days a chunk
    chunks = list(tiny.read(Domain.PRODUCT_DEMAND, START, END))
    assert len(chunks) > 3
    assert_frame_equal(pl.concat(chunks), read_all(SyntheticDemandSource(SyntheticConfig(**SMALL)), Domain.PRODUCT_DEMAND, START, END))


def test_censoring_relations_hold(small_source):
    a, b = dt.date(2023, 1, 1), dt.date(2024, 1, 1)
    obs = read_all(small_source, Domain.PRODUCT_DEMAND, a, b)
    truth = read_all(small_source, Domain.PRODUCT_DEMAND_TRUTH, a, b)
    both = obs.join(truth, on=["DATE", "COUNTRY", "PRODUCT"])
    # In stock: sales are demand. Out of stock: sales never exceed demand, and the gap is LOST_SALES.
    assert (both.filter(pl.col("IN_STOCK"))["PRODUCT_DEMAND"] == both.filter(pl.col("IN_STOCK"))["TRUE_DEMAND"]).all()
    assert (both["PRODUCT_DEMAND"] <= both["TRUE_DEMAND"]).all()
    assert (both["TRUE_DEMAND"] - both["PRODUCT_DEMAND"] == both["LOST_SALES"]).all()
    stockout_share = 1 - both["IN_STOCK"].mean()
    assert 0.01 < stockout_share < 0.10, stockout_share  # retail stockout rates: low single-digit percent
    assert both.filter(~pl.col("IN_STOCK"))["LOST_SALES"].sum() > 0


def test_stockouts_likelier_on_promotion_days(small_source):
    obs = read_all(small_source, Domain.PRODUCT_DEMAND, dt.date(2023, 1, 1), dt.date(2025, 1, 1))
    rates = obs.group_by("PROMO").agg((~pl.col("IN_STOCK")).mean().alias("rate")).sort("PROMO")["rate"].to_list()
    assert rates[1] > 1.5 * rates[0], rates


def test_promotions_cut_price_and_lift_share(small_source):
    obs = read_all(small_source, Domain.PRODUCT_DEMAND, dt.date(2023, 1, 1), dt.date(2025, 1, 1))
    truth = read_all(small_source, Domain.PRODUCT_DEMAND_TRUTH, dt.date(2023, 1, 1), dt.date(2025, 1, 1))
    both = obs.join(truth, on=["DATE", "COUNTRY", "PRODUCT"])
    per_series = both.group_by("COUNTRY", "PRODUCT", "PROMO").agg(pl.col("PRICE").mean(), pl.col("EXPECTED_DEMAND").mean())
    wide = per_series.pivot(on="PROMO", index=["COUNTRY", "PRODUCT"], values=["PRICE", "EXPECTED_DEMAND"]).drop_nulls()
    assert (wide["PRICE_true"] < wide["PRICE_false"]).all()
    assert (wide["EXPECTED_DEMAND_true"] > wide["EXPECTED_DEMAND_false"]).mean() > 0.8


def test_true_product_demand_adds_up_to_country_total(small_source):
    a, b = dt.date(2024, 1, 1), dt.date(2024, 4, 1)
    country = read_all(small_source, Domain.COUNTRY_DEMAND, a, b)
    channel = read_all(small_source, Domain.CHANNEL_SPEND_RESPONSE, a, b)
    truth = read_all(small_source, Domain.PRODUCT_DEMAND_TRUTH, a, b)
    total = country.join(channel.group_by("DATE", "COUNTRY").agg(pl.col("CHANNEL_RESPONSE").sum()), on=["DATE", "COUNTRY"])
    total = total.select("DATE", "COUNTRY", (pl.col("BASELINE_DEMAND") + pl.col("CHANNEL_RESPONSE")).alias("T"))
    sums = truth.group_by("DATE", "COUNTRY").agg(pl.col("TRUE_DEMAND").sum())
    joined = total.join(sums, on=["DATE", "COUNTRY"])
    np.testing.assert_allclose(joined["TRUE_DEMAND"].to_numpy(), joined["T"].to_numpy(), rtol=1e-9)


def test_channel_response_follows_true_adstock_and_hill(small_source):
    """TRUE_RESPONSE is reproducible from SPEND with the published true parameters, and the
    measured CHANNEL_RESPONSE scatters around it with mean one and the configured noise."""
    from demand_assets.marketing import adstock_geometric, hill_saturation

    a, b = dt.date(2024, 1, 1), dt.date(2024, 7, 1)
    warm = a - dt.timedelta(days=20)
    spend = read_all(small_source, Domain.CHANNEL_SPEND_RESPONSE, warm, b)
    truth = read_all(small_source, Domain.CHANNEL_RESPONSE_TRUTH, a, b)
    ratios = []
    for (country, channel), series in spend.group_by("COUNTRY", "CHANNEL"):
        true_rows = truth.filter((pl.col("COUNTRY") == country) & (pl.col("CHANNEL") == channel)).sort("DATE")
        params = true_rows.row(0, named=True)
        ad = adstock_geometric(series.sort("DATE")["SPEND"].to_numpy(), params["TRUE_DECAY"], params["TRUE_MAX_LAG"])
        expected = params["TRUE_RESPONSE_CAP"] * hill_saturation(ad, params["TRUE_HALF_SATURATION"], params["TRUE_HILL_SLOPE"])
        np.testing.assert_allclose(true_rows["TRUE_RESPONSE"].to_numpy(), expected[20:], rtol=1e-9)
        measured = series.sort("DATE")["CHANNEL_RESPONSE"].to_numpy()[20:]
        on = expected[20:] > 0
        ratios.append(measured[on] / expected[20:][on])
    ratio = np.concatenate(ratios)
    assert abs(ratio.mean() - 1.0) < 0.02
    assert abs(ratio.std() - small_source.config.response_noise) < 0.03


def test_response_measurement_noise_can_be_switched_off():
    exact = SyntheticDemandSource(SyntheticConfig(n_countries=1, n_products=5, n_channels=2, response_noise=0.0))
    a, b = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
    measured = read_all(exact, Domain.CHANNEL_SPEND_RESPONSE, a, b).sort("COUNTRY", "CHANNEL", "DATE")
    truth = read_all(exact, Domain.CHANNEL_RESPONSE_TRUTH, a, b).sort("COUNTRY", "CHANNEL", "DATE")
    np.testing.assert_allclose(measured["CHANNEL_RESPONSE"].to_numpy(), truth["TRUE_RESPONSE"].to_numpy(), rtol=1e-12)


def test_spend_scales_with_the_business():
    """Budgets follow demand, so revenue per unit of spend is realistic at any scale."""
    a, b = dt.date(2024, 1, 1), dt.date(2024, 3, 1)
    small = SyntheticDemandSource(SyntheticConfig(n_countries=1, n_products=20, n_channels=3))
    large = SyntheticDemandSource(SyntheticConfig(n_countries=1, n_products=200, n_channels=3))
    ratio = read_all(large, Domain.CHANNEL_SPEND_RESPONSE, a, b)["SPEND"].sum() / read_all(small, Domain.CHANNEL_SPEND_RESPONSE, a, b)["SPEND"].sum()
    assert 9.0 < ratio < 11.0


def test_macro_indicators_are_slow_and_autocorrelated(small_source):
    country = read_all(small_source, Domain.COUNTRY_DEMAND, dt.date(2023, 1, 1), dt.date(2025, 1, 1))
    for _, series in country.group_by("COUNTRY"):
        for column in ("ECONOMIC_INDEX", "UNEMPLOYMENT_RATE", "INFLATION_RATE"):
            x = series.sort("DATE")[column].to_numpy()
            lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
            assert lag1 > 0.99, (column, lag1)
            assert x.std() > 0


def test_weekly_and_yearly_seasonality_visible(small_source):
    country = read_all(small_source, Domain.COUNTRY_DEMAND, dt.date(2023, 1, 1), dt.date(2025, 1, 1))
    by_dow = country.group_by(pl.col("DATE").dt.weekday()).agg(pl.col("BASELINE_DEMAND").mean()).sort("DATE")
    assert by_dow["BASELINE_DEMAND"][5] > 1.1 * by_dow["BASELINE_DEMAND"][1]  # Saturday vs Tuesday
    dec = country.filter((pl.col("DATE").dt.month() == 12) & (pl.col("DATE").dt.day().is_between(10, 22)))["BASELINE_DEMAND"].mean()
    feb = country.filter(pl.col("DATE").dt.month() == 2)["BASELINE_DEMAND"].mean()
    assert dec > 1.15 * feb


def test_intermittent_slow_movers_and_fast_movers_coexist(small_source):
    obs = read_all(small_source, Domain.PRODUCT_DEMAND, dt.date(2023, 1, 1), dt.date(2024, 1, 1))
    zero_share = obs.group_by("COUNTRY", "PRODUCT").agg((pl.col("PRODUCT_DEMAND") == 0).mean().alias("z"))["z"]
    assert zero_share.max() > 0.5 and zero_share.min() < 0.05


def test_invalid_scale_is_rejected():
    with pytest.raises(ValueError, match="n_countries"):
        SyntheticConfig(n_countries=0)
    with pytest.raises(ValueError, match="n_channels"):
        SyntheticConfig(n_channels=99)


def test_a_tiny_world_reads_without_overflowing_the_chunk_dates():
    """Regression: rows per chunk / rows per day gave one country a chunk of 4,000,000 days, and
    adding it to the window's start overflowed the date type."""
    from demand_assets.sources.base import iter_date_chunks

    assert list(iter_date_chunks(dt.date(2024, 1, 1), dt.date(2024, 1, 3), 10**7)) == [(dt.date(2024, 1, 1), dt.date(2024, 1, 3))]
    source = SyntheticDemandSource(SyntheticConfig(seed=5, n_countries=1, n_products=5, n_channels=2))
    days = pl.concat(list(source.read(Domain.COUNTRY_DEMAND, dt.date(2024, 1, 1), dt.date(2024, 1, 3))))
    assert days["DATE"].n_unique() == 2
