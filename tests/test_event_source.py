"""E-commerce event logs as a source (issue 20): the synthetic event world and its truth, the
reader's rules, the source's demand and engagement, the engagement features, and the graph on a
log (product_engagement stored, training_dataset with lagged engagement, bad logs refused with
nothing written)."""

import datetime as dt
import gzip
import shutil

import dagster as dg
import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from contracts import SourceFormatError
from contracts.columns import ENGAGEMENT_FEATURES
from demand_assets.definitions import ALL_ASSETS
from demand_assets.domains.models import ForecastingConfig
from demand_assets.domains.selections import selection
from demand_assets.features.engagement import engagement_columns, engagement_features
from demand_assets.serving.app import create_app
from demand_assets.sources import Domain
from demand_assets.sources.events import EVENT_COLUMNS, NEXT_CLASSES, EventLogSource, EventWorld, daily_events, write_event_files
from demand_assets.sources.events.world import TRANSITIONS, intent_prior
from resources import DemandSourceResource
from tests.conftest import small_resources

START = dt.date(2024, 1, 1)  # on or after the partitions' first day
WORLD = EventWorld.small(days=70, start=START)
FIRST_FILE = "2024-Jan.csv"


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("events")
    write_event_files(directory, WORLD, progress=lambda _: None)
    return directory


def _csv(tmp_path, frame: pl.DataFrame, name: str = FIRST_FILE):
    path = tmp_path / name
    frame.write_csv(path)
    return path


def _first_rows(log_dir, n: int = 200) -> pl.DataFrame:
    return pl.read_csv(log_dir / FIRST_FILE, infer_schema=False, n_rows=n)


# --- the world -------------------------------------------------------------------------------


def test_a_day_is_the_same_alone_or_in_a_run_and_seeds_differ():
    day = START + dt.timedelta(days=9)
    alone = WORLD.day(day)
    in_run = dict(WORLD.days_between(START, START + dt.timedelta(days=12)))[day]
    assert alone.events.equals(in_run.events) and alone.next_event.equals(in_run.next_event)
    other = EventWorld.small(seed=1, days=45, start=START).day(day)
    assert not other.events.head(50).equals(alone.events.head(50))
    assert alone.events.columns == list(EVENT_COLUMNS)


def test_the_truth_is_a_distribution_over_what_follows_and_is_calibrated():
    """The generator's next-event probabilities sum to one, put no mass where the transitions
    forbid it (no purchase right after a view), and match the frequencies of what did follow."""
    days = [WORLD.day(START + dt.timedelta(days=d)).next_event for d in range(20)]
    truth = pl.concat(days)
    probs = truth.select(f"P_{c.upper()}" for c in NEXT_CLASSES).to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    after_view = truth.filter(pl.col("event_type") == "view")
    assert (after_view["P_PURCHASE"] == 0).all() and (after_view["next"] != "purchase").all()
    observed = np.stack([(truth["next"] == c).to_numpy() for c in NEXT_CLASSES], axis=1)
    assert np.abs(probs.mean(axis=0) - observed.mean(axis=0)).max() < 0.01
    # Calibrated where it is confident: events whose truth gives a purchase >= 0.4 are followed
    # by one about as often as it says.
    sure = probs[:, 3] >= 0.4
    assert sure.sum() > 200 and abs(probs[sure, 3].mean() - observed[sure, 3].mean()) < 0.05


def test_the_truth_beats_a_markov_chain_fitted_on_the_same_events():
    """The noise floor: the Bayes-optimal predictor's log loss is below the first-order Markov
    chain's (estimated from the very events it is scored on, so flattered)."""
    truth = pl.concat([WORLD.day(START + dt.timedelta(days=d)).next_event for d in range(20)])
    classes = {c: i for i, c in enumerate(NEXT_CLASSES)}
    nxt = truth["next"].replace_strict(classes).to_numpy()
    probs = truth.select(f"P_{c.upper()}" for c in NEXT_CLASSES).to_numpy()
    bayes = -np.log(np.maximum(probs[np.arange(len(nxt)), nxt], 1e-12)).mean()
    counts = truth.group_by("event_type", "next").len().pivot(on="next", index="event_type", values="len").fill_null(0)
    table = {row["event_type"]: np.array([row.get(c, 0) for c in NEXT_CLASSES], dtype=float) for row in counts.to_dicts()}
    markov = np.array([table[t][classes[n]] / table[t].sum() for t, n in zip(truth["event_type"], truth["next"], strict=True)])
    assert bayes < -np.log(markov).mean() - 0.02


