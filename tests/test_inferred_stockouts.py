"""Inferred stockouts: implausible zero runs are flagged, natural gaps of slow movers are not."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from demand_assets.features.stockouts import MAX_STOCKOUT_DAYS, infer_stockouts
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


def test_a_300_day_zero_run_with_a_price_is_a_listing_gap_not_a_stockout():
    rng = np.random.default_rng(2)
    sales = np.maximum(rng.poisson(3, 700), 1)
    sales[200:500] = 0  # listed (M5 gives it a price) but sold nothing for 300 days
    out = infer_stockouts(_series(sales)).sort("DATE")
    gap = [200 <= i < 500 for i in range(700)]
    assert out["LISTING_GAP"].to_list() == gap
    assert not out["INFERRED_OUT"].any()
    assert out["RATE"][0] == pytest.approx(sales[sales > 0].mean())  # the gap's zeros are not demand either


def test_a_5_day_zero_run_of_a_fast_mover_is_still_a_stockout():
    rng = np.random.default_rng(3)
    sales = np.maximum(rng.poisson(12, 150), 1)
    sales[70:75] = 0
    out = infer_stockouts(_series(sales)).sort("DATE")
    assert out["INFERRED_OUT"].to_list() == [70 <= i < 75 for i in range(150)]
    assert not out["LISTING_GAP"].any()


def test_max_stockout_days_moves_the_line_between_stockout_and_listing_gap():
    rng = np.random.default_rng(4)
    sales = np.maximum(rng.poisson(5, 300), 1)
    sales[100:120] = 0  # 20 days
    sales[200:210] = 0  # 10 days
    by_cap = {cap: infer_stockouts(_series(sales), max_stockout_days=cap).sort("DATE") for cap in (5, 15, 28, None)}
    run20 = [100 <= i < 120 for i in range(300)]
    run10 = [200 <= i < 210 for i in range(300)]
    both = [a or b for a, b in zip(run20, run10)]
    assert by_cap[5]["LISTING_GAP"].to_list() == both and not by_cap[5]["INFERRED_OUT"].any()
    assert by_cap[15]["LISTING_GAP"].to_list() == run20 and by_cap[15]["INFERRED_OUT"].to_list() == run10
    for cap in (28, None):  # the default, 28 days, and no limit: both runs are stockouts
        assert by_cap[cap]["INFERRED_OUT"].to_list() == both and not by_cap[cap]["LISTING_GAP"].any()
    with pytest.raises(ValueError, match="max_stockout_days"):
        infer_stockouts(_series(sales), max_stockout_days=0)


def test_the_default_limit_is_28_days_and_applies_only_to_implausible_runs():
    assert MAX_STOCKOUT_DAYS == 28
    rng = np.random.default_rng(5)
    steady = np.maximum(rng.poisson(4, 200), 1)
    steady[50:78] = 0  # 28 days: still a stockout
    steady[120:149] = 0  # 29 days: a listing gap
    out = infer_stockouts(_series(steady)).sort("DATE")
    assert out["INFERRED_OUT"].to_list() == [50 <= i < 78 for i in range(200)]
    assert out["LISTING_GAP"].to_list() == [120 <= i < 149 for i in range(200)]
    # A slow mover's long natural gap is plausible demand: neither a stockout nor a listing gap.
    slow = rng.poisson(0.05, 400)
    slow_out = infer_stockouts(_series(slow, product="B"))
    assert slow_out["ZERO_RUN"].max() > MAX_STOCKOUT_DAYS
    assert not slow_out["INFERRED_OUT"].any() and not slow_out["LISTING_GAP"].any()


def test_m5_marks_a_listing_gap_listed_false_in_stock_true_and_training_leaves_it_out(tmp_path):
    from demand_assets.features import build_training_dataset
    from demand_assets.sources.m5 import M5Shape, M5Source, write_m5_files

    shape = M5Shape.small(items_per_department=1, days=400)
    write_m5_files(tmp_path, shape)
    sales = pl.read_csv(tmp_path / "sales_train_evaluation.csv")
    days = [f"d_{k + 1}" for k in range(shape.days)]
    rng = np.random.default_rng(6)
    steady = np.maximum(rng.poisson(5, shape.days), 1)
    steady[100:400] = 0  # priced every week, sold nothing for 300 days
    sales = sales.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(int(v)).otherwise(pl.col(d)).alias(d) for d, v in zip(days, steady))
    sales.write_csv(tmp_path / "sales_train_evaluation.csv")
    source = M5Source(tmp_path)
    end = shape.start + dt.timedelta(days=shape.days)
    frame = pl.concat(list(source.read(Domain.PRODUCT_DEMAND, shape.start, end)))
    first = sales.row(0, named=True)
    series = frame.filter((pl.col("COUNTRY") == first["store_id"]) & (pl.col("PRODUCT") == first["item_id"])).sort("DATE")
    assert series.height == shape.days  # still a row every day: no hole for the completeness check
    assert series["LISTED"].to_list() == [i < 100 for i in range(shape.days)]
    assert series["IN_STOCK"].all()  # a listing gap is not a stockout
    dataset = build_training_dataset(frame, None, None, source.catalog().products, shape.start, end)
    kept = dataset.filter((pl.col("COUNTRY") == first["store_id"]) & (pl.col("PRODUCT") == first["item_id"]))
    assert kept.height == 100 and "LISTED" not in dataset.columns
    assert dataset.height == frame["LISTED"].sum()


@pytest.mark.slow
def test_a_listing_gap_passes_the_contracts_and_stays_out_of_the_training_dataset(tmp_path):
    """Through the graph: product_demand keeps the gap's rows (LISTED false, complete series),
    training_dataset leaves them out and its lag-integrity check agrees (null lags over the gap)."""
    import dagster as dg

    from demand_assets.definitions import ALL_ASSETS
    from demand_assets.sources.m5 import M5Shape, write_m5_files
    from resources import DemandSourceResource
    from tests.conftest import small_resources

    shape = M5Shape.small(items_per_department=1, days=200)
    write_m5_files(tmp_path / "m5", shape)
    sales = pl.read_csv(tmp_path / "m5" / "sales_train_evaluation.csv")
    steady = np.maximum(np.random.default_rng(6).poisson(5, shape.days), 1)
    steady[60:140] = 0  # an interior 80-day gap
    sales = sales.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(int(v)).otherwise(pl.col(f"d_{k + 1}")).alias(f"d_{k + 1}") for k, v in enumerate(steady)
    )
    sales.write_csv(tmp_path / "m5" / "sales_train_evaluation.csv")
    resources = small_resources(tmp_path / "delta", source=DemandSourceResource(kind="m5", m5_dir=str(tmp_path / "m5")))
    end = shape.start + dt.timedelta(days=shape.days - 1)
    result = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        selection=dg.AssetSelection.assets("product_demand", "training_dataset"),
        tags={"dagster/asset_partition_range_start": str(shape.start), "dagster/asset_partition_range_end": str(end)},
        raise_on_error=False,
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    demand, dataset = resources["store"].read_all("product_demand"), resources["store"].read_all("training_dataset")
    assert (~demand["LISTED"]).sum() == 80 and demand["IN_STOCK"].all()
    assert dataset.height == demand.height - 80
