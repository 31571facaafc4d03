"""Retail transaction logs (invoice lines) to weekly product demand, and the errors bad logs get."""

import datetime as dt
import json

import dagster as dg
import polars as pl
import pytest
from fastapi.testclient import TestClient

from demand_assets.definitions import ALL_ASSETS
from demand_assets.domains.models import ForecastingConfig
from demand_assets.domains.sku import SkuModelConfig
from demand_assets.serving.app import create_app
from demand_assets.sources import Domain
from demand_assets.sources.transactions import (
    TRANSACTION_COLUMNS,
    TransactionLogError,
    TransactionLogSource,
    read_transaction_log,
    synthetic_transaction_log,
    weekly_product_demand,
)
from resources import DemandSourceResource
from tests.conftest import materialize_range, small_resources


def _log(rows) -> bytes:
    return pl.DataFrame(rows, schema=list(TRANSACTION_COLUMNS), orient="row").write_csv().encode()


ROWS = [
    ("T1", "2023-01-02", "C1", "Male", 30, "Beauty", 2, 50.0, 100.0),  # Monday, week 1
    ("T2", "2023-01-08", "C2", "Female", 40, "Beauty", 1, 50.0, 50.0),  # Sunday, still week 1
    ("T3", "2023-01-09", "C3", "Female", 22, "Beauty", 3, 25.0, 75.0),  # week 2, another price point
    ("T4", "2023-01-23", "C4", "Male", 51, "Beauty", 4, 50.0, 200.0),  # week 4: week 3 had no sale
]


def test_weekly_demand_per_category_and_price_point_with_zero_weeks():
    weekly = weekly_product_demand(read_transaction_log(_log(ROWS)))
    fifty = weekly.filter(pl.col("PRODUCT") == "Beauty@50.00").sort("WEEK")
    assert fifty["WEEK"].to_list() == [dt.date(2023, 1, 2), dt.date(2023, 1, 9), dt.date(2023, 1, 16), dt.date(2023, 1, 23)]
    assert fifty["UNITS"].to_list() == [3, 0, 0, 4]
    assert fifty["REVENUE"].to_list() == [150.0, 0.0, 0.0, 200.0]
    assert weekly.filter(pl.col("PRODUCT") == "Beauty@25.00")["UNITS"].to_list() == [3]
    assert set(weekly["CATEGORY"]) == {"Beauty"}


@pytest.mark.parametrize(
    "row, rule, column",
    [
        (("T9", "02/01/2023", "C", "Male", 30, "Beauty", 1, 50.0, 50.0), "dates are YYYY-MM-DD", "Date"),
        (("T9", "2023-01-02", "C", "Male", 30, "Beauty", 0, 50.0, 0.0), "quantity is a whole number >= 1", "Quantity"),
        (("T9", "2023-01-02", "C", "Male", 30, "Beauty", 1, -5.0, -5.0), "price per unit > 0", "Price per Unit"),
        (("T9", "2023-01-02", "C", "Male", 30, "Beauty", 2, 50.0, 60.0), "total = quantity x price", "Total Amount"),
        (("T1", "2023-01-02", "C", "Male", 30, "Beauty", 1, 50.0, 50.0), "unique Transaction ID", "Transaction ID"),
    ],
)
def test_a_broken_rule_is_named_with_its_column_and_rows(row, rule, column):
    with pytest.raises(TransactionLogError) as err:
        read_transaction_log(_log([*ROWS, row]))
    message = str(err.value)
    assert f"rule '{rule}'" in message and f"column '{column}'" in message
    assert row[0] in message  # the offending transaction is named


def test_missing_columns_and_non_csv_are_refused():
    with pytest.raises(TransactionLogError, match="required columns.*Quantity"):
        read_transaction_log(pl.DataFrame({"Transaction ID": ["T1"], "Date": ["2023-01-02"]}).write_csv().encode())
    with pytest.raises(TransactionLogError, match="not empty"):
        read_transaction_log(",".join(TRANSACTION_COLUMNS).encode() + b"\n")


def test_the_synthetic_log_round_trips_through_the_upload_format():
    log = synthetic_transaction_log(weeks=6, seed=3)
    parsed = read_transaction_log(log.write_csv().encode())
    assert parsed.height == log.height
    weekly = weekly_product_demand(parsed)
    assert weekly["UNITS"].sum() == log["Quantity"].sum()


# --- The whole pipeline and the service on one transaction log (DEMAND_SOURCE=transactions) ----

PIPELINE_LOG = synthetic_transaction_log(weeks=60, seed=5)
LOG_END = PIPELINE_LOG["Date"].str.to_date().max()


@pytest.fixture(scope="module")
def log_pipeline(tmp_path_factory):
    work = tmp_path_factory.mktemp("txlog")
    PIPELINE_LOG.write_csv(work / "log.csv")
    resources = small_resources(
        work / "delta", source=DemandSourceResource(kind="transactions", transactions_file=str(work / "log.csv"), transactions_market="STORE_1")
    )
    data = materialize_range(resources, "2023-01-02", str(LOG_END))
    models = ForecastingConfig(models=["seasonal_naive", "lightgbm"], n_folds=2, horizon=14, history_days=300, lgbm_rounds=20)
    sku = SkuModelConfig(frequencies=["weekly"], history_days=420, n_folds=2, weekly_epochs=3, channels=8)
    run = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        selection=["model_backtest", "champion_model", "sku_forecast_models", "spend_response_model"],
        run_config=dg.RunConfig(ops={"model_backtest": models, "sku_forecast_models": sku}),
    )
    forecast = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        selection=["demand_forecast"],
        partition_key=str(LOG_END),
    )
    return resources, data, run, forecast


