"""The forecast service's inputs, hardened: every line of an upload is checked (a clear 400 with
the rule and line, never a 500), deep metadata and overflowing numbers are refused, a too-large
body is refused while it streams in, the optional bearer token, and the container's bind rule."""

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

import demand_assets.serving.app as service
from demand_assets.forecasting.registry import ForecasterPyfunc
from demand_assets.serving.app import MAX_BODY_BYTES, MAX_UNITS, LoadedModel, create_app, token_from_env
from demand_assets.serving.entrypoint import ALLOW_PUBLIC_ENV, bind_plan, main
from demand_assets.serving.uploads import UploadError, check_structure, decode_utf8
from tests.test_service import APP, CLIENT, DAILY, LOG, PRODUCT, _history_csv, _predict, _store

ROOT = Path(__file__).resolve().parent.parent
HISTORY = _history_csv()
LINES = HISTORY.split(b"\n")


def _with_line(number: int, line: bytes, lines: list[bytes] = LINES) -> bytes:
    """The history with its line `number` (1-based, the header is line 1) replaced."""
    return b"\n".join([*lines[: number - 1], line, *lines[number:]])


def _error(response) -> str:
    return response.json()["error"]


@pytest.fixture
def handler_calls(monkeypatch) -> list[str]:
    """Records every call of the /predict handler (its first step parses the metadata)."""
    calls: list[str] = []
    parse = service._parse_metadata

    def spy(text: str):
        calls.append(text)
        return parse(text)

    monkeypatch.setattr(service, "_parse_metadata", spy)
    return calls


# 1. Everything after the header is inside the error handling.


@pytest.mark.parametrize(
    "line, phrase",
    [
        (b"2024-01-02,A,3,9", "line 40 has 4 field(s), the header has 3"),
        (b"2024-01-02,A", "line 40 has 2 field(s), the header has 3"),
    ],
)
def test_a_ragged_row_mid_file_is_a_400_naming_the_line(line, phrase):
    response = _predict(_with_line(40, line), {"products": [PRODUCT]})
    assert response.status_code == 400, response.text
    assert "rule 'same number of fields on every line'" in _error(response) and phrase in _error(response)


def test_a_ragged_row_in_a_transaction_log_is_a_400_naming_the_line():
    lines = LOG.write_csv().encode().split(b"\n")
    response = _predict(_with_line(7, lines[6] + b",extra", lines), {"products": [PRODUCT]})
    assert response.status_code == 400, response.text
    assert "line 7 has 10 field(s), the header has 9" in _error(response)


def test_invalid_utf8_mid_file_is_a_400_naming_line_and_byte():
    line = LINES[99]
    broken = _with_line(100, line[:11] + b"\xff\xfe" + line[11:])
    response = _predict(broken, {"products": [PRODUCT]})
    assert response.status_code == 400, response.text
    assert _error(response).startswith("rule 'UTF-8 text': line 100, byte 12 (0xff) is not valid UTF-8")


@pytest.mark.parametrize("size", ["small", "large"])
def test_an_unterminated_quote_mid_file_is_a_400_naming_the_line(size):
    # In a large file the open quote swallows more than the csv reader's field limit.
    lines = [*LINES[:-1], *LINES[1:-1] * 4, b""] if size == "large" else LINES[:60]
    assert (len(b"\n".join(lines)) > 200_000) == (size == "large")
    response = _predict(_with_line(50, b'2024-01-02,"A,3', lines), {"products": [PRODUCT]})
    assert response.status_code == 400, response.text
    assert "rule 'quotes are closed'" in _error(response) and "starting on line 50" in _error(response)


def test_text_after_a_closing_quote_is_a_400():
    response = _predict(_with_line(5, b'2024-01-02,"A"B,3'), {"products": [PRODUCT]})
    assert response.status_code == 400, response.text
    assert "rule 'well-formed quoting': line 5" in _error(response)


def test_the_upload_checks_name_line_and_rule():
    with pytest.raises(UploadError, match=r"line 3, byte 2 \(0xc3\)"):
        decode_utf8(b"a,b\n1,2\n3\xc3(,4\n")
    check_structure('a,b\n1,"x\ny"\n\n3,4\n')  # a quoted newline and a blank line are fine
    with pytest.raises(UploadError, match="line 4 has 1 field"):
        check_structure('a,b\n1,"x\ny"\n3\n')


# 2. Deeply nested metadata.


@pytest.mark.parametrize("metadata", ["[" * 100_000, '{"products": ' + "[" * 100_000 + "]" * 100_000 + "}"])
def test_deeply_nested_metadata_is_a_422(metadata):
    response = _predict(HISTORY, metadata)
    assert response.status_code == 422, response.text
    assert "metadata must be JSON" in _error(response) and "nested too deeply" in _error(response)


# 3. Numbers that would overflow.


