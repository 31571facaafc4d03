"""The M5 file format as a source: mapping, inferred stockouts, bad files, and the graph on it
(a source without spend or macro data: those assets record that, and nothing fake is written)."""

import datetime as dt
import logging
from collections import Counter

import dagster as dg
import numpy as np
import polars as pl
import pytest

from demand_assets.definitions import ALL_ASSETS
from demand_assets.domains.models import ForecastingConfig
from demand_assets.domains.selections import selection
from demand_assets.sources import Domain
from demand_assets.sources.m5 import M5Shape, M5Source, write_m5_files
from resources import DemandSourceResource
from tests.conftest import materialize_range, small_resources

SHAPE = M5Shape.small(items_per_department=4, days=400)
START = SHAPE.start


@pytest.fixture(scope="module")
def m5_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("m5")
    write_m5_files(directory, SHAPE)
    return directory


def _read(source, start, end) -> pl.DataFrame:
    return pl.concat(list(source.read(Domain.PRODUCT_DEMAND, start, end)))


def test_generated_files_have_m5s_format(m5_dir):
    sales = pl.read_csv(m5_dir / "sales_train_evaluation.csv")
    assert sales.columns[:6] == ["id", "item_id", "dept_id", "cat_id", "store_id", "state_id"]
    assert sales.columns[6] == "d_1" and sales.columns[-1] == f"d_{SHAPE.days}"
    assert sales.height == 3 * 8  # stores x items
    assert sales["id"][0].endswith("_evaluation")
    calendar = pl.read_csv(m5_dir / "calendar.csv")
    assert {"date", "wm_yr_wk", "d", "event_name_1", "event_type_1", "snap_CA", "snap_TX"} <= set(calendar.columns)
    assert calendar.height == SHAPE.days + 28
    prices = pl.read_csv(m5_dir / "sell_prices.csv")
    assert prices.columns == ["store_id", "item_id", "wm_yr_wk", "sell_price"] and (prices["sell_price"] > 0).all()


def test_source_maps_stores_to_markets_items_to_products_with_hierarchy(m5_dir):
    source = M5Source(m5_dir)
    assert source.provides == frozenset({Domain.PRODUCT_DEMAND})
    catalog = source.catalog()
    assert catalog.countries == ("CA_1", "CA_2", "TX_1") and catalog.channels == ()
    hierarchy = catalog.hierarchy()
    assert hierarchy.height == 24
    row = hierarchy.filter((pl.col("COUNTRY") == "TX_1") & (pl.col("PRODUCT") == "HOBBIES_1_002")).row(0, named=True)
    assert (row["STATE"], row["STORE"], row["CATEGORY"], row["DEPARTMENT"], row["ITEM"]) == ("TX", "TX_1", "HOBBIES", "HOBBIES_1", "HOBBIES_1_002")


def test_rows_are_the_files_sales_with_the_weeks_price_and_the_states_snap(m5_dir):
    frame = _read(M5Source(m5_dir), START, START + dt.timedelta(days=SHAPE.days))
    sales = pl.read_csv(m5_dir / "sales_train_evaluation.csv")
    calendar = pl.read_csv(m5_dir / "calendar.csv", try_parse_dates=True)
    prices = pl.read_csv(m5_dir / "sell_prices.csv")
    long = sales.unpivot(index=["item_id", "store_id", "state_id"], on=[c for c in sales.columns if c.startswith("d_")], variable_name="d", value_name="UNITS")
    expected = (
        long.join(calendar.select("d", pl.col("date").cast(pl.Date), "wm_yr_wk", "snap_CA", "snap_TX"), on="d")
        .join(prices, on=["store_id", "item_id", "wm_yr_wk"], how="inner")  # listed days only
        .select(
            pl.col("date").alias("DATE"),
            pl.col("store_id").alias("COUNTRY"),
            pl.col("item_id").alias("PRODUCT"),
            "UNITS",
            "sell_price",
            pl.when(pl.col("state_id") == "CA").then(pl.col("snap_CA")).otherwise(pl.col("snap_TX")).cast(pl.Boolean).alias("EXPECTED_SNAP"),
        )
    )
    joined = expected.join(frame, on=["DATE", "COUNTRY", "PRODUCT"], how="full", coalesce=True)
    assert joined.height == frame.height == expected.height  # a row for every listed day, none else
    assert (joined["UNITS"] == joined["PRODUCT_DEMAND"]).all()
    assert np.allclose(joined["sell_price"].to_numpy(), joined["PRICE"].to_numpy())
    assert (joined["EXPECTED_SNAP"] == joined["SNAP"]).all()
    # Items listed part-way through have no rows before their first listed week.
    first = frame.group_by("COUNTRY", "PRODUCT").agg(pl.col("DATE").min())
    assert first["DATE"].max() > START
    christmas = frame.filter(pl.col("DATE") == dt.date(2023, 12, 25))
    assert christmas["IS_EVENT"].all() and (christmas["PRODUCT_DEMAND"] == 0).all()


