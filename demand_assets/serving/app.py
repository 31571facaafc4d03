"""The forecast service (POST /predict from uploaded sales history, built on the pipeline's models and tables).

FastAPI rather than LitServe: requests are small CPU-bound tabular calls where LitServe's
batching and GPU worker pools buy nothing, while FastAPI's validated multipart uploads and its
OpenAPI schema are what the docs page and the schemathesis fuzz test stand on (LitServe itself
runs on FastAPI). The service reads, never writes: models from the MLflow registry
(`sku_forecast_weekly@champion`, `sku_forecast_daily@champion`), forecasts from the Delta store.

    POST /predict                 CSV of recent history (or a transaction log) + JSON metadata;
                                  ?model=auto picks per series among local models fitted on the
                                  upload (forecasting.local) and the registered TCN
    POST /next-event              a session's recent events: the next event's probabilities,
                                  P(purchase still to come) and the at-risk flag (next_event@champion)
    GET  /forecast                the newest materialized demand_forecast for a country x product
    GET  /forecast/aggregate      the same, summed by category or country
    GET  /health                  models and the forecast table the service sees
Every response carries the models in the X-Demand-Models header; bodies name the model and
version that made the numbers. Bad input is a 4xx that says what is wrong, never a 500. With a
token (DEMAND_SERVICE_TOKEN) every endpoint but GET /health needs `Authorization: Bearer`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

import polars as pl
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from contracts import Table
from contracts.registry import PLAUSIBLE_UPPER_BOUNDS
from demand_assets.forecasting.covariates import COVARIATE_MODELS
from demand_assets.forecasting.local import (
    LOCAL_MODELS,
    External,
    LocalForecast,
    PeriodCalendar,
    forecast_local,
    is_weekly_rows,
    periods_from_daily,
    periods_from_weekly_rows,
)
from demand_assets.forecasting.registry import SKU_REGISTERED_MODELS, ForecasterPyfunc
from demand_assets.serving.covariates import RESERVED_COLUMNS, CovariateError, UploadCovariates, check_known_future, parse_declaration, resolve_covariates
from demand_assets.serving.guards import BearerToken, BodySizeLimit, ResponseHeaders
from demand_assets.serving.next_event import LoadedNextEvent, add_next_event_route, load_next_event_champion
from demand_assets.serving.uploads import UploadError, check_structure, decode_utf8, read_header, read_table
from demand_assets.sources.transactions import TRANSACTION_COLUMNS, TransactionLogError, daily_product_demand, read_transaction_log
from resources import DeltaStore, MissingTableError, MlflowTracking

__all__ = ["LoadedModel", "create_app", "create_app_from_env", "token_from_env"]

log = logging.getLogger(__name__)
TOKEN_ENV = "DEMAND_SERVICE_TOKEN"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# The whole multipart body: the file, the metadata field (Starlette caps a text field at 1 MiB)
# and the multipart framing. Enforced while the body streams in (guards.BodySizeLimit).
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 1024 * 1024 + 64 * 1024
# A product's units on one row can be no more than the contracts' bound on a whole market's
# expected demand; with at most a 20 MB file of rows, sums stay far from overflowing.
MAX_UNITS = PLAUSIBLE_UPPER_BOUNDS["EXPECTED_DEMAND"]
MAX_PRICE = PLAUSIBLE_UPPER_BOUNDS["PRICE"]
# Series-days after filling each series' gaps with zeros (a 20 MB daily file has under a million rows).
MAX_PANEL_DAYS = 5_000_000
# POST /predict?model=: "auto" (the default) picks per series; the others are asked for by name.
ModelChoice = Literal["auto", "tcn", "seasonal_naive", "mean_last_4", "ets", "theta", "lightgbm"]
assert set(ModelChoice.__args__) == {"auto", "tcn", *LOCAL_MODELS, *COVARIATE_MODELS}  # type: ignore[attr-defined]


class LoadedModel(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    name: str
    version: str
    frequency: str
    pyfunc: ForecasterPyfunc


class Metadata(BaseModel):
    products: list[str] = Field(min_length=1, max_length=10_000)
    country: str | None = None


class PeriodForecast(BaseModel):
    country: str
    product: str
    period: str
    step: int
    p10: float
    p50: float
    p90: float
    model: str


class DroppedPeriod(BaseModel):
    period: str
    days_covered: int
    reason: str


class PeriodsUsed(BaseModel):
    """The calendar the forecasts were made from: every product runs to the upload's end."""

    first: str | None
    last: str | None
    count: int
    dropped: list[DroppedPeriod]