@pytest.mark.parametrize("value", [b"1e308", b"inf", b"nan", b"1000000001"])
def test_units_that_are_not_finite_or_over_the_bound_are_a_400_naming_column_and_rule(value):
    lines = list(LINES)
    for number in (10, 11, 12):
        date, product, _ = lines[number - 1].split(b",")
        lines[number - 1] = b",".join([date, product, value])
    response = _predict(b"\n".join(lines), {"products": [PRODUCT]})
    assert response.status_code == 400, response.text
    assert f"rule 'units are finite numbers at most {MAX_UNITS:g}' on column UNITS: 3 offending row(s)" in _error(response)


def test_large_units_within_the_bound_give_finite_forecasts():
    scaled = DAILY.with_columns((pl.col("UNITS") / pl.col("UNITS").max() * MAX_UNITS).alias("UNITS"))
    response = _predict(_history_csv(scaled), {"products": [PRODUCT]}, horizon=4)
    assert response.status_code == 200, response.text
    assert "NaN" not in response.text and "Infinity" not in response.text
    assert all(0 <= f[q] < 1e12 for f in response.json()["forecasts"] for q in ("p10", "p50", "p90"))


@pytest.mark.parametrize(
    "column, value, rule",
    [
        ("Quantity", "2000000000", "quantity is at most 1e+09"),
        ("Price per Unit", "1e300", "price per unit is at most 1e+07"),
    ],
)
def test_a_transaction_log_over_the_bounds_is_a_400(column, value, rule):
    first_two = pl.int_range(pl.len()) < 2
    log = LOG.with_columns(pl.when(first_two).then(pl.lit(value)).otherwise(pl.col(column).cast(pl.String)).alias(column))
    log = log.with_columns((pl.col("Quantity").cast(pl.Float64) * pl.col("Price per Unit").cast(pl.Float64)).alias("Total Amount"))
    response = _predict(log.write_csv().encode(), {"products": [PRODUCT]})
    assert response.status_code == 400, response.text
    assert f"rule '{rule}' on column {column}: 2 offending row(s)" in _error(response)


def test_a_history_spanning_millennia_is_a_400_not_millions_of_zero_rows():
    far = b"0001-01-01,A,3\n9999-12-31,A,3\n0001-01-01,B,3\n9999-12-31,B,3\n"
    response = _predict(HISTORY + far, {"products": [PRODUCT]})
    assert response.status_code == 400, response.text
    assert "rule 'history spans at most 5,000,000 series-days' on column DATE" in _error(response)


class _NanForecaster:
    horizon, min_history = 4, 1

    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        step = pl.col("PERIOD").rank("ordinal").over("COUNTRY", "PRODUCT").cast(pl.Int64).alias("STEP")
        return future.with_columns(step, *(pl.lit(float("nan")).alias(c) for c in ("P10", "P50", "P90", "MEAN")))


def test_a_model_answering_nan_is_a_422_never_a_nan_in_the_body():
    model = LoadedModel(name="stub", version="1", frequency="weekly", pyfunc=ForecasterPyfunc(_NanForecaster(), "nan", "weekly"))
    client = TestClient(create_app(_store(), models={"weekly": model}))
    response = client.post(
        "/predict", params={"model": "tcn"}, files={"file": ("h.csv", HISTORY, "text/csv")}, data={"metadata": json.dumps({"products": [PRODUCT]})}
    )
    assert response.status_code == 422, response.text
    assert "rule 'forecasts are finite numbers'" in _error(response)


# 4. The size limit, enforced while the body streams in.


