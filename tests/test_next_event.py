"""Next-event prediction from sessions (issue 21): sequences and their targets, the baselines,
networks that read only the prefix, the models against the event world's truth, the at-risk
threshold, and the graph on a log (next_event_model registered with its champion,
purchase_intent contract-checked, drift that requests retraining, POST /next-event)."""

import datetime as dt
import shutil

import dagster as dg
import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from contracts import SourceFormatError
from demand_assets.definitions import ALL_ASSETS
from demand_assets.domains.automation import retraining_sensor
from demand_assets.domains.next_event import NextEventConfig
from demand_assets.domains.selections import selection
from demand_assets.next_event.baselines import LightGBMPrefix, MajorityClass, MarkovChain
from demand_assets.next_event.evaluation import calibration_error, next_event_scores
from demand_assets.next_event.registry import NEXT_EVENT_REGISTERED_MODEL
from demand_assets.next_event.sequences import SequenceReference, session_events, time_split
from demand_assets.next_event.suite import at_risk_threshold, choose_champion, flag_scores, truth_probabilities
from demand_assets.serving.app import create_app
from demand_assets.sources.events import NEXT_CLASSES, EventWorld, write_event_files
from demand_assets.sources.events.reader import read_events
from resources import DemandSourceResource, MonitoringSettings
from tests.conftest import small_resources

T0 = dt.datetime(2024, 1, 10, 12, 0, 0)


def _events(rows: list[tuple]) -> pl.DataFrame:
    """(session, seconds after T0, type, product, price) rows as a log's events."""
    return pl.DataFrame(
        {
            "user_session": [r[0] for r in rows],
            "event_time": [T0 + dt.timedelta(seconds=r[1]) for r in rows],
            "event_type": [r[2] for r in rows],
            "product_id": [r[3] for r in rows],
            "price": [float(r[4]) for r in rows],
            "user_id": ["u-" + r[0] for r in rows],
            "category_id": ["c"] * len(rows),
            "brand": [None] * len(rows),
        },
        schema_overrides={"event_time": pl.Datetime("us"), "brand": pl.String},
    )


SESSIONS = _events(
    [
        ("b", 5, "view", "p9", 3.0),
        ("a", 60, "purchase", "p1", 8.0),  # out of order on purpose: rows are put in time order per session
        ("a", 0, "view", "p1", 10.0),
        ("a", 30, "cart", "p1", 8.0),
        ("a", 100, "view", "p2", 5.0),
        ("b", 65, "view", "p9", 3.0),
    ]
)


def test_each_event_gets_what_was_known_then_and_what_followed():
    reference = SequenceReference.fit(SESSIONS)
    frame = session_events(SESSIONS, reference).frame
    a = frame.filter(pl.col("user_session") == "a")
    assert a["event_type"].to_list() == ["view", "cart", "purchase", "view"]
    assert a["POSITION"].to_list() == [0, 1, 2, 3]
    assert [NEXT_CLASSES[i] for i in a["NEXT"]] == ["cart", "purchase", "view", "end"]
    assert a["PURCHASE_LATER"].to_list() == [True, True, False, False]  # a purchase still to come, not the one at hand
    assert a["N_CART"].to_list() == [0, 1, 1, 1] and a["N_PURCHASE"].to_list() == [0, 0, 1, 1]
    assert a["N_PRODUCTS"].to_list() == [1, 1, 1, 2] and a["SAME_PRODUCT"].to_list() == [0.0, 1.0, 1.0, 0.0]
    assert a["PREV_TYPE"].to_list()[:2] == [4, 0]  # 4: nothing before the first event
    assert np.allclose(a["LOG_GAP"].to_numpy(), np.log1p([0, 30, 30, 40]))
    # p1's median price over the window is 8.0: the first view at 10.0 is above it
    assert a["REL_PRICE"][0] == pytest.approx(np.log(10.0 / 8.0))
    b = frame.filter(pl.col("user_session") == "b")
    assert [NEXT_CLASSES[i] for i in b["NEXT"]] == ["view", "end"] and not b["PURCHASE_LATER"].any()
    # a product the reference never saw: neutral price, popularity bucket 0
    unseen = session_events(_events([("c", 0, "view", "new", 4.0)]), reference).frame
    assert unseen["REL_PRICE"][0] == 0.0 and unseen["POP_BUCKET"][0] == 0


