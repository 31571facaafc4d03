"""Issue 16 point 1, bring your own sales data: the `table` source (one long CSV or Parquet file
declared in a YAML), its generated contract, declared covariates in the training dataset and the
models, and the graph on DEMAND_SOURCE=table."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from contracts import Cadence, SourceFormatError
from demand_assets.definitions import ALL_ASSETS
from demand_assets.domains.models import ForecastingConfig
from demand_assets.features.training_dataset import build_training_dataset
from demand_assets.forecasting.models.deepar import DeepARForecaster
from demand_assets.forecasting.models.lightgbm_global import LightGBMForecaster
from demand_assets.forecasting.panel import exogenous_columns, future_frame, planned_future
from demand_assets.sources import Domain
from demand_assets.sources.table import TableSource, TableSpec, TableSpecError, read_table, write_table_example
from resources import DemandSourceResource
from tests.conftest import materialize_range, small_resources

START = dt.date(2024, 1, 1)
DAYS = 90


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    directory = tmp_path_factory.mktemp("table")
    write_table_example(directory, start=START, days=DAYS, n_products=4)
    return directory


def _rows(source, start=START, end=START + dt.timedelta(days=DAYS)) -> pl.DataFrame:
    return pl.concat(list(source.read(Domain.PRODUCT_DEMAND, start, end)))


def _spec(tmp_path, csv: str, **keys) -> TableSpec:
    (tmp_path / "sales.csv").write_text(csv)
    declaration = {
        "path": "sales.csv",
        "date": "day",
        "product": "sku",
        "target": "units",
        "price": "price",
        "covariates": {"temp": {"column": "temp", "kind": "observed"}},
    } | keys
    return TableSpec.from_mapping(declaration, base=tmp_path)


GOOD = "day,sku,units,price,temp\n2024-01-01,A,3,2.5,10.5\n2024-01-01,B,0,4.0,10.5\n2024-01-02,A,1,2.5,11\n2024-01-02,B,2,4.0,11\n"


def test_the_declaration_parses_with_paths_relative_to_the_yaml(example):
    spec = TableSpec.from_yaml(example / "table.yaml")
    assert spec.path == example / "example.csv"
    assert (spec.date, spec.country, spec.product, spec.target, spec.frequency) == ("date", "store", ("category", "sku"), "units", "daily")
    assert {(c.name, c.kind) for c in spec.covariates} == {("DISCOUNT", "known"), ("ECONOMIC_INDEX", "observed")}


@pytest.mark.parametrize(
    "broken, rule",
    [
        ({"target": None}, "required keys"),
        ({"frequency": "hourly"}, "frequency is daily or weekly"),
        ({"covariates": {"temp": {"column": "temp", "kind": "guessed"}}}, "covariate kind is known or observed"),
        ({"price": "units"}, "one role per column"),
        ({"colour": "x"}, "known keys"),
    ],
)
def test_a_wrong_declaration_is_refused_by_rule(tmp_path, broken, rule):
    with pytest.raises(TableSpecError, match=rule):
        _spec(tmp_path, GOOD, **broken)


def test_a_good_file_gives_product_demand_rows_matching_the_file(example):
    source = TableSource(example / "table.yaml")
    rows = _rows(source)
    file = pl.read_csv(example / "example.csv")
    assert rows.height == file.height
    assert set(rows.columns) >= {
        "DATE",
        "COUNTRY",
        "PRODUCT",
        "PRODUCT_DEMAND",
        "PRICE",
        "PROMO",
        "IN_STOCK",
        "LISTED",
        "KNOWN_DISCOUNT",
        "OBSERVED_ECONOMIC_INDEX",
    }
    expected = file.select(
        pl.col("date").str.to_date().alias("DATE"),
        pl.col("store").alias("COUNTRY"),
        (pl.col("category") + "/" + pl.col("sku")).alias("PRODUCT"),
        pl.col("units").alias("PRODUCT_DEMAND"),
        pl.col("price").alias("PRICE"),
        (pl.col("promo") == 1).alias("PROMO"),
        pl.col("discount").cast(pl.Float64).alias("KNOWN_DISCOUNT"),
        pl.col("economic_index").alias("OBSERVED_ECONOMIC_INDEX"),
    ).sort("DATE", "COUNTRY", "PRODUCT")
    assert rows.select(expected.columns).equals(expected)
    catalog = source.catalog()
    assert catalog.countries == tuple(sorted(file["store"].unique()))
    assert set(catalog.products["CATEGORY"]) == set(file["category"])


def test_parquet_and_a_constant_market(tmp_path):
    pl.DataFrame({"day": [START, START], "sku": ["A", "B"], "units": [1, 2]}).write_parquet(tmp_path / "s.parquet")
    spec = TableSpec.from_mapping({"path": "s.parquet", "date": "day", "product": "sku", "target": "units", "market": "NL"}, base=tmp_path)
    rows = read_table(spec)
    assert rows["COUNTRY"].to_list() == ["NL", "NL"] and rows["PRICE"].to_list() == [1.0, 1.0] and not rows["PROMO"].any()


@pytest.mark.parametrize(
    "csv, rule, column, line",
    [
        (GOOD.replace("2024-01-02,A", "02/01/2024,A"), "dates parse as %Y-%m-%d", "day", 4),
        (GOOD.replace("2024-01-02,A,1", "2024-01-02,A,-1"), "target is finite and >= 0", "units", 4),
        (GOOD.replace("2024-01-02,A,1", "2024-01-02,A,1.5"), "target is a whole number", "units", 4),
        (GOOD.replace("2024-01-02,B,2", "2024-01-02,B,lots"), "target is a number", "units", 5),
        (GOOD.replace("2024-01-01,B,0", "2024-01-01,,0"), "keys are not empty", "sku", 3),
        (GOOD.replace("2024-01-02,B,2", "2024-01-02,A,2"), "one row per date and series", "day", 5),
        (GOOD.replace("4.0,11", "0,11"), "price is finite and > 0", "price", 5),
        (GOOD.replace(",11\n2024-01-02,B", ",inf\n2024-01-02,B"), "covariate is finite", "temp", 4),
        (GOOD.replace(",11\n2024-01-02,B", ",warm\n2024-01-02,B"), "covariate is a number", "temp", 4),
        (GOOD.replace(",11\n2024-01-02,B", ",\n2024-01-02,B"), "covariate is given", "temp", 4),
    ],
)
def test_each_broken_rule_is_refused_naming_the_rule_column_and_lines(tmp_path, csv, rule, column, line):
    with pytest.raises(SourceFormatError) as err:
        read_table(_spec(tmp_path, csv))
    violation = next(v for v in err.value.violations if v.rule.startswith(rule))
    assert violation.column == column
    assert line in [e["LINE"] for e in violation.examples]
    assert f"rule '{rule}" in str(err.value)


def test_a_missing_column_is_named_with_its_role(tmp_path):
    with pytest.raises(SourceFormatError, match=r"rule 'declared columns exist' on column temp.*covariate temp"):
        read_table(_spec(tmp_path, GOOD.replace(",temp", ",temperature")))


def test_weekly_rows_land_on_one_weekday_and_the_source_is_weekly_on_it(tmp_path):
    weekly = "day,sku,units\n2024-01-01,A,10\n2024-01-08,A,12\n2024-01-15,A,9\n"
    spec = _spec(tmp_path, weekly, frequency="weekly", price=None, covariates={})
    assert read_table(spec)["DATE"].dt.weekday().unique().to_list() == [1]
    # The graph runs it (tests/test_weekly_table.py): its rows land on Mondays, the inferred week day.
    assert TableSource(spec).cadence == Cadence.weekly(1)
    with pytest.raises(SourceFormatError, match=r"weekly rows fall on one weekday \(the week's day: Monday, the rows' most common weekday\)"):
        read_table(_spec(tmp_path, weekly + "2024-01-23,A,4\n", frequency="weekly", price=None, covariates={}))


def test_training_rows_have_known_covariates_same_day_and_observed_ones_lagged(example):
    source = TableSource(example / "table.yaml")
    rows = _rows(source)
    start = START + dt.timedelta(days=40)
    dataset = build_training_dataset(rows, None, None, source.catalog().products, start, START + dt.timedelta(days=DAYS))
    assert "OBSERVED_ECONOMIC_INDEX" not in dataset.columns  # never the same day
    assert {"KNOWN_DISCOUNT", "OBSERVED_ECONOMIC_INDEX_LAG_1", "OBSERVED_ECONOMIC_INDEX_LAG_7"} <= set(dataset.columns)
    one = dataset.filter(pl.col("DATE") == start).row(0, named=True)
    raw = rows.filter(pl.col("COUNTRY") == one["COUNTRY"], pl.col("PRODUCT") == one["PRODUCT"])
    value = dict(raw.select("DATE", "OBSERVED_ECONOMIC_INDEX").iter_rows())
    assert one["OBSERVED_ECONOMIC_INDEX_LAG_1"] == value[start - dt.timedelta(days=1)]
    assert one["OBSERVED_ECONOMIC_INDEX_LAG_7"] == value[start - dt.timedelta(days=7)]
    assert one["KNOWN_DISCOUNT"] == raw.filter(pl.col("DATE") == start)["KNOWN_DISCOUNT"][0]
    # The models see them; a future day's observed lag past the origin is the last known value.
    assert {"KNOWN_DISCOUNT", "OBSERVED_ECONOMIC_INDEX_LAG_1", "OBSERVED_ECONOMIC_INDEX_LAG_7"} <= set(exogenous_columns(dataset))
    origin = start + dt.timedelta(days=20)
    future = future_frame(dataset, origin, 14)
    series = future.filter(pl.col("COUNTRY") == one["COUNTRY"], pl.col("PRODUCT") == one["PRODUCT"]).sort("DATE")
    lag1 = series["OBSERVED_ECONOMIC_INDEX_LAG_1"].to_list()
    assert lag1[0] == value[origin] and set(lag1) == {value[origin]}
    lag7 = series["OBSERVED_ECONOMIC_INDEX_LAG_7"].to_list()
    assert lag7[:7] == [value[origin + dt.timedelta(days=h - 7)] for h in range(1, 8)] and set(lag7[7:]) == {value[origin]}
    # Beyond the stored days: known covariates keep their last value.
    last = dataset["DATE"].max()
    planned = planned_future(dataset, last, 7)
    assert planned["KNOWN_DISCOUNT"].null_count() == 0 and planned["OBSERVED_ECONOMIC_INDEX_LAG_7"].null_count() == 0
    model = LightGBMForecaster(num_boost_round=5).fit(dataset)
    assert {"KNOWN_DISCOUNT", "OBSERVED_ECONOMIC_INDEX_LAG_1", "OBSERVED_ECONOMIC_INDEX_LAG_7"} <= set(model.features)
    deepar = DeepARForecaster()
    entries = deepar._prepare(dataset)  # the features of its entries, without training
    assert deepar.dynamic_features[-3:] == ["KNOWN_DISCOUNT", "OBSERVED_ECONOMIC_INDEX_LAG_1", "OBSERVED_ECONOMIC_INDEX_LAG_7"]
    assert entries[0]["feat_dynamic_real"].shape[0] == len(deepar.dynamic_features)


@pytest.fixture(scope="module")
def table_graph(tmp_path_factory, example):
    root = tmp_path_factory.mktemp("tablegraph") / "delta"
    resources = small_resources(root, source=DemandSourceResource(kind="table", table_spec=str(example / "table.yaml")))
    data = materialize_range(resources, str(START), str(START + dt.timedelta(days=DAYS - 1)))
    config = ForecastingConfig(models=["seasonal_naive", "lightgbm"], n_folds=1, horizon=14, history_days=60, lgbm_rounds=10)
    models = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        selection=["model_backtest"],
        run_config=dg.RunConfig(ops={"model_backtest": config}),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return resources, data, models


@pytest.mark.slow
def test_graph_runs_on_a_table_with_its_covariates_in_the_training_dataset(table_graph):
    resources, data, models = table_graph
    assert data.success and models.success
    store = resources["store"]
    demand = store.read_all("product_demand")
    assert {"KNOWN_DISCOUNT", "OBSERVED_ECONOMIC_INDEX"} <= set(demand.columns)
    dataset = store.read_all("training_dataset")
    assert {"KNOWN_DISCOUNT", "OBSERVED_ECONOMIC_INDEX_LAG_1", "OBSERVED_ECONOMIC_INDEX_LAG_7"} <= set(dataset.columns)
    assert "OBSERVED_ECONOMIC_INDEX" not in dataset.columns
    assert not any(c.startswith(("SPEND_", "RESPONSE_")) or c == "ECONOMIC_INDEX" for c in dataset.columns)
    metrics = store.read_all("backtest_metrics")
    assert set(metrics["MODEL"]) == {"seasonal_naive", "lightgbm"}


def test_a_broken_table_fails_the_product_demand_contract_check_not_the_step(tmp_path):
    (tmp_path / "sales.csv").write_text(GOOD.replace("2024-01-02,B,2", "2024-01-02,B,-2"))
    (tmp_path / "t.yaml").write_text("path: sales.csv\ndate: day\nproduct: sku\ntarget: units\nprice: price\n")
    resources = small_resources(tmp_path / "delta", source=DemandSourceResource(kind="table", table_spec=str(tmp_path / "t.yaml")))
    result = materialize_range(resources, "2024-01-01", "2024-01-02", selection=["product_demand"])
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = checks["product_demand_contract"]
    assert not failed.passed
    assert "target is finite and >= 0" in failed.metadata["violations"].value and "units" in failed.metadata["violations"].value