class SeriesChoice(BaseModel):
    country: str
    product: str
    model: str
    first_period: str
    periods: int
    backtest_windows: int
    reason: str
    backtest_mae: dict[str, float | None]
    covariates: list[str] = Field(default_factory=list, description="the covariates the chosen model read for this series")


class CovariateUsed(BaseModel):
    """A further column of the upload: a covariate (known: read at the period forecast;
    observed: read at the forecast origin) or ignored, and which models read it."""

    column: str
    kind: Literal["known", "observed"] | None
    declared: bool
    reason: str
    used_by: list[str]
    chosen_for: int = Field(description="series whose chosen model read it")


class PredictResponse(BaseModel):
    model: str
    model_version: str
    frequency: str
    horizon: int
    periods: PeriodsUsed
    covariates: list[CovariateUsed]
    series: list[SeriesChoice]
    forecasts: list[PeriodForecast]


class StoredForecast(BaseModel):
    target_date: str
    horizon_day: int
    mean: float
    p10: float
    p50: float
    p90: float


class ForecastResponse(BaseModel):
    model: str
    model_version: str
    as_of: str
    country: str
    product: str
    forecasts: list[StoredForecast]


class AggregateRow(BaseModel):
    group: str
    target_date: str
    mean: float
    p10: float
    p50: float
    p90: float


class AggregateResponse(BaseModel):
    model: str
    model_version: str
    as_of: str
    level: str
    band: str
    rows: list[AggregateRow]


class HealthResponse(BaseModel):
    status: str
    models: dict[str, str]
    forecast_as_of: str | None


def _parse_metadata(text: str) -> Metadata:
    """The `metadata` form field; JSON nested too deeply for the parser is invalid metadata too."""
    try:
        return Metadata.model_validate(json.loads(text))
    except RecursionError as err:
        raise HTTPException(422, 'metadata must be JSON like {"products": ["Beauty@50.00"]}: it is nested too deeply to read') from err
    except (json.JSONDecodeError, ValueError, TypeError) as err:
        raise HTTPException(422, f'metadata must be JSON like {{"products": ["Beauty@50.00"]}}: {str(err)[:300]}') from err


def _enforce(frame: pl.DataFrame, rules: list[tuple[str, str, pl.Expr]], shown: list[pl.Expr | str]) -> None:
    """400 naming the first rule (rule, column, broken) that any row breaks, with examples."""
    for rule, column, broken in rules:
        bad = frame.filter(broken.fill_null(True))
        if bad.height:
            examples = bad.select(shown).head(5).to_dicts()
            raise HTTPException(400, f"rule '{rule}' on column {column}: {bad.height} offending row(s), e.g. {examples}")


def _enforce_span(frame: pl.DataFrame, keys: list[str], date: str) -> None:
    """Each series is filled with zeros from its first date to the upload's last, so a date far
    off (year 1 and year 9999) would make millions of rows: the filled panel is bounded."""
    end = frame[date].max()
    spans = frame.group_by(keys).agg(((pl.lit(end) - pl.col(date).min()).dt.total_days() + 1).alias("DAYS"))
    total = int(spans["DAYS"].sum() or 0)
    if total > MAX_PANEL_DAYS:
        longest = spans.sort("DAYS", descending=True).head(3).to_dicts()
        raise HTTPException(
            400,
            f"rule 'history spans at most {MAX_PANEL_DAYS:,} series-days' on column {date}: from each series' first to last date "
            f"the history covers {total:,} days, e.g. {longest}; check for mistyped years",
        )


@dataclass(frozen=True)
class _Declaration:
    """`known=` and `observed=` as given (None: not given)."""

    known: list[str] | None = None
    observed: list[str] | None = None

    @property
    def given(self) -> bool:
        return self.known is not None or self.observed is not None