def test_a_session_is_on_one_side_of_the_time_split():
    crossing = _events(
        [("late", 86_400 - 100 - 12 * 3600, "view", "p", 1.0), ("late", 86_400 + 50 - 12 * 3600, "cart", "p", 1.0), ("next", 86_400, "view", "p", 1.0)]
    )
    train, test = time_split(crossing, dt.date(2024, 1, 11))
    assert train["user_session"].unique().to_list() == ["late"] and train.height == 2  # started before the cut: whole, in train
    assert test["user_session"].unique().to_list() == ["next"]


@pytest.fixture(scope="module")
def world_split():
    world = EventWorld(seed=3, days=35, sessions_per_day=900, n_products=300, n_users=15_000)
    days = [world.day(world.start + dt.timedelta(days=i)) for i in range(world.days)]
    events = pl.concat([d.events for d in days]).unique(maintain_order=True)
    truth = pl.concat([d.next_event for d in days])
    train_events, test_events = time_split(events, world.start + dt.timedelta(days=28))
    reference = SequenceReference.fit(train_events)
    return session_events(train_events, reference), session_events(test_events, reference), truth


def test_the_markov_chain_counts_transitions_and_its_purchase_probability_is_the_chains(world_split):
    train, _, _ = world_split
    chain = MarkovChain().fit(train)
    kinds, follow = train.frame["TYPE"].to_numpy(), train.next_class()
    for t in range(4):
        observed = np.bincount(follow[kinds == t], minlength=5) / (kinds == t).sum()
        assert np.abs(chain.transitions[t] - observed).max() < 0.01
    # P(a purchase before the end) from a cart, by walking the fitted chain many times
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(20_000):
        state = 1
        while True:
            state = rng.choice(5, p=chain.transitions[state])
            if state in (3, 4):
                hits += state == 3
                break
    assert abs(hits / 20_000 - chain.reach_purchase[1]) < 0.015


def test_models_against_the_worlds_noise_floor(world_split):
    """LightGBM on prefix features beats the Markov chain by > 0.05 macro-F1, comes within 5% of
    the Bayes-optimal macro-F1 and is calibrated; the majority class is the floor of them all."""
    train, test, truth = world_split
    bayes = next_event_scores(truth_probabilities(test, truth), test.next_class())
    scores = {}
    for model in (MajorityClass(), MarkovChain(), LightGBMPrefix(rounds=150, learning_rate=0.15)):
        pred = model.fit(train).predict(test)
        scores[model.name] = next_event_scores(pred.next, test.next_class())
    assert scores["majority"]["macro_f1"] < scores["markov"]["macro_f1"] < scores["lightgbm"]["macro_f1"]
    assert scores["lightgbm"]["macro_f1"] >= scores["markov"]["macro_f1"] + 0.05
    assert scores["lightgbm"]["macro_f1"] >= 0.95 * bayes["macro_f1"]
    assert bayes["log_loss"] <= scores["lightgbm"]["log_loss"] < scores["markov"]["log_loss"] < scores["majority"]["log_loss"]
    assert scores["lightgbm"]["ece"] <= 0.05
    metrics = pl.DataFrame([{"MODEL": k, **v} for k, v in scores.items()])
    assert choose_champion(metrics)[0] == "lightgbm"
    assert choose_champion(metrics.filter(pl.col("MODEL") != "lightgbm"))[0] is None  # the majority class does not beat Markov


@pytest.mark.parametrize("name", ["gru", "cnn_bigru"])
def test_a_network_reads_only_the_prefix(world_split, name):
    """Changing or cutting a session's later events leaves every earlier prediction as it was:
    the bidirectional layer reads a window that ends at the event, never the session's future."""
    from demand_assets.next_event.networks import CnnBiGRU, NetworkSettings, SessionGRU

    train, _, _ = world_split
    small = train.frame.filter(pl.col("user_session").is_in(train.frame["user_session"].unique().sort().head(600).implode()))
    from demand_assets.next_event.sequences import Sequences

    seqs = Sequences(small)
    model = (SessionGRU if name == "gru" else CnnBiGRU)(NetworkSettings(epochs=1, hidden=16, channels=8))
    model.fit(seqs)
    long = small.filter(pl.col("POSITION").max().over("user_session") >= 5)
    session = long["user_session"][0]
    one = Sequences(small.filter(pl.col("user_session") == session))
    full = model.predict(one)
    cut = Sequences(one.frame.filter(pl.col("POSITION") <= 2))
    changed = Sequences(one.frame.with_columns(pl.when(pl.col("POSITION") > 2).then(pl.lit(1, dtype=pl.Int8)).otherwise(pl.col("TYPE")).alias("TYPE")))
    for other in (model.predict(cut), model.predict(changed)):
        assert np.allclose(other.next[:3], full.next[:3], atol=1e-5) and np.allclose(other.purchase[:3], full.purchase[:3], atol=1e-5)
    assert not np.allclose(model.predict(changed).next[3:], full.next[3:])  # the later events do matter to later predictions
    assert np.allclose(full.next.sum(axis=1), 1.0)