def test_inferred_stockouts_find_the_generators_runs_and_alpha_none_turns_them_off(m5_dir):
    frame = _read(M5Source(m5_dir, stockout_alpha=0.001), START, START + dt.timedelta(days=SHAPE.days))
    truth = pl.read_csv(m5_dir / "stockouts_truth.csv")
    days = pl.read_csv(m5_dir / "calendar.csv", try_parse_dates=True).select("d", pl.col("date").cast(pl.Date))
    out = (
        truth.join(days, left_on="d_start", right_on="d")
        .with_columns(pl.date_ranges("date", pl.col("date") + pl.duration(days=pl.col("days") - 1)).alias("DATE"))
        .explode("DATE")
    )
    out = out.with_columns(
        pl.col("id").str.extract(r"^(.*)_([A-Z]{2}_\d+)_evaluation$", 1).alias("PRODUCT"),
        pl.col("id").str.extract(r"_([A-Z]{2}_\d+)_evaluation$", 1).alias("COUNTRY"),
    )
    scored = frame.join(out.select("DATE", "COUNTRY", "PRODUCT", pl.lit(True).alias("TRUE_OUT")), on=["DATE", "COUNTRY", "PRODUCT"], how="left").with_columns(
        pl.col("TRUE_OUT").fill_null(False)
    )
    flagged = ~scored["IN_STOCK"]
    precision = (flagged & scored["TRUE_OUT"]).sum() / max(flagged.sum(), 1)
    recall = (flagged & scored["TRUE_OUT"]).sum() / scored["TRUE_OUT"].sum()
    assert flagged.sum() > 0 and precision >= 0.5 and recall >= 0.2, (precision, recall)
    assert _read(M5Source(m5_dir, stockout_alpha=None), START, START + dt.timedelta(days=60))["IN_STOCK"].all()


def test_the_sales_file_streams_by_blocks_of_series_and_a_window_holds_only_its_days(m5_dir, monkeypatch, caplog):
    """Issue 19 point 5: a unit writing a date range holds its range, not the file. Blocks of 5
    series (10 blocks here) give the rows of one block; a window's rows are the whole read's rows
    in that window (stockouts still inferred on each series' whole history)."""
    from demand_assets.sources import m5

    whole = _read(M5Source(m5_dir), START, START + dt.timedelta(days=SHAPE.days)).sort("DATE", "COUNTRY", "PRODUCT")
    a = whole.filter(~pl.col("IN_STOCK") & (pl.col("DATE") > START + dt.timedelta(days=100)))["DATE"].min()
    b = a + dt.timedelta(days=28)
    one_block = m5._window(m5_dir, 0.001, start=a, end=b)
    assert one_block.sales.shape == (one_block.ids.height, 28)
    assert not one_block.in_stock.all()  # a stockout inferred from the series' whole history
    monkeypatch.setattr(m5, "_SERIES_BATCH", 5)
    with caplog.at_level(logging.INFO, logger="demand_assets.sources.m5"):
        blocked = _read(M5Source(m5_dir), START, START + dt.timedelta(days=SHAPE.days)).sort("DATE", "COUNTRY", "PRODUCT")
    assert blocked.equals(whole)
    assert f"{one_block.ids.height}/{one_block.ids.height} series read" in caplog.text
    window = _read(M5Source(m5_dir), a, b).sort("DATE", "COUNTRY", "PRODUCT")
    assert window.height > 0 and window.equals(whole.filter(pl.col("DATE").is_between(a, b, closed="left")))
    by_blocks = m5._window(m5_dir, 0.001, start=a, end=b)
    for name in ("sales", "in_stock", "gap"):
        assert np.array_equal(getattr(by_blocks, name), getattr(one_block, name)), name