def test_intents_shape_the_sessions():
    sessions = pl.concat([WORLD.day(START + dt.timedelta(days=d)).sessions for d in range(10)])
    by_intent = {r["intent"]: r for r in sessions.group_by("intent").agg(pl.col("purchases").mean(), pl.len()).to_dicts()}
    assert by_intent["browsing"]["purchases"] == 0 and by_intent["abandoning"]["purchases"] == 0
    assert by_intent["buying"]["purchases"] > 0.8 > by_intent["comparing"]["purchases"] > 0
    assert np.allclose(TRANSITIONS.sum(axis=2), 1.0) and np.allclose(intent_prior(np.linspace(0, 1, 5)).sum(axis=1), 1.0)


# --- the reader ------------------------------------------------------------------------------


def test_purchases_and_duplicates_are_the_generators(log_dir):
    counted = daily_events(log_dir, START, WORLD.end + dt.timedelta(days=1))
    truth = pl.read_parquet(log_dir / "truth" / "product_days.parquet")
    world = pl.read_parquet(log_dir / "truth" / "world.parquet").row(0, named=True)
    assert counted.duplicates == world["duplicates"] > 0
    joined = truth.with_columns(pl.col("product_id").cast(pl.String)).join(
        counted.days.select("DATE", pl.col("SERIES").alias("product_id"), "PURCHASES"), on=["DATE", "product_id"], how="full", coalesce=True
    )
    assert (joined["PURCHASES"].fill_null(0) == joined["PURCHASES_right"].fill_null(0)).all()
    assert counted.days["PURCHASES"].sum() == truth["PURCHASES"].sum() > 500


