"""POST /predict with local models fitted on the upload: the calendar runs every product to the
upload's end and drops partial weeks, `model=auto` picks per series by a backtest and says so,
and the service answers without any registered model (503 only for an explicit model=tcn)."""

import datetime as dt
import json
import warnings

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from demand_assets.forecasting.local import BACKTEST_FOLDS, forecast_local, periods_from_daily, point_forecast, point_forecasts
from demand_assets.serving.app import create_app
from resources import DeltaStore

MONDAY = dt.date(2024, 1, 1)


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    return TestClient(create_app(DeltaStore(root_uri=str(tmp_path_factory.mktemp("delta"))), models={}))


def _post(client: TestClient, csv: bytes, products: list[str], **params):
    return client.post("/predict", params=params, files={"file": ("h.csv", csv, "text/csv")}, data={"metadata": json.dumps({"products": products})})


def _csv(rows: list[tuple[dt.date, str, float]]) -> bytes:
    return pl.DataFrame(rows, schema=["DATE", "PRODUCT", "UNITS"], orient="row").with_columns(pl.col("DATE").cast(pl.String)).write_csv().encode()


def _daily(days: int, units, product: str = "A", start: dt.date = MONDAY) -> list[tuple[dt.date, str, float]]:
    return [(start + dt.timedelta(days=d), product, float(units(d))) for d in range(days)]


def test_a_product_that_stopped_selling_is_forecast_from_the_uploads_end(client):
    # A sells daily for 20 weeks; B stops after 10 weeks. The upload ends on a Sunday.
    rows = _daily(140, lambda d: 5) + _daily(70, lambda d: 5, "B")
    body = _post(client, _csv(rows), ["A", "B"], horizon=4).json()
    first = {f["product"]: f["period"] for f in body["forecasts"] if f["step"] == 1}
    assert first == {"A": "2024-05-20", "B": "2024-05-20"}  # the Monday after the upload's last day
    b = [f for f in body["forecasts"] if f["product"] == "B"]
    assert all(f["p50"] < 1.0 for f in b)  # ten weeks of zeros: no longer selling 35 a week
    assert {s["product"]: s["periods"] for s in body["series"]} == {"A": 20, "B": 20}


def test_a_transaction_log_product_that_stopped_selling_is_forecast_from_the_logs_end(client):
    header = "Transaction ID,Date,Customer ID,Gender,Age,Product Category,Quantity,Price per Unit,Total Amount"
    lines = [header]
    for d in range(84):
        day = MONDAY + dt.timedelta(days=d)
        lines.append(f"T{d},{day},C1,Male,30,Beauty,2,50,100")
        if d < 28:
            lines.append(f"U{d},{day},C1,Male,30,Clothing,1,30,30")
    body = _post(client, "\n".join(lines).encode(), ["Beauty@50.00", "Clothing@30.00"], horizon=2).json()
    assert {f["period"] for f in body["forecasts"] if f["step"] == 1} == {"2024-03-25"}
    assert body["periods"]["last"] == "2024-03-18" and body["periods"]["count"] == 12


def test_a_partial_last_week_is_dropped_and_reported(client):
    rows = _daily(12 * 7 + 3, lambda d: 4)  # 12 full weeks, then Monday to Wednesday
    body = _post(client, _csv(rows), ["A"], horizon=2).json()
    periods = body["periods"]
    assert periods["last"] == "2024-03-18" and periods["count"] == 12
    assert periods["dropped"] == [{"period": "2024-03-25", "days_covered": 3, "reason": "partial last week: the upload covers 3 of its 7 days"}]
    assert [f["period"] for f in body["forecasts"]] == ["2024-03-25", "2024-04-01"]
    assert body["forecasts"][0]["p50"] == pytest.approx(28.0, rel=0.05)  # a full week of 4 a day, not 3 days' worth


def test_a_partial_first_week_is_dropped_too():
    daily = pl.DataFrame({"COUNTRY": "ALL", "PRODUCT": "A", "DATE": [dt.date(2024, 1, 4) + dt.timedelta(days=d) for d in range(25)], "UNITS": 1.0})
    panel, calendar = periods_from_daily(daily, "weekly")
    assert panel["PERIOD"].to_list() == [dt.date(2024, 1, 8), dt.date(2024, 1, 15), dt.date(2024, 1, 22)]
    assert [(d.period, d.days_covered) for d in calendar.dropped] == [(dt.date(2024, 1, 1), 4)]