def test_bad_m5_files_are_refused_naming_the_rule(tmp_path, m5_dir, monkeypatch):
    from demand_assets.sources import m5

    monkeypatch.setattr(m5, "_SERIES_BATCH", 5)  # the two bad cells in different blocks: both counted
    with pytest.raises(FileNotFoundError, match="calendar.csv"):
        M5Source(tmp_path)
    with pytest.raises(ValueError, match="DEMAND_M5_DIR"):
        DemandSourceResource(kind="m5").open()
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("calendar.csv", "sell_prices.csv"):
        (broken / name).write_bytes((m5_dir / name).read_bytes())
    sales = pl.read_csv(m5_dir / "sales_train_evaluation.csv")
    bad = pl.col("id").is_in([sales["id"][3], sales["id"][20]])
    sales.with_columns(pl.when(bad).then(-2).otherwise(pl.col("d_5")).alias("d_5")).write_csv(broken / "sales_train_evaluation.csv")
    with pytest.raises(ValueError, match=rf"rule 'sales >= 0' on column 'd_\*': 2 negative cell\(s\), e.g. .*{sales['id'][3]}.*d_5.*{sales['id'][20]}"):
        _read(M5Source(broken), START, START + dt.timedelta(days=7))
    lines = (broken / "sales_train_evaluation.csv").read_text().splitlines()
    (broken / "sales_train_evaluation.csv").write_text("\n".join([*lines[:-1], ",".join(lines[-1].split(",")[:20])]) + "\n")
    with pytest.raises(
        ValueError, match=rf"rule 'every day has a sales value' on column 'd_\*': 1 row\(s\) with empty cells, e.g. .*{sales['id'][-1]}.*'d_15'"
    ):
        _read(M5Source(broken), START, START + dt.timedelta(days=7))


@pytest.fixture(scope="module")
def m5_graph(tmp_path_factory, m5_dir):
    root = tmp_path_factory.mktemp("m5graph") / "delta"
    resources = small_resources(root, source=DemandSourceResource(kind="m5", m5_dir=str(m5_dir)))
    end = START + dt.timedelta(days=SHAPE.days - 1)
    data = materialize_range(resources, str(START), str(end))
    config = ForecastingConfig(models=["seasonal_naive", "lightgbm"], n_folds=2, horizon=14, history_days=300, lgbm_rounds=20)
    models = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        selection=["model_backtest", "spend_response_model", "budget_allocation"],
        run_config=dg.RunConfig(ops={"model_backtest": config}),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return resources, data, models