def test_gzipped_months_read_as_the_plain_files(log_dir, tmp_path):
    for path in log_dir.glob("*.csv"):
        with open(path, "rb") as src, gzip.open(tmp_path / (path.name + ".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    window = (START + dt.timedelta(days=20), START + dt.timedelta(days=40))
    assert daily_events(tmp_path, *window).days.equals(daily_events(log_dir, *window).days)


def test_the_shops_time_zone_decides_the_day(tmp_path):
    rows = pl.DataFrame(
        {
            "event_time": ["2024-01-01 10:00:00 UTC", "2024-01-01 20:00:00 UTC"],
            "event_type": ["purchase", "purchase"],
            "product_id": ["1", "1"],
            "category_id": ["7", "7"],
            "category_code": [None, None],
            "brand": ["x", "x"],
            "price": ["2.5", "2.5"],
            "user_id": ["5", "6"],
            "user_session": ["a", "b"],
        }
    )
    path = _csv(tmp_path, rows)
    window = (dt.date(2023, 12, 30), dt.date(2024, 1, 4))
    utc = dict(daily_events(path, *window).days.select("DATE", "PURCHASES").iter_rows())
    tokyo = dict(daily_events(path, *window, timezone="Asia/Tokyo").days.select("DATE", "PURCHASES").iter_rows())
    assert utc == {dt.date(2024, 1, 1): 2}
    assert tokyo == {dt.date(2024, 1, 1): 1, dt.date(2024, 1, 2): 1}  # 20:00 UTC is 05:00 the next day in Tokyo


@pytest.mark.parametrize(
    ("column", "bad", "rule"),
    [
        ("event_type", "wishlist", "event types are one of view, cart, remove_from_cart, purchase"),
        ("event_time", "2019-10-01T00:00:04Z", "event times read as"),
        ("price", "-3.0", "prices are >= 0"),
        ("price", "1,000", "prices are numbers"),
        ("product_id", "", "product ids are given"),
        ("user_session", "", "session ids are given"),
    ],
)
def test_a_broken_row_rule_names_the_rule_the_column_and_the_file_and_line(log_dir, tmp_path, column, bad, rule):
    rows = _first_rows(log_dir).with_columns(pl.when(pl.int_range(pl.len()) == 17).then(pl.lit(bad)).otherwise(pl.col(column)).alias(column))
    path = _csv(tmp_path, rows)
    with pytest.raises(SourceFormatError) as caught:
        daily_events(path, START, START + dt.timedelta(days=3))
    (violation,) = caught.value.violations
    assert rule in violation.rule and violation.column == column and violation.n_rows == 1
    assert violation.examples[0]["FILE"] == FIRST_FILE and violation.examples[0]["LINE"] == 19  # header is line 1


def test_bad_files_are_refused_naming_the_rule(log_dir, tmp_path):
    def refused(path) -> str:
        with pytest.raises(SourceFormatError) as caught:
            daily_events(path, START, START + dt.timedelta(days=3))
        return str(caught.value)

    (tmp_path / "empty").mkdir()
    assert "a folder of event files holds at least one .csv or .csv.gz" in refused(tmp_path / "empty")
    assert "the event log exists" in refused(tmp_path / "nowhere")
    rows = _first_rows(log_dir)
    missing = tmp_path / "missing"
    missing.mkdir()
    _csv(missing, rows.drop("user_session"))
    assert "has the event log's columns" in refused(missing) and "user_session" in refused(missing)
    semicolons = tmp_path / "semicolons"
    semicolons.mkdir()
    rows.write_csv(semicolons / FIRST_FILE, separator=";")
    assert "comma-separated" in refused(semicolons) and "';'" in refused(semicolons)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    whole = gzip.compress((log_dir / FIRST_FILE).read_bytes())
    (truncated / f"{FIRST_FILE}.gz").write_bytes(whole[: len(whole) // 2])
    message = refused(truncated)
    assert "a complete gzip file" in message and f"{FIRST_FILE}.gz" in message


# --- the source ------------------------------------------------------------------------------


def test_source_demand_and_engagement_share_days_and_series_to_the_logs_end(log_dir):
    source = EventLogSource(log_dir)
    assert source.provides == frozenset({Domain.PRODUCT_DEMAND, Domain.PRODUCT_ENGAGEMENT})
    end = WORLD.end + dt.timedelta(days=1)
    demand = pl.concat(list(source.read(Domain.PRODUCT_DEMAND, START, end)))
    engagement = pl.concat(list(source.read(Domain.PRODUCT_ENGAGEMENT, START, end)))
    assert demand.select("DATE", "COUNTRY", "PRODUCT").equals(engagement.select("DATE", "COUNTRY", "PRODUCT"))
    assert (demand["PRODUCT_DEMAND"] == engagement["PURCHASES"]).all()
    last = demand["DATE"].max()
    # every series runs from its first event to the log's last day, zero-filled
    spans = demand.group_by("PRODUCT").agg(pl.col("DATE").max().alias("LAST"), pl.col("DATE").min().alias("FIRST"), pl.len())
    assert (spans["LAST"] == last).all()
    assert ((spans["LAST"] - spans["FIRST"]).dt.total_days() + 1 == spans["len"]).all()
    assert (demand["PRICE"] > 0).all() and demand["PRICE"].is_not_null().all()


def test_promo_rule_finds_the_generators_promotions(log_dir):
    demand = pl.concat(list(EventLogSource(log_dir).read(Domain.PRODUCT_DEMAND, START, WORLD.end)))
    truth = pl.read_parquet(log_dir / "truth" / "product_days.parquet").select(pl.col("product_id").cast(pl.String).alias("PRODUCT"), "DATE", "PROMO")
    joined = demand.join(truth, on=["PRODUCT", "DATE"])
    agree = (joined["PROMO"] == joined["PROMO_right"]).mean()
    recall = joined.filter(pl.col("PROMO_right"))["PROMO"].mean()
    assert agree > 0.95 and recall > 0.7, (agree, recall)


def test_brand_and_category_levels_add_up_to_the_products(log_dir):
    window = (START, START + dt.timedelta(days=30))
    totals = {level: daily_events(log_dir, *window, level=level).days["PURCHASES"].sum() for level in ("product", "brand", "category")}
    assert totals["product"] == totals["brand"] == totals["category"] > 0
    brands = EventLogSource(log_dir, level="brand").catalog().products
    assert "(no brand)" in brands["PRODUCT"].to_list() and (brands["CATEGORY"] == "brand").all()


def test_the_resource_opens_an_event_log_and_names_what_is_missing(log_dir):
    with pytest.raises(ValueError, match="DEMAND_EVENTS_PATH"):
        DemandSourceResource(kind="events").open()
    source = DemandSourceResource(kind="events", events_path=str(log_dir), events_level="brand", events_market="RU").open()
    assert isinstance(source, EventLogSource) and source.level == "brand" and source.catalog().countries == ("RU",)
    assert selection("data", source.provides) == "key:product_demand or key:product_engagement or group:features"
    assert selection("next_event", source.provides) == "key:next_event_model"


# --- engagement features ---------------------------------------------------------------------


def test_engagement_features_end_the_day_before():
    days = pl.date_range(dt.date(2024, 1, 1), dt.date(2024, 2, 29), eager=True)
    n = len(days)
    views = np.arange(n) * 3
    carts = np.arange(n) % 5
    bought = np.arange(n) % 2
    history = pl.DataFrame(
        {"DATE": days, "COUNTRY": "ALL", "PRODUCT": "p", "VIEWS": views, "CARTS": carts, "REMOVALS": 0, "PURCHASES": bought, "SESSIONS": 1, "USERS": 1}
    )
    start, end = dt.date(2024, 2, 1), dt.date(2024, 2, 10)
    out = engagement_features(history, start, end)
    assert list(out.columns[3:]) == engagement_columns() == list(ENGAGEMENT_FEATURES)
    i = (dt.date(2024, 2, 5) - days[0]).days  # a row's day, as an index into the history
    row = out.filter(pl.col("DATE") == dt.date(2024, 2, 5)).row(0, named=True)
    assert row["ENGAGEMENT_VIEWS_LAG_1"] == views[i - 1] and row["ENGAGEMENT_CARTS_LAG_7"] == carts[i - 7]
    assert row["ENGAGEMENT_VIEWS_MEAN_28_LAG_1"] == pytest.approx(views[i - 28 : i].mean())
    assert row["ENGAGEMENT_CARTS_MEAN_7_LAG_1"] == pytest.approx(carts[i - 7 : i].mean())
    assert row["ENGAGEMENT_CART_RATE_28_LAG_1"] == pytest.approx(bought[i - 28 : i].sum() / carts[i - 28 : i].sum())
    # nothing same-day: changing the day's own counts changes none of its features
    changed = history.with_columns(pl.when(pl.col("DATE") == dt.date(2024, 2, 5)).then(10_000).otherwise(pl.col("VIEWS")).alias("VIEWS"))
    assert engagement_features(changed, start, end).filter(pl.col("DATE") == dt.date(2024, 2, 5)).equals(out.filter(pl.col("DATE") == dt.date(2024, 2, 5)))
    # a missing look-back day gives nulls, not shifted values
    gap = engagement_features(history.filter(pl.col("DATE") != dt.date(2024, 2, 4)), start, end).filter(pl.col("DATE") == dt.date(2024, 2, 5))
    assert gap["ENGAGEMENT_VIEWS_LAG_1"].is_null().all() and gap["ENGAGEMENT_VIEWS_MEAN_7_LAG_1"].is_null().all()


# --- the graph on a log -------------------------------------------------------------------------


def _materialize(resources, provides, start: dt.date, end: dt.date):
    return dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        selection=dg.AssetSelection.from_string(selection("data", provides)),
        tags={"dagster/asset_partition_range_start": str(start), "dagster/asset_partition_range_end": str(end)},
        raise_on_error=False,
    )


@pytest.mark.slow
def test_the_whole_pipeline_runs_on_a_log_and_a_bad_log_changes_nothing(log_dir, tmp_path):
    source = DemandSourceResource(kind="events", events_path=str(log_dir))
    resources = small_resources(tmp_path / "delta", source=source)
    first, last = START, WORLD.end - dt.timedelta(days=1)
    result = _materialize(resources, source.open().provides, first, last)
    assert result.success
    store = resources["store"]
    engagement = store.read_all("product_engagement")
    assert engagement["DATE"].n_unique() == WORLD.days and engagement["VIEWS"].sum() > 10_000
    dataset = store.read_all("training_dataset")
    assert set(ENGAGEMENT_FEATURES) <= set(dataset.columns)
    late = dataset.filter(pl.col("DATE") >= first + dt.timedelta(days=30))
    assert late["ENGAGEMENT_VIEWS_MEAN_28_LAG_1"].is_not_null().mean() > 0.9
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["product_engagement_contract"] and checks["training_dataset_matches_source_domains"]

    # The model half on the log: backtest, champion, the day's forecast, the service.
    config = ForecastingConfig(models=["seasonal_naive", "lightgbm"], n_folds=1, horizon=7, history_days=56, lgbm_rounds=20)
    models = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        selection=["model_backtest", "champion_model"],
        run_config=dg.RunConfig(ops={"model_backtest": config}),
    )
    assert models.success
    forecast = dg.materialize(
        ALL_ASSETS, resources=resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, selection=["demand_forecast"], partition_key=str(last)
    )
    assert forecast.success
    forecasts = store.read_all("demand_forecast")
    product = forecasts["PRODUCT"][0]
    assert forecasts["DATE"].unique().to_list() == [last] and forecasts["PRODUCT"].n_unique() == dataset["PRODUCT"].n_unique()
    with TestClient(create_app(store, resources["mlflow_tracking"])) as client:
        got = client.get("/forecast", params={"country": "ALL", "product": product, "horizon": 7})
        assert got.status_code == 200, got.text
        assert len(got.json()["forecasts"]) == 7
    versions = {t: store.version(t) for t in ("product_demand", "product_engagement", "training_dataset")}

    # A corrupted copy of the log: refused by name, every stored table keeps its version.
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in log_dir.glob("*.csv"):
        shutil.copy(path, broken / path.name)
    rows = pl.read_csv(broken / FIRST_FILE, infer_schema=False)
    rows.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("wishlist")).otherwise(pl.col("event_type")).alias("event_type")).write_csv(
        broken / FIRST_FILE
    )
    bad = small_resources(tmp_path / "delta", source=DemandSourceResource(kind="events", events_path=str(broken)))
    again = _materialize(bad, frozenset({Domain.PRODUCT_DEMAND, Domain.PRODUCT_ENGAGEMENT}), first, first + dt.timedelta(days=6))
    assert not again.success
    failures = [e.step_failure_data.error.message for e in again.all_events if e.is_step_failure]
    assert any("event types are one of" in m and "wishlist" in m for m in failures), failures
    assert {t: store.version(t) for t in versions} == versions


