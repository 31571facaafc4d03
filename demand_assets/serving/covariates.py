"""The covariate columns of a POST /predict upload: which they are, of what kind, and their rules.

An upload of DATE, PRODUCT, UNITS (optional COUNTRY) may carry further columns. A row with an
empty UNITS dated after the history's last day is a *future row*: it carries the covariates'
values for a period to forecast. Without a declaration, every further column with at least one
number in it is a covariate, `known` (read at the period forecast) when the future rows give it
a value and `observed` (read lagged, at the forecast origin) when they do not; a column without
any number (a store name) is ignored and reported. With `known=` or `observed=` (comma-separated
column names) only the declared columns are covariates; an empty declaration uses none.

Every rule broken is a `CovariateError` naming the rule, the column and the offending lines
(the header is line 1), answered as a 400, or a 422 for a known covariate the forecast periods
lack. Pure polars; the service only wires it in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from demand_assets.forecasting.covariates import Covariates, covariate_periods

__all__ = [
    "MAX_COVARIATES",
    "RESERVED_COLUMNS",
    "CovariateColumn",
    "CovariateError",
    "UploadCovariates",
    "check_known_future",
    "parse_declaration",
    "resolve_covariates",
]

RESERVED_COLUMNS = ("DATE", "PRODUCT", "UNITS", "COUNTRY")
# Each covariate is two features of the global model; more than this is a wide upload that
# should say which columns it means.
MAX_COVARIATES = 20
KEYS = ["COUNTRY", "PRODUCT"]


class CovariateError(ValueError):
    """A broken covariate rule; `status` is the HTTP answer (400 or 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CovariateColumn:
    """A further column of the upload: a covariate of `kind` (known or observed), or ignored
    (kind None) with the reason."""

    column: str
    kind: str | None
    declared: bool
    reason: str


@dataclass(frozen=True)
class UploadCovariates:
    """The columns and, when there are covariates, their values per period (history and future)."""

    columns: tuple[CovariateColumn, ...]
    covariates: Covariates | None

    @property
    def used(self) -> tuple[CovariateColumn, ...]:
        return tuple(c for c in self.columns if c.kind is not None)


def parse_declaration(text: str | None) -> list[str] | None:
    """`known=` / `observed=`: None when not given, else the comma-separated names (may be empty)."""
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def _number(column: str) -> pl.Expr:
    """The text as a number: true/false as 1/0, thousands separators not accepted."""
    text = pl.col(column).str.strip_chars()
    lowered = text.str.to_lowercase()
    return pl.when(lowered == "true").then(1.0).when(lowered == "false").then(0.0).otherwise(text.cast(pl.Float64, strict=False))


def _given(column: str) -> pl.Expr:
    return pl.col(column).is_not_null() & (pl.col(column).str.strip_chars() != "")


def _refuse(frame: pl.DataFrame, rule: str, column: str, broken: pl.Expr, status: int = 400, hint: str = "") -> None:
    bad = frame.filter(broken.fill_null(False))
    if bad.height:
        examples = bad.select("LINE", "PRODUCT", pl.col("DATE_TEXT").alias("DATE"), pl.col(column).alias(column)).head(5).to_dicts()
        lines = bad["LINE"].head(20).to_list()
        raise CovariateError(status, f"rule '{rule}' on column {column}: {bad.height} offending line(s) {lines}, e.g. {examples}{hint}")


def _match(name: str, columns: Sequence[str]) -> str | None:
    if name in columns:
        return name
    folded = [c for c in columns if c.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def resolve_covariates(
    frame: pl.DataFrame, extra: Sequence[str], future: pl.Expr, frequency: str, known: list[str] | None = None, observed: list[str] | None = None
) -> UploadCovariates:
    """The covariates of `frame` (the upload as text, with LINE, COUNTRY, PRODUCT, DATE (a date),
    DATE_TEXT and the `extra` columns): declared by `known` / `observed` or inferred, checked,
    and averaged per period (`covariate_periods`) over history and `future` rows."""
    declared = known is not None or observed is not None
    known, observed = list(known or []), list(observed or [])
    columns: list[CovariateColumn] = []
    if declared:
        for name in [*known, *observed]:
            if name.upper() in RESERVED_COLUMNS:
                raise CovariateError(400, f"rule 'covariates are further columns' on column {name}: DATE, PRODUCT, UNITS and COUNTRY are not covariates")
            if _match(name, extra) is None:
                raise CovariateError(
                    400, f"rule 'declared covariates are columns of the upload' on column {name}: the upload's further columns are {list(extra)[:30]}"
                )
        known = [str(_match(n, extra)) for n in known]
        observed = [str(_match(n, extra)) for n in observed]
        both = sorted(set(known) & set(observed))
        if both:
            raise CovariateError(400, f"rule 'a covariate is known or observed, not both' on column {both[0]}: declared in known= and observed=")
        if len(set(known)) + len(set(observed)) > MAX_COVARIATES:
            raise CovariateError(400, f"rule 'at most {MAX_COVARIATES} covariates': {len(set(known)) + len(set(observed))} declared")
        kinds = {**dict.fromkeys(known, "known"), **dict.fromkeys(observed, "observed")}
        for column in extra:
            if column in kinds:
                columns.append(CovariateColumn(column, kinds[column], True, f"declared {kinds[column]}"))
            else:
                columns.append(CovariateColumn(column, None, False, "not declared in known= or observed="))
    else:
        stats = frame.select(
            *(_number(c).is_not_null().any().alias(f"{c}\x00number") for c in extra),
            *(_given(c).and_(future).any().alias(f"{c}\x00future") for c in extra),
        )
        for column in extra:
            if not stats[f"{column}\x00number"][0]:
                columns.append(CovariateColumn(column, None, False, "no value is a number"))
            elif stats[f"{column}\x00future"][0]:
                columns.append(CovariateColumn(column, "known", False, "inferred known: the future rows give its values"))
            else:
                columns.append(CovariateColumn(column, "observed", False, "inferred observed: the future rows give no values (read lagged)"))
        inferred = [c.column for c in columns if c.kind is not None]
        if len(inferred) > MAX_COVARIATES:
            raise CovariateError(
                400,
                f"rule 'at most {MAX_COVARIATES} covariates': {len(inferred)} numeric further columns; say which with known= and observed= ({inferred[:30]})",
            )
    used = [c for c in columns if c.kind is not None]
    if not used:
        return UploadCovariates(tuple(columns), None)
    for c in used:
        value = _number(c.column)
        _refuse(frame, "covariates are numbers (or true/false)", c.column, _given(c.column) & value.is_null(), hint="; write plain numbers such as 1234.5")
        _refuse(frame, "covariates are finite numbers", c.column, ~value.is_finite())
    names = [c.column for c in used]
    values = frame.select(*KEYS, "DATE", *(_number(c).alias(c) for c in names))
    per_period = covariate_periods(values, names, frequency)
    return UploadCovariates(
        tuple(columns),
        Covariates(per_period, tuple(c.column for c in used if c.kind == "known"), tuple(c.column for c in used if c.kind == "observed")),
    )


def check_known_future(covariates: Covariates, last: dt.date, horizon: int, frequency: str, series: pl.DataFrame) -> None:
    """Every known covariate has a value for every series (COUNTRY, PRODUCT of `series`) and
    forecast period after `last`; a 422 naming the column and the missing (product, period)s."""
    step = dt.timedelta(days=7 if frequency == "weekly" else 1)
    periods = pl.DataFrame({"PERIOD": [last + step * (i + 1) for i in range(horizon)]})
    needed = series.select(KEYS).unique().join(periods, how="cross")
    cells = needed.join(covariates.values, on=[*KEYS, "PERIOD"], how="left")
    for column in covariates.known:
        missing = cells.filter(pl.col(column).is_null()).sort(*KEYS, "PERIOD")
        if missing.height:
            examples = missing.select("PRODUCT", pl.col("PERIOD").cast(pl.String)).head(5).to_dicts()
            raise CovariateError(
                422,
                f"rule 'known covariates are given for every forecast period' on column {column}: {missing.height} of {cells.height} "
                f"(product, period)s lack a value, e.g. {examples}; add rows dated in those periods with an empty UNITS and the value, "
                f"or declare it observed={column}",
            )