Upload = tuple[pl.DataFrame, PeriodCalendar, UploadCovariates]


def _history_from_csv(content: bytes, frequency: str, country: str | None, declaration: _Declaration = _Declaration()) -> Upload:
    """COUNTRY, PRODUCT, PERIOD, UNITS from an upload, with the calendar used and its covariates:
    a history (DATE, PRODUCT, UNITS, optional COUNTRY, further covariate columns) or a
    transaction log (invoice lines). Every line is checked (UTF-8, field counts, quotes) before
    polars reads the file; any broken rule is a 400 that names it."""
    if not content.strip():
        raise HTTPException(400, "the uploaded file is empty")
    with _upload_rules():
        text, header = decode_utf8(content), read_header(content)
    if all(c in header for c in TRANSACTION_COLUMNS):
        with _upload_rules():
            check_structure(text)
        if declaration.known or declaration.observed:
            raise HTTPException(400, "rule 'covariates come with a DATE, PRODUCT, UNITS upload': a transaction log has no covariate columns")
        return (*_history_from_transactions(content, frequency, country), UploadCovariates((), None))
    missing = [c for c in ("DATE", "PRODUCT", "UNITS") if c not in header]
    if missing:
        raise HTTPException(
            400,
            f"rule 'required columns': the CSV lacks {missing}; upload DATE, PRODUCT, UNITS (optional COUNTRY) or a transaction log with {list(TRANSACTION_COLUMNS)}",
        )
    with _upload_rules():
        check_structure(text)
        raw = read_table(content)
    return _history_from_rows(raw, frequency, country, declaration)


@contextlib.contextmanager
def _upload_rules() -> Iterator[None]:
    """A broken rule of the upload's text (`uploads.UploadError`) answered as a 400."""
    try:
        yield
    except UploadError as err:
        raise HTTPException(400, str(err)) from err


def _history_from_transactions(content: bytes, frequency: str, country: str | None) -> tuple[pl.DataFrame, PeriodCalendar]:
    try:
        transactions = read_transaction_log(content)
    except TransactionLogError as err:
        raise HTTPException(400, str(err)) from err
    _enforce(
        transactions,
        [
            (f"quantity is at most {MAX_UNITS:g}", "Quantity", pl.col("QUANTITY") > MAX_UNITS),
            (f"price per unit is at most {MAX_PRICE:g}", "Price per Unit", pl.col("PRICE") > MAX_PRICE),
            ("total amount is a finite number", "Total Amount", ~pl.col("TOTAL").is_finite()),
        ],
        ["TRANSACTION_ID", "CATEGORY", "QUANTITY", "PRICE", "TOTAL"],
    )
    _enforce_span(transactions, ["CATEGORY", "PRICE"], "DATE")
    start, end = transactions["DATE"].min(), transactions["DATE"].max()
    daily = daily_product_demand(transactions, country=country or "ALL", through=end)
    return periods_from_daily(daily.select("COUNTRY", "PRODUCT", "DATE", pl.col("PRODUCT_DEMAND").alias("UNITS")), frequency, start=start, end=end)