def test_transaction_log_source_is_daily_demand_per_category_at_price(tmp_path):
    PIPELINE_LOG.write_csv(tmp_path / "log.csv")
    source = TransactionLogSource(tmp_path / "log.csv", stockout_alpha=None)
    daily = pl.concat(list(source.read(Domain.PRODUCT_DEMAND, dt.date(2023, 1, 2), LOG_END + dt.timedelta(days=1))))
    parsed = read_transaction_log(tmp_path / "log.csv")
    assert daily["PRODUCT_DEMAND"].sum() == parsed["QUANTITY"].sum()
    assert daily["IN_STOCK"].all() and not daily["PROMO"].any()
    per_product = daily.group_by("PRODUCT").agg(pl.len(), pl.col("DATE").max())
    assert (per_product["DATE"] == LOG_END).all()  # zero-filled to the log's last day
    assert source.catalog().products.filter(pl.col("PRODUCT") == "Beauty@50.00")["CATEGORY"].to_list() == ["Beauty"]
    assert source.provides == frozenset({Domain.PRODUCT_DEMAND})
    with pytest.raises(FileNotFoundError, match="DEMAND_TRANSACTIONS_FILE"):
        TransactionLogSource(tmp_path / "missing.csv")


@pytest.mark.slow
def test_the_whole_pipeline_and_the_service_run_on_a_transaction_log(log_pipeline):
    resources, data, run, forecast = log_pipeline
    assert data.success and run.success and forecast.success
    store = resources["store"]
    assert not store.exists("channel_spend_response") and not store.exists("response_curves")
    assert set(store.read_all("training_dataset")["COUNTRY"]) == {"STORE_1"}
    assert store.read_all("sku_backtest_metrics").height > 0
    stored = store.read_all("demand_forecast")
    assert stored["DATE"].unique().to_list() == [LOG_END] and stored.height == 28 * 9  # horizon x products

    with TestClient(create_app(store, resources["mlflow_tracking"])) as client:
        health = client.get("/health").json()
        assert "weekly" in json.dumps(health)
        got = client.get("/forecast", params={"country": "STORE_1", "product": "Clothing@50.00", "horizon": 7})
        assert got.status_code == 200, got.text
        assert len(got.json()["forecasts"]) == 7 and got.json()["model_version"]
        upload = PIPELINE_LOG.tail(3000).write_csv().encode()
        meta = json.dumps({"products": ["Clothing@50.00", "Beauty@25.00"]})
        predicted = client.post(
            "/predict", files={"file": ("log.csv", upload, "text/csv")}, data={"metadata": meta}, params={"horizon": 4, "frequency": "weekly"}
        )
        assert predicted.status_code == 200, predicted.text
        body = predicted.json()
        assert {r["product"] for r in body["forecasts"]} == {"Clothing@50.00", "Beauty@25.00"}
        assert all(r["p10"] <= r["p50"] <= r["p90"] for r in body["forecasts"]) and body["model_version"]


@pytest.mark.parametrize("column, value", [("Total Amount", "1,000"), ("Price per Unit", "$50"), ("Quantity", "2 pcs")])
def test_a_number_in_another_format_is_named_as_a_format_problem_with_its_text(column, value):
    """Regression: "1,000" in Total Amount was reported as 'total = quantity x price' with the value
    shown as None; now the rule is the number format and the text is shown as written."""
    row = dict(zip(TRANSACTION_COLUMNS, ("T9", "2023-01-02", "C", "Male", "30", "Beauty", "20", "50.0", "1000.0")))
    row[column] = value
    csv = ",".join(TRANSACTION_COLUMNS) + "\n" + ",".join(f'"{v}"' for v in row.values()) + "\n"
    with pytest.raises(TransactionLogError) as err:
        read_transaction_log(csv.encode())
    message = str(err.value)
    assert "rule 'numbers are plain decimals" in message and f"column '{column}'" in message
    assert value in message and "T9" in message


@pytest.mark.parametrize("separator, named", [(";", "';'-separated"), ("\t", "tab-separated")])
def test_a_log_with_another_delimiter_is_named_as_such(tmp_path, separator, named):
    """Found on a real public copy of a retail log saved by a spreadsheet: ';' between fields gave
    polars' 'found more fields than defined in Schema' under rule 'readable CSV'."""
    path = tmp_path / "log.csv"
    path.write_text(separator.join(TRANSACTION_COLUMNS) + "\n" + separator.join(["T1", "2023-01-02", "C", "Male", "30", "Beauty", "1", "50", "50"]) + "\n")
    for source in (path, path.read_bytes()):
        with pytest.raises(TransactionLogError, match=f"rule 'comma-separated'.*looks {named}"):
            read_transaction_log(source)