def test_weekly_rows_on_fridays_are_weeks_labelled_by_their_monday(client):
    fridays = [(dt.date(2024, 1, 5) + dt.timedelta(weeks=w), p, 100.0) for w in range(20) for p in ("S1", "S2") if not (p == "S2" and w >= 15)]
    body = _post(client, _csv(fridays), ["S1", "S2"], horizon=1, model="mean_last_4").json()
    assert body["periods"]["dropped"] == []
    forecasts = {f["product"]: f for f in body["forecasts"]}
    assert forecasts["S1"]["period"] == forecasts["S2"]["period"] == "2024-05-20"
    assert forecasts["S1"]["p50"] == pytest.approx(100.0) and forecasts["S2"]["p50"] == pytest.approx(0.0)


def _panel(values: np.ndarray, product: str = "A") -> pl.DataFrame:
    return pl.DataFrame({"COUNTRY": "ALL", "PRODUCT": product, "PERIOD": [MONDAY + dt.timedelta(days=d) for d in range(values.size)], "UNITS": values})


def test_auto_picks_seasonal_naive_on_a_seasonal_series_and_a_level_model_on_a_flat_noisy_one():
    # 90 weeks: a yearly swing of +-50 around 60 (too short for Theta's deseasonalizing, which
    # needs two years), and a flat series of noise around 20.
    rng = np.random.default_rng(0)
    weeks = np.arange(90)
    seasonal = 60 + 50 * np.sin(2 * np.pi * weeks / 52) + rng.normal(0, 2, 90)
    flat = rng.normal(20, 6, 90).clip(0, None)
    panel = pl.concat([_panel(seasonal, "SEASONAL"), _panel(flat, "FLAT")]).with_columns(
        (pl.lit(MONDAY) + pl.duration(weeks=pl.int_range(pl.len()).over("PRODUCT"))).alias("PERIOD")
    )
    result = forecast_local(panel, 4, "weekly")
    chosen = dict(zip(result.choices["PRODUCT"], result.choices["MODEL"], strict=True))
    assert chosen["SEASONAL"] == "seasonal_naive"
    assert chosen["FLAT"] in ("mean_last_4", "ets", "theta")
    flat_p50 = result.forecasts.filter(pl.col("PRODUCT") == "FLAT")["P50"]
    assert ((flat_p50 - 20).abs() < 6).all()
    seasonal_p50 = result.forecasts.filter(pl.col("PRODUCT") == "SEASONAL").sort("STEP")["P50"].to_numpy()
    expected = 60 + 50 * np.sin(2 * np.pi * np.arange(90, 94) / 52)
    assert np.abs(seasonal_p50 - expected).max() < 8


def test_quantiles_come_from_backtest_errors_and_are_ordered_and_non_negative():
    rng = np.random.default_rng(1)
    result = forecast_local(_panel(rng.poisson(3, 200).astype(float)), 4, "weekly", model="mean_last_4")
    f = result.forecasts
    assert (f["P10"] >= 0).all() and (f["P10"] <= f["P50"]).all() and (f["P50"] <= f["P90"]).all()
    assert (f["P90"] > f["P50"]).all() and result.choices["FOLDS"][0] == BACKTEST_FOLDS


def test_seasonal_naive_falls_back_to_the_last_value_without_a_full_season():
    assert point_forecast("seasonal_naive", np.array([1.0, 2.0, 3.0]), 2, "weekly").tolist() == [3.0, 3.0]
    assert point_forecast("seasonal_naive", np.arange(14.0), 3, "daily").tolist() == [7.0, 8.0, 9.0]


def test_without_a_registered_model_auto_answers_200_and_names_its_choices(client):
    rows = _daily(120, lambda d: 3 + (d % 7 == 5) * 10) + _daily(120, lambda d: 2 + d % 3, "B")
    for frequency in ("daily", "weekly"):
        response = _post(client, _csv(rows), ["A", "B"], horizon=5, frequency=frequency)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == "auto" and body["model_version"] == "fitted per request"
        assert {s["product"] for s in body["series"]} == {"A", "B"}
        assert all(s["model"] in ("seasonal_naive", "mean_last_4", "ets", "theta") and s["reason"] for s in body["series"])
        assert all(set(s["backtest_mae"]) == {"seasonal_naive", "mean_last_4", "ets", "theta"} for s in body["series"])
        assert {f["model"] for f in body["forecasts"]} <= {s["model"] for s in body["series"]}
        assert response.headers["X-Demand-Models"] == "none"


def test_an_explicit_model_is_used_for_every_series(client):
    rows = _daily(70, lambda d: 3) + _daily(70, lambda d: 1 + d % 2, "B")
    body = _post(client, _csv(rows), ["A", "B"], model="ets").json()
    assert {s["model"] for s in body["series"]} == {"ets"} and {f["model"] for f in body["forecasts"]} == {"ets"}