def _history_from_rows(raw: pl.DataFrame, frequency: str, country: str | None, declaration: _Declaration = _Declaration()) -> Upload:
    extra = [c for c in raw.columns if c not in RESERVED_COLUMNS]
    frame = raw.select(
        (pl.int_range(pl.len()) + 2).alias("LINE"),  # the header is line 1
        pl.col("COUNTRY") if "COUNTRY" in raw.columns else pl.lit(country or "ALL").alias("COUNTRY"),
        pl.col("PRODUCT").str.strip_chars(),
        pl.col("DATE").str.strip_chars().str.to_date("%Y-%m-%d", strict=False),
        pl.col("UNITS").str.strip_chars().cast(pl.Float64, strict=False),
        pl.col("DATE").alias("DATE_TEXT"),
        pl.col("UNITS").alias("UNITS_TEXT"),
        *extra,
    )
    # A row with an empty UNITS after the last day with units is a future row: it carries the
    # covariates of a period to forecast. An empty UNITS anywhere before is a broken history row.
    empty_units = pl.col("UNITS_TEXT").is_null() | (pl.col("UNITS_TEXT").str.strip_chars() == "")
    history_end = frame.filter(~empty_units & pl.col("DATE").is_not_null())["DATE"].max()
    future = empty_units & (pl.col("DATE") > history_end) if history_end is not None else pl.lit(False)
    frame = frame.with_columns(future.fill_null(False).alias("FUTURE"))
    rows = frame.filter(~pl.col("FUTURE"))
    _enforce(
        frame,
        [
            ("dates are YYYY-MM-DD", "DATE", pl.col("DATE").is_null()),
            ("product given", "PRODUCT", pl.col("PRODUCT").is_null() | (pl.col("PRODUCT") == "")),
            ("country given", "COUNTRY", pl.col("COUNTRY").is_null()),
        ],
        ["COUNTRY", "PRODUCT", pl.col("DATE_TEXT").alias("DATE"), pl.col("UNITS_TEXT").alias("UNITS")],
    )
    _enforce(
        rows,
        [
            ("units are numbers >= 0", "UNITS", pl.col("UNITS").is_null() | (pl.col("UNITS") < 0)),
            (f"units are finite numbers at most {MAX_UNITS:g}", "UNITS", ~pl.col("UNITS").is_finite() | (pl.col("UNITS") > MAX_UNITS)),
        ],
        ["COUNTRY", "PRODUCT", pl.col("DATE_TEXT").alias("DATE"), pl.col("UNITS_TEXT").alias("UNITS")],
    )
    # The upload's history covers its first to its last date, for every product in it.
    start, end = rows["DATE"].min(), rows["DATE"].max()
    if country is not None:
        frame = frame.filter(pl.col("COUNTRY") == country)
        rows = rows.filter(pl.col("COUNTRY") == country)
    try:
        covariates = resolve_covariates(frame, extra, pl.col("FUTURE"), frequency, declaration.known, declaration.observed)
    except CovariateError as err:
        raise HTTPException(err.status, str(err)) from err
    _enforce_span(rows, ["COUNTRY", "PRODUCT"], "DATE")
    daily = rows.group_by("COUNTRY", "PRODUCT", "DATE").agg(pl.col("UNITS").sum())
    if frequency == "weekly" and is_weekly_rows(daily):  # already weekly: one row per product and week
        return (*periods_from_weekly_rows(daily), covariates)
    return (*periods_from_daily(daily, frequency, start=start, end=end), covariates)


def _finite_forecast(out: pl.DataFrame) -> pl.DataFrame:
    """A forecast whose quantiles are all finite numbers; JSON has no inf or NaN to answer with."""
    broken = out.filter(~pl.all_horizontal(pl.col(c).is_finite() for c in ("P10", "P50", "P90")).fill_null(True))
    if broken.height:
        examples = broken.select("PRODUCT", "STEP", "P10", "P50", "P90").head(3).to_dicts()
        raise HTTPException(422, f"rule 'forecasts are finite numbers': the model gave no finite quantiles for {broken.height} period(s), e.g. {examples}")
    return out


def _tcn_choices(out: pl.DataFrame) -> pl.DataFrame:
    return (
        out.select("COUNTRY", "PRODUCT")
        .unique(maintain_order=True)
        .with_columns(pl.lit("tcn").alias("MODEL"), pl.lit(0).alias("FOLDS"), pl.lit("requested").alias("REASON"))
    )


def _periods_used(calendar: PeriodCalendar) -> PeriodsUsed:
    return PeriodsUsed(
        first=None if calendar.first is None else str(calendar.first),
        last=None if calendar.last is None else str(calendar.last),
        count=calendar.count,
        dropped=[DroppedPeriod(period=str(d.period), days_covered=d.days_covered, reason=d.reason) for d in calendar.dropped],
    )