def test_the_at_risk_threshold_separates_abandoners_and_calibration_error_measures_the_gap():
    rng = np.random.default_rng(0)
    later = rng.random(4000) < 0.35
    score = np.where(later, rng.uniform(0.3, 1.0, later.size), rng.uniform(0.0, 0.5, later.size))
    threshold = at_risk_threshold(score, later)
    assert 0.3 <= threshold <= 0.5
    flags = flag_scores(score < threshold, ~later)
    assert flags["precision"] > 0.85 and flags["recall"] > 0.85
    # a calibrated forecaster has ECE near 0; one that says 0.9 for a coin toss has ECE 0.4
    p = rng.random(20_000)
    assert calibration_error(p, rng.random(p.size) < p) < 0.02
    assert calibration_error(np.full(5000, 0.9), rng.random(5000) < 0.5) == pytest.approx(0.4, abs=0.03)


# --- the graph on a log -------------------------------------------------------------------------

START = dt.date(2024, 1, 1)
WORLD = EventWorld.small(days=42, start=START)


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("next_event_log")
    write_event_files(directory, WORLD, progress=lambda _: None)
    return directory


def test_read_events_keeps_each_event_once_and_refuses_a_bad_row(log_dir, tmp_path):
    day = START + dt.timedelta(days=3)
    events = read_events(log_dir, day, day + dt.timedelta(days=1))
    assert events.height == events.unique().height and set(events["event_type"].unique()) <= {"view", "cart", "remove_from_cart", "purchase"}
    # every event dated that day, once: the day's sessions and the previous day's that ran past midnight
    generated = pl.concat([WORLD.day(day - dt.timedelta(days=1)).events, WORLD.day(day).events]).unique()
    assert events.height == generated.filter(pl.col("event_time").dt.date() == day).height
    bad = tmp_path / "bad"
    shutil.copytree(log_dir, bad)
    rows = pl.read_csv(bad / "2024-Jan.csv", infer_schema=False)
    rows.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("-3.5")).otherwise(pl.col("price")).alias("price")).write_csv(bad / "2024-Jan.csv")
    with pytest.raises(SourceFormatError, match=r"prices are >= 0"):
        read_events(bad, START, START + dt.timedelta(days=5))


def _drifted_copy(log_dir, target, days: list[dt.date]):
    """The log with views and carts swapped on `days`: sessions that no longer behave as trained."""
    shutil.copytree(log_dir, target)
    path = target / "2024-Feb.csv"
    rows = pl.read_csv(path, infer_schema=False)
    on = pl.col("event_time").str.slice(0, 10).is_in([str(d) for d in days])
    swapped = pl.when(on & (pl.col("event_type") == "view")).then(pl.lit("cart")).when(on & (pl.col("event_type") == "cart")).then(pl.lit("view"))
    rows.with_columns(swapped.otherwise(pl.col("event_type")).alias("event_type")).write_csv(path)
    return target