def test_an_engagement_lag_past_the_origin_takes_the_same_weekdays_newest_value():
    """Forecasting 28 days ahead, yesterday's views are unknown after the first day: the value
    used is the one observed on the same weekday up to the origin, not the origin's own value
    repeated (a Sunday peak carried over every day over-forecast by 10% on the event world)."""
    from demand_assets.forecasting.panel import future_frame

    days = pl.date_range(dt.date(2024, 1, 1), dt.date(2024, 2, 29), eager=True)
    views = [100.0 if d.weekday() == 6 else 10.0 + d.weekday() for d in days]
    dataset = pl.DataFrame(
        {
            "DATE": days,
            "COUNTRY": "ALL",
            "PRODUCT": "p",
            "PRODUCT_DEMAND": 1,
            "IN_STOCK": True,
            "PRICE": 2.0,
            "PROMO": False,
            "ENGAGEMENT_VIEWS_LAG_1": [None, *views[:-1]],
        }
    )
    origin = dt.date(2024, 2, 4)  # a Sunday
    future = future_frame(dataset, origin, 14)
    got = dict(future.select("DATE", "ENGAGEMENT_VIEWS_LAG_1").iter_rows())
    for h in range(1, 15):
        day = origin + dt.timedelta(days=h)
        lagged = day - dt.timedelta(days=1)  # the day whose views the feature holds
        expected = 100.0 if lagged.weekday() == 6 else 10.0 + lagged.weekday()
        assert got[day] == expected, (h, got[day], expected)