def _series_choices(choices: pl.DataFrame, history: pl.DataFrame) -> list[SeriesChoice]:
    spans = history.group_by("COUNTRY", "PRODUCT").agg(pl.col("PERIOD").min().alias("FIRST"), pl.len().alias("N"))
    rows = choices.join(spans, on=["COUNTRY", "PRODUCT"], how="left").sort("COUNTRY", "PRODUCT")
    scores = [c for c in rows.columns if c.startswith("MAE_")]
    return [
        SeriesChoice(
            country=r["COUNTRY"],
            product=r["PRODUCT"],
            model=r["MODEL"],
            first_period=str(r["FIRST"]),
            periods=r["N"],
            backtest_windows=r["FOLDS"],
            reason=r["REASON"],
            backtest_mae={c.removeprefix("MAE_"): r[c] for c in scores},
            covariates=r.get("COVARIATES") or [],
        )
        for r in rows.iter_rows(named=True)
    ]


def _covariates_used(upload: UploadCovariates, choices: pl.DataFrame, candidates: set[str]) -> list[CovariateUsed]:
    """Each further column, with the models that read it (lightgbm, when it took part) and the
    number of series whose chosen model did."""
    readers = sorted(candidates & set(COVARIATE_MODELS))
    chosen = choices["COVARIATES"].to_list() if "COVARIATES" in choices.columns else []
    return [
        CovariateUsed(
            column=c.column,
            kind=c.kind,
            declared=c.declared,
            reason=c.reason,
            used_by=readers if c.kind is not None else [],
            chosen_for=sum(1 for names in chosen if names and c.column in names),
        )
        for c in upload.columns
    ]