@pytest.mark.slow
def test_graph_runs_on_m5_and_records_the_domains_it_lacks(m5_graph):
    resources, data, models = m5_graph
    assert data.success and models.success
    store = resources["store"]
    by_asset = {
        e.asset_key.to_user_string(): e.materialization.metadata for e in [*data.get_asset_materialization_events(), *models.get_asset_materialization_events()]
    }
    for absent in ("country_demand", "channel_spend_response", "product_demand_truth", "channel_response_truth", "spend_response_model", "budget_allocation"):
        assert by_asset[absent]["provided_by_source"].value is False, absent
        assert "m5" in by_asset[absent]["note"].value
        assert not store.exists(absent)
    assert not store.exists("response_curves")
    dataset = store.read_all("training_dataset")
    assert {"SNAP", "IS_EVENT"} <= set(dataset.columns)
    assert not any(c.startswith(("SPEND_", "RESPONSE_")) or c in ("ECONOMIC_INDEX", "INFLATION_RATE") for c in dataset.columns)


@pytest.mark.slow
def test_backtest_on_m5_reports_wrmsse_per_model(m5_graph):
    resources, _, _ = m5_graph
    metrics = resources["store"].read_all("backtest_metrics")
    overall = metrics.filter((pl.col("FOLD") == -1) & (pl.col("REGIME") == "all"))
    scores = dict(overall.select("MODEL", "WRMSSE").iter_rows())
    assert set(scores) == {"seasonal_naive", "lightgbm"}
    assert all(0 < v < 5 for v in scores.values()), scores
    # Only the `all` regime is scored by WRMSSE (M5 scores every day).
    assert metrics.filter(pl.col("REGIME") != "all")["WRMSSE"].is_null().all()


def test_a_tab_separated_price_file_is_named_not_a_raw_polars_error(tmp_path, m5_dir):
    """Regression: a tab-separated sell_prices.csv gave polars' ColumnNotFoundError."""
    for name in ("calendar.csv", "sales_train_evaluation.csv"):
        (tmp_path / name).write_bytes((m5_dir / name).read_bytes())
    pl.read_csv(m5_dir / "sell_prices.csv").write_csv(tmp_path / "sell_prices.csv", separator="\t")
    with pytest.raises(ValueError, match=r"rule 'M5 file columns' on file sell_prices.csv: missing \['store_id'.*tab-separated, M5 files are comma-separated"):
        M5Source(tmp_path).catalog()
    with pytest.raises(ValueError, match=r"rule 'M5 file columns' on file sell_prices.csv"):
        _read(M5Source(tmp_path), START, START + dt.timedelta(days=7))


@pytest.mark.slow
def test_a_real_source_backfills_without_records_of_the_domains_it_lacks(tmp_path, m5_dir):
    """Issue 16 point 4: the demo's data step for M5 selects only what the source provides, so a
    backfill records one materialization per day for product_demand and training_dataset only."""
    source = DemandSourceResource(kind="m5", m5_dir=str(m5_dir))
    chosen = selection("data", source.open().provides)
    assert chosen == "key:product_demand or group:features"
    resources = small_resources(tmp_path / "delta", source=source)
    end = START + dt.timedelta(days=59)
    result = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        selection=dg.AssetSelection.from_string(chosen),
        tags={"dagster/asset_partition_range_start": str(START), "dagster/asset_partition_range_end": str(end)},
        raise_on_error=False,
    )
    assert result.success
    recorded = Counter(e.asset_key.to_user_string() for e in result.get_asset_materialization_events())
    assert recorded == {"product_demand": 60, "training_dataset": 60}
    assert resources["store"].read_all("training_dataset")["DATE"].n_unique() == 60
    assert selection("spend_roi", source.open().provides) == ""
    assert selection("next_event", source.open().provides) == ""  # no sessions in sales files
    assert selection("impact", source.open().provides) == "key:forecast_error_cost or key:instock_value"


def test_a_source_s_domains_are_published_together_or_not_at_all(tmp_path):
    """raw_domains is subsettable only to leave out what the source lacks: selecting one of the
    synthetic source's domains fails, naming the ones left out, and writes nothing."""
    resources = small_resources(tmp_path / "delta")
    result = materialize_range(resources, "2024-01-01", "2024-01-07", selection=["product_demand"])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message
    assert "left out country_demand, channel_spend_response" in failure
    assert not resources["store"].exists("product_demand")