def test_a_declared_content_length_over_the_limit_is_a_413_before_the_handler(handler_calls):
    response = CLIENT.post("/predict", content=b"x", headers={"Content-Length": str(MAX_BODY_BYTES + 1), "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413, response.text
    assert "rule 'upload size'" in _error(response) and handler_calls == []
    assert response.headers["X-Demand-Models"] == "next_event=next_event:lightgbm@1;weekly=sku_forecast_weekly:tcn@7"


def _multipart_chunks(payload_chunks: int, pulled: list[int], chunk: bytes = b"2024-01-01,A,1\n" * 70_000) -> Iterator[bytes]:
    """A multipart upload in ~1 MB chunks; `pulled` counts the file chunks read so far."""
    yield b'--b\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{"products": ["A"]}\r\n'
    yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="h.csv"\r\nContent-Type: text/csv\r\n\r\nDATE,PRODUCT,UNITS\n'
    for _ in range(payload_chunks):
        pulled.append(len(chunk))
        yield chunk
    yield b"\r\n--b--\r\n"


def _stream_post(app, chunks: Iterator[bytes]) -> tuple[int, dict]:
    """POST /predict straight through ASGI, one receive() per chunk and no Content-Length, as a
    server passes a chunked upload on (TestClient reads a generator body whole before sending)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"multipart/form-data; boundary=b"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        chunk = next(chunks, None)
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    return starts[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


def test_a_chunked_body_over_the_limit_is_cut_off_with_a_413_before_the_handler(handler_calls):
    pulled: list[int] = []
    status, body = _stream_post(APP, _multipart_chunks(40, pulled))
    assert status == 413, body
    assert "rule 'upload size'" in body["error"] and handler_calls == []
    # Reading stopped at the chunk that crossed the limit: the rest of the body never came in.
    assert len(pulled) < 40 and sum(pulled[:-1]) <= MAX_BODY_BYTES


def test_a_chunked_body_under_the_limit_reaches_the_handler(handler_calls):
    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n' + json.dumps({"products": [PRODUCT]}).encode() + b"\r\n"
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="h.csv"\r\n\r\n'
        yield from (HISTORY[i : i + 10_000] for i in range(0, len(HISTORY), 10_000))
        yield b"\r\n--b--\r\n"

    response = CLIENT.post("/predict", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 200, response.text
    assert len(handler_calls) == 1


def test_a_small_limit_applies_to_every_request():
    client = TestClient(create_app(_store(), models={}, max_body_bytes=100))
    response = client.post("/predict", files={"file": ("h.csv", HISTORY, "text/csv")}, data={"metadata": "{}"})
    assert response.status_code == 413 and "100 bytes" in _error(response)
    assert client.get("/health").status_code == 200


# 5. The optional bearer token.

TOKEN = "s3cret-token"
SECURED = TestClient(create_app(_store(), models={}, token=TOKEN))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}])
def test_with_a_token_every_endpoint_but_health_needs_it(headers, handler_calls):
    for method, path in [("GET", "/forecast?country=US&product=P00001"), ("GET", "/forecast/aggregate"), ("GET", "/openapi.json"), ("POST", "/predict")]:
        response = SECURED.request(method, path, headers=headers, files={"file": ("h.csv", HISTORY)} if method == "POST" else None)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "rule 'bearer token'" in _error(response)
    assert handler_calls == []


def test_with_the_right_token_the_endpoints_answer_and_health_is_open():
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert SECURED.get("/forecast", params={"country": "US", "product": "P00001"}, headers=auth).status_code == 200
    assert SECURED.get("/forecast/aggregate", headers=auth).status_code == 200
    assert SECURED.get("/health").status_code == 200
    assert SECURED.get("/health").json()["forecast_as_of"] == "2024-06-30"


def test_without_a_token_nothing_is_asked():
    assert CLIENT.get("/forecast", params={"country": "US", "product": "P00001"}).status_code == 200
    assert APP.openapi()["info"]["title"]


def test_the_token_is_read_from_the_environment_and_blank_means_none():
    assert token_from_env({"DEMAND_SERVICE_TOKEN": " abc "}) == "abc"
    assert token_from_env({"DEMAND_SERVICE_TOKEN": "  "}) is None
    assert token_from_env({}) is None


# 6. The container's bind rule.


def test_the_service_binds_all_interfaces_only_with_a_token_or_an_explicit_opt_in():
    assert bind_plan({"DEMAND_SERVICE_TOKEN": "t"}) == bind_plan({"DEMAND_SERVICE_TOKEN": "t", ALLOW_PUBLIC_ENV: "1"})
    assert bind_plan({"DEMAND_SERVICE_TOKEN": "t"}).host == "0.0.0.0" and bind_plan({"DEMAND_SERVICE_TOKEN": "t"}).warning is None
    public = bind_plan({ALLOW_PUBLIC_ENV: "1"})
    assert public.host == "0.0.0.0" and public.warning is not None and public.warning.startswith("UNAUTHENTICATED")
    for environ in ({}, {"DEMAND_SERVICE_TOKEN": " "}, {ALLOW_PUBLIC_ENV: "yes"}):
        local = bind_plan(environ)
        assert local.host == "127.0.0.1" and local.warning is not None and "DEMAND_SERVICE_TOKEN" in local.warning


def test_the_entrypoint_runs_uvicorn_as_planned_and_logs_the_warning(monkeypatch, caplog):
    import uvicorn

    runs: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: runs.append({"app": app, **kwargs}))
    with caplog.at_level(logging.WARNING, logger="demand_assets.serving"):
        main(["--port", "9000"], {ALLOW_PUBLIC_ENV: "1"})
    assert runs == [{"app": "demand_assets.serving.app:create_app_from_env", "factory": True, "host": "0.0.0.0", "port": 9000}]
    assert "UNAUTHENTICATED" in caplog.text


def test_the_docker_image_starts_through_the_entrypoint():
    cmd = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD"))
    assert json.loads(cmd.removeprefix("CMD")) == ["python", "-m", "demand_assets.serving", "--port", "8000"]