def create_app(
    store: DeltaStore,
    tracking: MlflowTracking | None = None,
    models: dict[str, LoadedModel] | None = None,
    token: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    next_event: LoadedNextEvent | None = None,
) -> FastAPI:
    """The service over `store` (forecast tables) and the registry of `tracking`; `models`
    (frequency -> LoadedModel) replaces the registry lookup, for tests and embedding. With a
    `token`, every endpoint but GET /health requires `Authorization: Bearer <token>`; request
    bodies over `max_body_bytes` are refused (413) while they stream in. `next_event` replaces the
    registry's next_event@champion the same way."""
    loaded: dict[str, LoadedModel] = dict(models or {})
    next_event_loaded: dict[str, LoadedNextEvent] = {"next_event": next_event} if next_event is not None else {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if models is None and tracking is not None:
            loaded.update(_load_champions(tracking))
        if next_event is None and tracking is not None:
            champion = load_next_event_champion(tracking)
            if champion is not None:
                next_event_loaded["next_event"] = champion
        yield

    app = FastAPI(
        title="demand_assets forecast service",
        version="1.0",
        description="Forecasts from the demand_assets pipeline: per-SKU predictions from uploaded history, and the materialized daily forecasts.",
        lifespan=lifespan,
    )

    def serving() -> dict[str, str]:
        names = {f: f"{m.name}@{m.version}" for f, m in loaded.items()}
        return names | {k: f"{m.name}@{m.version}" for k, m in next_event_loaded.items()}

    def model_header() -> dict[str, str]:
        return {"X-Demand-Models": ";".join(f"{k}={v}" for k, v in sorted(serving().items())) or "none"}

    # The last added runs first: the model header on every answer, then the token, then the size.
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    if token:
        app.add_middleware(BearerToken, token=token)
    app.add_middleware(ResponseHeaders, headers=model_header)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse(status_code=exc.status_code, content={"error": exc.detail, "models": serving()})

    @app.get("/health", response_model=HealthResponse)
    def health() -> HealthResponse:
        try:
            as_of = str(store.last_date(Table.DEMAND_FORECAST))
        except MissingTableError:
            as_of = None
        return HealthResponse(status="ok", models=serving(), forecast_as_of=as_of)

    add_next_event_route(app, next_event_loaded)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={
            400: {"description": "unreadable or invalid upload"},
            422: {"description": "invalid metadata, horizon or too little history"},
            503: {"description": "model=tcn asked for, and no TCN is registered for this frequency"},
        },
    )
    async def predict(
        file: Annotated[UploadFile, File(description="CSV: DATE, PRODUCT, UNITS (optional COUNTRY), or a transaction log")],
        metadata: Annotated[str, Form(description='JSON: {"products": ["..."], "country": null}')],
        horizon: Annotated[int, Query(ge=1, le=366, description="periods ahead (model=tcn: at most what it was trained for)")] = 4,
        frequency: Annotated[Literal["weekly", "daily"], Query(description="period of history and forecast")] = "weekly",
        model: Annotated[
            ModelChoice,
            Query(
                description="auto: per series, the best of the local models, lightgbm (when the upload has covariates) and the registered TCN "
                "in a backtest on the upload; or one by name"
            ),
        ] = "auto",
        known: Annotated[
            str | None,
            Query(
                max_length=4000,
                description="comma-separated covariate columns known in advance (given on the future rows); with observed=, declares the covariates",
            ),
        ] = None,
        observed: Annotated[
            str | None,
            Query(max_length=4000, description="comma-separated covariate columns observed only up to the forecast origin (read lagged)"),
        ] = None,
    ) -> PredictResponse:
        meta = _parse_metadata(metadata)
        tcn = loaded.get(frequency)
        if model == "tcn":
            if tcn is None:
                raise HTTPException(503, f"no {frequency} model is registered: materialize sku_forecast_models first, or ask for model=auto")
            if horizon > tcn.pyfunc.max_horizon:
                raise HTTPException(422, f"horizon {horizon} is beyond the {tcn.pyfunc.max_horizon} {frequency} periods the model was trained for")
        content = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(content) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
        declaration = _Declaration(parse_declaration(known), parse_declaration(observed))
        history, calendar, upload = _history_from_csv(content, frequency, meta.country, declaration)
        known = set(history["PRODUCT"].unique().to_list())
        unknown = [p for p in meta.products if p not in known]
        if unknown:
            raise HTTPException(422, f"unknown product(s) {unknown[:10]}: not in the uploaded history's complete periods (it has {sorted(known)[:10]}...)")
        history = history.filter(pl.col("PRODUCT").is_in(meta.products))
        covariates = upload.covariates
        if covariates is not None and calendar.last is not None:
            try:
                check_known_future(covariates, calendar.last, horizon, frequency, history)
            except CovariateError as err:
                raise HTTPException(err.status, str(err)) from err
        candidates: set[str] = {model}
        try:
            if model == "tcn":
                assert tcn is not None
                out = _finite_forecast(tcn.pyfunc.forecast(history, horizon)).with_columns(pl.lit("tcn").alias("MODEL"))
                result = LocalForecast(out, _tcn_choices(out))
            else:
                external = {}
                if model == "auto" and tcn is not None and horizon <= tcn.pyfunc.max_horizon:
                    external["tcn"] = External(tcn.pyfunc.forecast, tcn.pyfunc.min_history)
                result = forecast_local(history, horizon, frequency, model=model, external=external, covariates=covariates)
                out = _finite_forecast(result.forecasts)
                candidates = {c.removeprefix("MAE_") for c in result.choices.columns if c.startswith("MAE_")}
        except ValueError as err:  # too little history, and the like
            raise HTTPException(422, str(err)) from err
        used_tcn = tcn is not None and "tcn" in set(out["MODEL"].to_list())
        name = tcn.name if model == "tcn" and tcn is not None else model
        version = tcn.version if used_tcn and tcn is not None else "fitted per request"
        return PredictResponse(
            model=name,
            model_version=version,
            frequency=frequency,
            horizon=horizon,
            periods=_periods_used(calendar),
            covariates=_covariates_used(upload, result.choices, candidates),
            series=_series_choices(result.choices, history),
            forecasts=[
                PeriodForecast(
                    country=r["COUNTRY"],
                    product=r["PRODUCT"],
                    period=str(r["PERIOD"]),
                    step=r["STEP"],
                    p10=r["P10"],
                    p50=r["P50"],
                    p90=r["P90"],
                    model=r["MODEL"],
                )
                for r in out.iter_rows(named=True)
            ],
        )

    def _latest(horizon: int) -> tuple[str, pl.DataFrame]:
        try:
            as_of = store.last_date(Table.DEMAND_FORECAST)
        except MissingTableError as err:
            raise HTTPException(404, "no demand_forecast has been materialized yet") from err
        rows = store.read_window(Table.DEMAND_FORECAST, as_of, as_of + dt.timedelta(days=1)).filter(pl.col("HORIZON_DAY") <= horizon)
        return str(as_of), rows

    @app.get("/forecast", response_model=ForecastResponse, responses={404: {"description": "unknown country or product, or no forecast yet"}})
    def forecast(
        country: Annotated[str, Query(min_length=1, max_length=64)],
        product: Annotated[str, Query(min_length=1, max_length=128)],
        horizon: Annotated[int, Query(ge=1, le=366)] = 28,
    ) -> ForecastResponse:
        as_of, rows = _latest(horizon)
        series = rows.filter((pl.col("COUNTRY") == country) & (pl.col("PRODUCT") == product)).sort("HORIZON_DAY")
        if series.is_empty():
            raise HTTPException(404, f"no forecast for country {country!r} x product {product!r} as of {as_of}")
        return ForecastResponse(
            model=series["MODEL"][0],
            model_version=series["MODEL_VERSION"][0],
            as_of=as_of,
            country=country,
            product=product,
            forecasts=[
                StoredForecast(target_date=str(r["TARGET_DATE"]), horizon_day=r["HORIZON_DAY"], mean=r["MEAN"], p10=r["P10"], p50=r["P50"], p90=r["P90"])
                for r in series.iter_rows(named=True)
            ],
        )

    @app.get("/forecast/aggregate", response_model=AggregateResponse, responses={404: {"description": "no forecast yet"}})
    def aggregate(
        level: Annotated[Literal["category", "country"], Query()] = "category",
        horizon: Annotated[int, Query(ge=1, le=366)] = 28,
    ) -> AggregateResponse:
        as_of, rows = _latest(horizon)
        if rows.is_empty():
            raise HTTPException(404, f"the forecast as of {as_of} has no rows")
        if level == "category":
            categories = store.scan(Table.TRAINING_DATASET).filter(pl.col("DATE") == pl.lit(rows["DATE"][0])).select("COUNTRY", "PRODUCT", "CATEGORY").collect()
            rows = rows.join(categories, on=["COUNTRY", "PRODUCT"], how="left").with_columns(pl.col("CATEGORY").fill_null("UNKNOWN").alias("GROUP"))
        else:
            rows = rows.with_columns(pl.col("COUNTRY").alias("GROUP"))
        sums = (
            rows.group_by("GROUP", "TARGET_DATE")
            .agg(pl.col("MEAN").sum(), pl.col("P10").sum(), pl.col("P50").sum(), pl.col("P90").sum())
            .sort("GROUP", "TARGET_DATE")
        )
        return AggregateResponse(
            model=rows["MODEL"][0],
            model_version=rows["MODEL_VERSION"][0],
            as_of=as_of,
            level=level,
            band="sums of the products' quantiles: MEAN adds up exactly; P10/P90 bound the aggregate's band from outside (products assumed to move together)",
            rows=[
                AggregateRow(group=r["GROUP"], target_date=str(r["TARGET_DATE"]), mean=r["MEAN"], p10=r["P10"], p50=r["P50"], p90=r["P90"])
                for r in sums.iter_rows(named=True)
            ],
        )

    return app


def _load_champions(tracking: MlflowTracking) -> dict[str, LoadedModel]:

    out = {}
    for frequency in SKU_REGISTERED_MODELS:
        registry = tracking.for_model(SKU_REGISTERED_MODELS[frequency])
        version = registry.champion_version()
        if version is None:
            log.warning("no champion of %s: POST /predict?frequency=%s answers 503 until sku_forecast_models runs", registry.registered_model, frequency)
            continue
        pyfunc = registry.load(version).unwrap_python_model()
        out[frequency] = LoadedModel(name=f"{registry.registered_model}:{pyfunc.model_name}", version=version, frequency=frequency, pyfunc=pyfunc)
        log.info("serving %s version %s for %s forecasts", registry.registered_model, version, frequency)
    return out


def create_app_from_env() -> FastAPI:
    from resources import resources_from_env

    resources = resources_from_env(resolve=True)
    return create_app(resources["store"], resources["mlflow_tracking"], token=token_from_env())


def token_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    """The service's bearer token, DEMAND_SERVICE_TOKEN; unset or blank means no authentication."""
    return environ.get(TOKEN_ENV, "").strip() or None
