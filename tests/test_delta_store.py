import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from resources import DeltaStore, MissingTableError


def _frame(start: dt.date, days: int, value: int) -> pl.DataFrame:
    dates = pl.date_range(start, start + dt.timedelta(days=days - 1), eager=True)
    return pl.DataFrame({"DATE": dates, "COUNTRY": "US", "V": [value] * days})


@pytest.fixture
def store(tmp_path):
    return DeltaStore(root_uri=str(tmp_path / "delta"))


def test_replace_window_is_idempotent_and_only_touches_its_window(store):
    jan = dt.date(2024, 1, 1)
    store.replace_window("country_demand", [_frame(jan, 10, 1)], jan, jan + dt.timedelta(days=10))
    mid = dt.date(2024, 1, 4)
    for _ in range(2):  # the same window twice: replaced, never duplicated
        store.replace_window("country_demand", [_frame(mid, 3, 2)], mid, mid + dt.timedelta(days=3))
    table = store.read_window("country_demand", jan, jan + dt.timedelta(days=10))
    assert table.height == 10
    assert table["V"].to_list() == [1, 1, 1, 2, 2, 2, 1, 1, 1, 1]
    assert store.version("country_demand") == 2


def test_a_failure_mid_stream_leaves_the_last_good_version(store):
    jan = dt.date(2024, 1, 1)
    store.replace_window("country_demand", [_frame(jan, 10, 1)], jan, jan + dt.timedelta(days=10))
    before = store.read_window("country_demand", jan, jan + dt.timedelta(days=10))

    def chunks():
        yield _frame(jan, 5, 9)
        raise RuntimeError("source died after the first chunk")

    with pytest.raises(RuntimeError, match="source died"):
        store.replace_window("country_demand", chunks(), jan, jan + dt.timedelta(days=10))
    assert store.version("country_demand") == 0
    assert_frame_equal(store.read_window("country_demand", jan, jan + dt.timedelta(days=10)), before)


def test_reading_a_missing_table_says_so(store):
    with pytest.raises(KeyError, match="not a registered table"):
        store.read_window("nope", dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    with pytest.raises(MissingTableError, match="not been materialized"):
        store.read_window("product_demand", dt.date(2024, 1, 1), dt.date(2024, 1, 2))


def test_an_empty_write_is_refused(store):
    with pytest.raises(ValueError, match="no rows"):
        store.replace_window("country_demand", [], dt.date(2024, 1, 1), dt.date(2024, 1, 2))


def test_a_window_read_in_date_chunks_is_the_whole_window_sorted(store):
    """read_window sorts a few days at a time (memory); the result is the same rows in the same
    order as one sorted read, for windows that do and do not divide into whole chunks."""
    jan = dt.date(2024, 1, 1)
    rows = pl.concat([_frame(jan, 20, 1).with_columns(pl.lit(c).alias("COUNTRY")) for c in ("US", "DE", "FR")])
    store.replace_window("country_demand", [rows.sample(fraction=1.0, shuffle=True, seed=1)], jan, jan + dt.timedelta(days=20))
    end = jan + dt.timedelta(days=17)
    expected = rows.filter(pl.col("DATE") < end).sort("DATE", "COUNTRY")
    for chunk_days in (1, 3, 64):
        assert_frame_equal(store.read_window("country_demand", jan, end, chunk_days=chunk_days), expected)
    assert store.read_window("country_demand", end, end).is_empty()
    assert store.read_window("country_demand", jan, end, ["DATE", "V"], chunk_days=4).columns == ["DATE", "V"]


def test_staging_leaves_nothing_beside_the_tables(tmp_path):
    store = DeltaStore(root_uri=str(tmp_path / "delta"))
    with store.staging() as area:
        staged = area.stage("country_demand", [pl.DataFrame({"A": [1, 2]}), pl.DataFrame({"A": [3]})])
        assert staged.rows == 3 and staged.frame()["A"].to_list() == [1, 2, 3]
        assert area.folder.parent == tmp_path / "delta" / "_staging"
    assert not (tmp_path / "delta" / "_staging").exists()


def test_product_demand_written_before_listing_gaps_takes_the_listed_column(store):
    """A real source's store written before LISTED existed accepts a window that has it; the
    earlier rows read LISTED as null, which the training dataset counts as listed."""
    from demand_assets.features.training_dataset import listed_rows

    jan = dt.date(2024, 1, 1)
    old = _frame(jan, 4, 1).rename({"V": "PRODUCT_DEMAND"}).with_columns(pl.lit("P1").alias("PRODUCT"))
    store.replace_window("product_demand", [old], jan, jan + dt.timedelta(days=4))
    new = _frame(dt.date(2024, 1, 5), 2, 0).rename({"V": "PRODUCT_DEMAND"}).with_columns(pl.lit("P1").alias("PRODUCT"), pl.Series("LISTED", [True, False]))
    store.replace_window("product_demand", [new], dt.date(2024, 1, 5), dt.date(2024, 1, 7))
    table = store.read_all("product_demand").sort("DATE")
    assert table["LISTED"].to_list() == [None, None, None, None, True, False]
    assert listed_rows(table)["DATE"].to_list() == [jan + dt.timedelta(days=i) for i in range(5)]


def test_a_whole_table_overwrite_sent_in_slices_is_one_version_with_every_row(store):
    """overwrite hands the writer a few rows at a time: one new version, every row, the columns'
    types as they were (strings with nulls, a column null in the first slice). Row order is not
    part of a Delta table (the writer does not keep its input's batches in order)."""
    n = 2_500
    frame = pl.DataFrame(
        {
            "MODEL": ["ets" if i % 3 else "lightgbm" for i in range(n)],
            "FOLD": pl.Series([i // 1_000 for i in range(n)], dtype=pl.Int32),
            "DATE": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 28) for i in range(n)],
            "PRODUCT": [None if i % 17 == 0 else f"P{i}" for i in range(n)],
            "TRUE_DEMAND": [None if i < 1_200 else float(i) for i in range(n)],
        }
    )
    store.overwrite("backtest_forecasts", pl.DataFrame({"MODEL": ["old"], "FOLD": pl.Series([0], dtype=pl.Int32), "DATE": [dt.date(2023, 1, 1)]}))
    written = store.overwrite("backtest_forecasts", frame, slice_rows=1_000)
    assert written.version == 1 and written.rows == n
    every = ["FOLD", "DATE", "MODEL", "TRUE_DEMAND", "PRODUCT"]
    assert_frame_equal(store.read_all("backtest_forecasts").sort(every, nulls_last=True), frame.sort(every, nulls_last=True))
