"""POST /predict with uploaded covariates: known ones (given on future rows) and observed ones
(read lagged) reach `lightgbm`, which enters auto's backtest; a covariate that drives demand
makes it win, a useless one costs auto next to nothing, broken covariates are a 4xx naming the
rule, column and lines, and the response says which model read which covariate."""

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from demand_assets.forecasting.covariates import Covariates, boosted_forecasts
from demand_assets.serving.app import create_app
from resources import DeltaStore

MONDAY = dt.date(2022, 1, 3)
WEEKS = 110
HORIZON = 4
LOCAL = ("seasonal_naive", "mean_last_4", "ets", "theta")


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    return TestClient(create_app(DeltaStore(root_uri=str(tmp_path_factory.mktemp("delta"))), models={}))


def _post(client: TestClient, csv: bytes, products: list[str], **params):
    return client.post("/predict", params=params, files={"file": ("h.csv", csv, "text/csv")}, data={"metadata": json.dumps({"products": products})})


def _world(seed: int, promo_lift: float, series: int = 16) -> pl.DataFrame:
    """Weekly rows of `series` products over WEEKS + HORIZON weeks: a level per product, noise,
    a random promotion in about a fifth of the weeks multiplying demand by 1 + `promo_lift`, and
    a NOISE column unrelated to demand; TEMP a slow observed series."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(series):
        level = rng.uniform(20, 200)
        promo = (rng.random(WEEKS + HORIZON) < 0.2).astype(float)
        units = level * (1 + promo_lift * promo) * rng.lognormal(0, 0.1, WEEKS + HORIZON)
        frames.append(
            pl.DataFrame(
                {
                    "DATE": [MONDAY + dt.timedelta(weeks=w) for w in range(WEEKS + HORIZON)],
                    "PRODUCT": f"P{i:02d}",
                    "UNITS": units.round(1),
                    "PROMO": promo,
                    "NOISE": rng.normal(0, 1, WEEKS + HORIZON).round(3),
                    "TEMP": (15 + 10 * np.sin(np.arange(WEEKS + HORIZON) / 8) + rng.normal(0, 1, WEEKS + HORIZON)).round(2),
                }
            )
        )
    return pl.concat(frames)


def _upload(world: pl.DataFrame, columns: list[str], known: list[str] = ()) -> bytes:
    """The first WEEKS weeks as history with `columns`, and the last HORIZON weeks as future rows
    (empty UNITS) that give the `known` columns only."""
    end = MONDAY + dt.timedelta(weeks=WEEKS)
    history = world.filter(pl.col("DATE") < end)
    future = world.filter(pl.col("DATE") >= end).with_columns(
        pl.lit(None, pl.Float64).alias("UNITS"), *(pl.lit(None, world[c].dtype).alias(c) for c in columns if c not in known)
    )
    return pl.concat([history, future]).select(pl.col("DATE").cast(pl.String), "PRODUCT", "UNITS", *columns).write_csv().encode()


def _future_mae(body: dict, world: pl.DataFrame) -> float:
    forecast = pl.DataFrame(body["forecasts"]).select(pl.col("product").alias("PRODUCT"), pl.col("period").str.to_date().alias("DATE"), "p50")
    scored = forecast.join(world, on=["PRODUCT", "DATE"])
    assert scored.height == len(body["forecasts"])
    return float((scored["UNITS"] - scored["p50"]).abs().mean())


def test_a_known_promotion_that_drives_demand_makes_lightgbm_win_auto_and_beat_the_local_models(client):
    world = _world(seed=3, promo_lift=1.0)
    products = world["PRODUCT"].unique().sort().to_list()
    response = _post(client, _upload(world, ["PROMO"], known=["PROMO"]), products)
    assert response.status_code == 200, response.text
    body = response.json()
    chosen = [s["model"] for s in body["series"]]
    assert chosen.count("lightgbm") >= 0.8 * len(chosen), chosen
    # In its backtest, lightgbm's error is well below the best local model's on most series.
    ratios = [s["backtest_mae"]["lightgbm"] / min(s["backtest_mae"][m] for m in LOCAL) for s in body["series"]]
    assert np.median(ratios) < 0.6, ratios
    # And on the four weeks after the upload, against auto on the same history without PROMO.
    without = _post(client, _upload(world, []), products).json()
    assert {s["model"] for s in without["series"]} <= set(LOCAL)
    assert _future_mae(body, world) < 0.6 * _future_mae(without, world)


def test_a_useless_noise_covariate_costs_auto_next_to_nothing(client):
    # Over three uploads (ending 0, 4 and 8 weeks earlier), auto with a pure-noise known column
    # scores within 5% of auto without it on the weeks that followed.
    world = _world(seed=11, promo_lift=0.0)
    products = world["PRODUCT"].unique().sort().to_list()
    with_noise, without = [], []
    for cut in (0, 4, 8):
        part = world.filter(pl.col("DATE") < MONDAY + dt.timedelta(weeks=WEEKS + HORIZON - cut)).with_columns(
            (pl.col("DATE") + dt.timedelta(weeks=cut)).alias("DATE")
        )
        noisy = _post(client, _upload(part, ["NOISE"], known=["NOISE"]), products)
        plain = _post(client, _upload(part, []), products)
        assert noisy.status_code == plain.status_code == 200, noisy.text
        assert any(c["column"] == "NOISE" and c["used_by"] == ["lightgbm"] for c in noisy.json()["covariates"])
        with_noise.append(_future_mae(noisy.json(), part))
        without.append(_future_mae(plain.json(), part))
    assert np.mean(with_noise) <= 1.05 * np.mean(without), (with_noise, without)


def test_the_response_says_which_covariates_were_inferred_and_which_model_read_them(client):
    world = _world(seed=3, promo_lift=1.0, series=6).with_columns(pl.lit("north").alias("REGION"))
    products = world["PRODUCT"].unique().sort().to_list()
    body = _post(client, _upload(world, ["PROMO", "TEMP", "REGION"], known=["PROMO"]), products).json()
    columns = {c["column"]: c for c in body["covariates"]}
    assert columns["PROMO"]["kind"] == "known" and columns["TEMP"]["kind"] == "observed"
    assert columns["PROMO"]["used_by"] == columns["TEMP"]["used_by"] == ["lightgbm"]
    assert columns["REGION"]["kind"] is None and columns["REGION"]["reason"] == "no value is a number" and columns["REGION"]["used_by"] == []
    for s in body["series"]:
        assert s["covariates"] == (["PROMO", "TEMP"] if s["model"] == "lightgbm" else [])
    assert columns["PROMO"]["chosen_for"] == sum(s["model"] == "lightgbm" for s in body["series"]) > 0
    # Declared: only the declared columns; TEMP observed, PROMO left out.
    declared = _post(client, _upload(world, ["PROMO", "TEMP"], known=["PROMO"]), products, observed="TEMP").json()
    assert {c["column"]: c["kind"] for c in declared["covariates"]} == {"PROMO": None, "TEMP": "observed"}
    # An empty declaration uses none, and auto is the local models alone, as without covariates.
    none = _post(client, _upload(world, ["PROMO"], known=["PROMO"]), products, known="").json()
    assert none["covariates"][0]["kind"] is None and all(set(s["backtest_mae"]) == set(LOCAL) for s in none["series"])
    # A local model asked for by name reads none of them.
    ets = _post(client, _upload(world, ["PROMO"], known=["PROMO"]), products, model="ets").json()
    assert ets["covariates"][0]["used_by"] == [] and all(s["covariates"] == [] for s in ets["series"])


HEADER = "DATE,PRODUCT,UNITS,PROMO,CPI"


def _csv(lines: list[str]) -> bytes:
    return "\n".join([HEADER, *lines]).encode()


def _history(weeks: int = 30) -> list[str]:
    return [f"{MONDAY + dt.timedelta(weeks=w)},A,{10 + w % 3},{w % 2},{100 + w}" for w in range(weeks)]


def _future(weeks: int = 30, promo: tuple = (1, 0, 1, 0)) -> list[str]:
    return [f"{MONDAY + dt.timedelta(weeks=weeks + i)},A,,{p}," for i, p in enumerate(promo)]


@pytest.mark.parametrize(
    "lines, params, status, phrases",
    [
        (
            _history()[:5] + ["2022-02-07,A,12,lots,105"] + _history()[6:] + _future(),
            {},
            400,
            ["rule 'covariates are numbers (or true/false)' on column PROMO", "offending line(s) [7]"],
        ),
        (_history()[:9] + ["2022-03-07,A,12,1,inf"] + _history()[10:], {}, 400, ["rule 'covariates are finite numbers' on column CPI", "[11]"]),
        (_history() + _future(promo=(1, 0)), {}, 422, ["rule 'known covariates are given for every forecast period' on column PROMO", "2022-08-15"]),
        (_history(), {"known": "PROMO"}, 422, ["known covariates are given for every forecast period", "column PROMO", "4 of 4"]),
        (_history(), {"known": "PRICE"}, 400, ["rule 'declared covariates are columns of the upload' on column PRICE", "['PROMO', 'CPI']"]),
        (_history(), {"known": "PROMO", "observed": "promo"}, 400, ["rule 'a covariate is known or observed, not both' on column PROMO"]),
        (_history(), {"observed": "UNITS"}, 400, ["rule 'covariates are further columns' on column UNITS"]),
        (_history()[:3] + ["2022-01-24,A,,1,103"] + _history()[4:], {}, 400, ["rule 'units are numbers >= 0' on column UNITS"]),
    ],
    ids=[
        "not-a-number",
        "not-finite",
        "known-missing-periods",
        "declared-known-without-future",
        "unknown-column",
        "both-kinds",
        "reserved",
        "empty-units-mid-history",
    ],
)
def test_broken_covariates_are_a_4xx_naming_rule_column_and_lines(client, lines, params, status, phrases):
    response = _post(client, _csv(lines), ["A"], **params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for phrase in phrases:
        assert phrase in error, error


def test_history_rows_may_leave_a_covariate_empty_and_future_rows_only_need_the_known_ones(client):
    lines = _history()
    lines[4] = lines[4].rsplit(",", 1)[0] + ","  # no CPI that week
    response = _post(client, _csv(lines + _future()), ["A"], model="lightgbm")
    assert response.status_code == 200, response.text
    body = response.json()
    assert {c["column"]: c["kind"] for c in body["covariates"]} == {"PROMO": "known", "CPI": "observed"}
    assert [f["period"] for f in body["forecasts"]] == [str(MONDAY + dt.timedelta(weeks=30 + i)) for i in range(4)]


def test_the_global_model_reads_nothing_after_an_origin_but_known_covariates():
    rng = np.random.default_rng(0)
    ys = [rng.poisson(20, 80).astype(float) for _ in range(5)]
    keys = [("ALL", f"P{i}") for i in range(5)]
    last = MONDAY + dt.timedelta(weeks=79)
    periods = [MONDAY + dt.timedelta(weeks=w) for w in range(84)]

    def run(ys, promo):
        values = pl.DataFrame({"COUNTRY": "ALL", "PRODUCT": [k[1] for k in keys for _ in periods], "PERIOD": periods * 5, "PROMO": promo})
        return boosted_forecasts(ys, keys, last, 4, "weekly", Covariates(values, ("PROMO",)), cuts=[0, 8])

    promo = rng.integers(0, 2, 5 * 84).astype(float)
    base = run(ys, promo)
    # Demand after the backtest origin (80 - 8) changes: that window's forecasts do not.
    later = [np.r_[y[:72], y[72:] * 3] for y in ys]
    np.testing.assert_array_equal(run(later, promo)[8], base[8])
    # A known covariate at the forecast periods is read.
    flipped = promo.reshape(5, 84).copy()
    flipped[:, 80:] = 1 - flipped[:, 80:]
    assert not np.array_equal(run(ys, flipped.ravel())[0], base[0])