def test_an_explicit_tcn_without_a_registered_one_is_a_503(client):
    response = _post(client, _csv(_daily(70, lambda d: 3)), ["A"], model="tcn")
    assert response.status_code == 503 and "no weekly model is registered" in response.json()["error"]


def test_history_without_one_complete_week_is_a_422(client):
    response = _post(client, _csv(_daily(4, lambda d: 3)), ["A"])
    assert response.status_code == 422, response.text


def _reference_series() -> dict[str, tuple[np.ndarray, int]]:
    """Name -> (series, season): a random-walk level, a linear trend, a yearly weekly season
    (deseasonalized by Theta), Poisson counts, and daily series with a day-of-week pattern."""
    rng = np.random.default_rng(7)
    t150, t140, t200 = np.arange(150), np.arange(140), np.arange(200)
    return {
        "level": (50 + np.cumsum(rng.normal(0, 2, 150)) + rng.normal(0, 5, 150), 52),
        "trend": (100 + 0.8 * t150 + rng.normal(0, 6, 150), 52),
        "yearly": (80 + 30 * np.sin(2 * np.pi * t140 / 52) + 0.2 * t140 + rng.normal(0, 5, 140), 52),
        "counts": (rng.poisson(3, 156).astype(float), 52),
        "day_of_week": (20 + 8 * (t200 % 7 == 5) + 4 * (t200 % 7 == 6) + np.cumsum(rng.normal(0, 0.3, 200)) + rng.normal(0, 2, 200), 7),
        "day_of_week_year": (30 + 10 * (np.arange(365) % 7 >= 5) + rng.normal(0, 3, 365), 7),
    }


def test_numpy_ets_and_theta_match_statsmodels():
    """The numpy fits (a grid of smoothing parameters) against statsmodels' own optimiser on the
    same models: every point forecast within 1% of the series' mean level for simple smoothing
    and Theta, 3% for day-of-week seasonal smoothing (statsmodels' local optimum may differ
    slightly from the grid's best)."""
    from statsmodels.tsa.forecasting.theta import ThetaModel
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    for name, (y, season) in _reference_series().items():
        frequency = "daily" if season == 7 else "weekly"
        level = float(np.abs(y).mean())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theta = ThetaModel(y, period=season, deseasonalize=y.size >= 2 * season).fit().forecast(6)
            if frequency == "weekly":
                ets = ExponentialSmoothing(y, initialization_method="estimated").fit().forecast(6)
                tolerance = 0.01
            else:
                ets = ExponentialSmoothing(y, seasonal="add", seasonal_periods=7, initialization_method="heuristic").fit(use_brute=False).forecast(6)
                tolerance = 0.03
        ours_ets, ours_theta = point_forecast("ets", y, 6, frequency), point_forecast("theta", y, 6, frequency)
        assert np.abs(ours_ets - np.clip(ets, 0, None)).max() <= tolerance * level, (name, ours_ets, ets)
        assert np.abs(ours_theta - np.clip(theta, 0, None)).max() <= 0.01 * level, (name, ours_theta, theta)


def test_theta_by_hand_on_a_straight_line():
    # y = 10 + 2t, t = 0..19: SES started at y0 keeps the last value best with alpha = 1, b0 = 2,
    # so the forecast is 48 + (2 / 2) * (h - 1 + 1) = 48 + h.
    y = 10.0 + 2.0 * np.arange(20)
    assert point_forecast("theta", y, 3, "weekly") == pytest.approx([49.0, 50.0, 51.0])


def test_series_fitted_together_get_the_forecasts_they_get_alone():
    """The batched fits (rows of different lengths in one pass) give each series exactly what it
    gets on its own: no row's history reaches another's, so a backtest window sees only the
    periods before its origin."""
    series = _reference_series()
    histories = [y[: y.size - cut] for y, _ in series.values() for cut in (0, 5, 17)]
    for frequency in ("daily", "weekly"):
        for model in ("ets", "theta"):
            together = point_forecasts(model, histories, 5, frequency)
            alone = np.stack([point_forecast(model, y, 5, frequency) for y in histories])
            np.testing.assert_allclose(together, alone, rtol=1e-9, atol=1e-9)


def test_flat_and_very_short_series_fall_back_to_the_mean_of_the_last_4():
    for model in ("ets", "theta"):
        assert point_forecast(model, np.full(30, 5.0), 2, "weekly").tolist() == [5.0, 5.0]
        assert point_forecast(model, np.array([1.0, 3.0]), 2, "daily").tolist() == [2.0, 2.0]