@pytest.mark.slow
def test_next_event_graph_registers_a_champion_scores_days_flags_drift_and_serves(log_dir, tmp_path):
    source = DemandSourceResource(kind="events", events_path=str(log_dir))
    resources = small_resources(tmp_path / "delta", source=source)
    instance = dg.DagsterInstance.ephemeral()
    last = WORLD.end - dt.timedelta(days=1)
    data = dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.from_string(selection("data", source.open().provides)),
        tags={"dagster/asset_partition_range_start": str(START), "dagster/asset_partition_range_end": str(last)},
        raise_on_error=False,
    )
    assert data.success

    # Before a champion exists the service says why it cannot answer.
    tracking = resources["mlflow_tracking"]
    body = {"events": [{"event_type": "view", "product_id": "1", "price": 3.5, "event_time": "2024-02-10T10:00:00"}]}
    with TestClient(create_app(resources["store"], tracking)) as client:
        refused = client.post("/next-event", json=body)
        assert refused.status_code == 503 and "next_event_model" in refused.json()["error"]

    config = NextEventConfig(train_days=28, test_days=7, models=["majority", "markov", "lightgbm", "cnn_bigru"], epochs=1, lgbm_rounds=60)
    model_run = dg.materialize(
        ALL_ASSETS, resources=resources, instance=instance, selection=["next_event_model"], run_config=dg.RunConfig(ops={"next_event_model": config})
    )
    meta = {k: v.value for k, v in model_run.asset_materializations_for_node("next_event_model")[0].metadata.items()}
    metrics = resources["store"].read_all("next_event_metrics")
    assert set(metrics["MODEL"]) == {"majority", "markov", "lightgbm", "cnn_bigru", "bayes_optimal"}
    champion = metrics.filter(pl.col("CHAMPION"))
    assert champion.height == 1 and champion["LOG_LOSS"][0] < metrics.filter(pl.col("MODEL") == "markov")["LOG_LOSS"][0]
    assert meta["champion"].startswith(champion["MODEL"][0]) and meta["trained_until"] == str(last)
    registry = tracking.for_model(NEXT_EVENT_REGISTERED_MODEL)
    assert registry.champion_version() == champion["MODEL_VERSION"][0]
    client = tracking.client()
    runs = client.search_runs([tracking.experiment_id()], "tags.stage = 'next_event'")
    assert len(runs) == 4
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"confusion_matrix.png", "reliability_diagram.png"} <= artifacts

    day = last - dt.timedelta(days=1)
    scored = dg.materialize(ALL_ASSETS, resources=resources, instance=instance, selection=["purchase_intent"], partition_key=str(day))
    checks = {e.asset_check_key.name: e for e in scored.get_asset_check_evaluations()}
    assert checks["purchase_intent_contract"].passed and checks["next_event_drift"].passed
    intent = resources["store"].read_all("purchase_intent")
    assert intent["DATE"].unique().to_list() == [day] and intent.height > 50
    assert (intent["PRODUCTS_IN_CART"] >= 0).all() and intent["AT_RISK"].any() and not intent["AT_RISK"].all()
    # flagged sessions abandon more often than the rest
    rates = intent.group_by("AT_RISK").agg(pl.col("PURCHASED").mean()).sort("AT_RISK")["PURCHASED"].to_list()
    assert rates[1] < rates[0]

    # A day whose sessions no longer behave as trained: the drift check fails and the sensor asks for retraining.
    drifted = _drifted_copy(log_dir, tmp_path / "drifted", [last, last + dt.timedelta(days=1)])
    moved = dict(resources, source=DemandSourceResource(kind="events", events_path=str(drifted)))
    again = dg.materialize(ALL_ASSETS, resources=moved, instance=instance, selection=["purchase_intent"], partition_key=str(last))
    drift = {e.asset_check_key.name: e for e in again.get_asset_check_evaluations()}["next_event_drift"]
    assert not drift.passed and "log loss" in drift.description
    tick = retraining_sensor(dg.build_sensor_context(instance=instance, resources={"monitoring": MonitoringSettings()}))
    requests = [r for r in tick.run_requests if r.tags["demand/retrain_trigger"] == "next_event_drift"]
    assert len(requests) == 1 and requests[0].asset_selection == [dg.AssetKey("next_event_model")]
    quiet = retraining_sensor(dg.build_sensor_context(instance=instance, cursor=tick.cursor, resources={"monitoring": MonitoringSettings()}))
    assert not [r for r in quiet.run_requests if r.tags["demand/retrain_trigger"] == "next_event_drift"]

    # The service answers from the champion; bad input is a 422 naming the rule.
    with TestClient(create_app(resources["store"], tracking)) as client:
        events = [
            {"event_type": "view", "product_id": "3700001", "price": 12.0, "event_time": "2024-02-10T10:00:00Z"},
            {"event_type": "cart", "product_id": "3700001", "price": 12.0, "event_time": "2024-02-10T10:00:40Z"},
        ]
        got = client.post("/next-event", json={"events": events})
        assert got.status_code == 200, got.text
        answer = got.json()
        assert sum(answer["next_event"].values()) == pytest.approx(1.0, abs=1e-4) and set(answer["next_event"]) == set(NEXT_CLASSES)
        assert answer["model_version"] == champion["MODEL_VERSION"][0] and answer["has_cart"] and 0 <= answer["p_purchase"] <= 1
        assert "next_event=" in got.headers["X-Demand-Models"]
        for bad, rule in (
            ({"events": []}, "at least 1"),
            ({"events": [dict(events[0], event_type="wishlist")]}, "view"),
            ({"events": [events[1], events[0]]}, "event times are in order"),
            ({"events": [events[0]] * 201}, "at most 200"),
            ({"events": [dict(events[0], price=-1)]}, "greater than or equal to 0"),
        ):
            refused = client.post("/next-event", json=bad)
            assert refused.status_code == 422 and rule in refused.text, (bad, refused.text[:300])
