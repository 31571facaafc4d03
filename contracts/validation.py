"""Running a contract and reporting what broke, in words a person can act on."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandera.polars as pa
import polars as pl

__all__ = ["ContractContext", "ContractError", "ContractReport", "SourceFormatError", "TableContract", "Violation", "named_check"]

MAX_EXAMPLES = 5
MAX_NAME_CHARS = 100  # countries, channels, products


@dataclass(frozen=True)
class ContractContext:
    """What a frame is checked against beyond its schema: its window and the known categories."""

    window_start: dt.date
    window_end: dt.date  # exclusive
    categories: Mapping[str, Sequence[str]] = field(default_factory=dict)  # column -> allowed values
    upper_bounds: Mapping[str, float] = field(default_factory=dict)  # column -> largest plausible value, overriding the table's


@dataclass(frozen=True)
class Violation:
    """One broken rule: which rule, on which column, how many rows, and some of those rows."""

    rule: str
    column: str
    n_rows: int
    examples: tuple[dict, ...] = ()

    def describe(self) -> str:
        rows = "; ".join(_format_row(r) for r in self.examples)
        more = f" (showing {len(self.examples)})" if self.examples and self.n_rows > len(self.examples) else ""
        # A structural problem (a header, an unreadable file) concerns no particular row.
        text = f"rule '{self.rule}' on column {self.column}" + (f": {self.n_rows} offending row(s)" if self.n_rows else "")
        return f"{text}{more}: {rows}" if rows else text


def _format_row(row: Mapping) -> str:
    return "{" + ", ".join(f"{k}={_shown(v)}" for k, v in row.items()) + "}"


def _shown(value: object, limit: int = 120) -> str:
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


@dataclass(frozen=True)
class ContractReport:
    """The outcome of one check (a table contract or a cross-table rule) over one frame."""

    check: str
    n_rows: int
    violations: tuple[Violation, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def n_failed_rows(self) -> int:
        return sum(v.n_rows for v in self.violations)

    def describe(self) -> str:
        if self.passed:
            return f"{self.check}: passed on {self.n_rows} rows"
        lines = [f"{self.check}: {len(self.violations)} rule(s) broken on {self.n_rows} rows checked"]
        lines += [f"  - {v.describe()}" for v in self.violations]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        if self.passed:
            return f"All rules of `{self.check}` hold on {self.n_rows} rows."
        rows = ["| rule | column | offending rows | examples |", "|---|---|---|---|"]
        for v in self.violations:
            examples = "<br>".join(_format_row(r) for r in v.examples).replace("|", "\\|")
            rows.append(f"| `{v.rule}` | `{v.column}` | {v.n_rows} | {examples} |")
        return "\n".join(rows)

    def merge(self, other: ContractReport) -> ContractReport:
        """Combine reports of the same check over consecutive chunks."""
        merged: dict[tuple[str, str], Violation] = {(v.rule, v.column): v for v in self.violations}
        for v in other.violations:
            key = (v.rule, v.column)
            if key in merged:
                old = merged[key]
                examples = (old.examples + v.examples)[:MAX_EXAMPLES]
                merged[key] = Violation(v.rule, v.column, old.n_rows + v.n_rows, examples)
            else:
                merged[key] = v
        return ContractReport(self.check, self.n_rows + other.n_rows, tuple(merged.values()))


class ContractError(ValueError):
    """Raised when data breaks a contract; nothing is written when this is raised."""

    def __init__(self, reports: Sequence[ContractReport]) -> None:
        self.reports = tuple(r for r in reports if not r.passed)
        super().__init__("data contract broken, nothing was written:\n" + "\n".join(r.describe() for r in self.reports))


class SourceFormatError(ValueError):
    """A source file that cannot be read into its table's columns (encoding, delimiter, header,
    a value that does not parse): raised by a source while producing rows, and recorded by the
    writer as violations of the table's contract, like any other broken rule."""

    def __init__(self, table: str, violations: Sequence[Violation]) -> None:
        self.table = table
        self.violations = tuple(violations)
        super().__init__(f"{table} could not be read:\n" + "\n".join(f"  - {v.describe()}" for v in self.violations))


def named_check(name: str, predicate: Callable[[pl.Expr], pl.Expr]) -> pa.Check:
    """A row-wise polars check whose failures carry a readable rule name."""

    def _check(data) -> pl.LazyFrame:
        return data.lazyframe.select(predicate(pl.col(data.key)).alias(data.key))

    return pa.Check(_check, name=name, error=name)


@dataclass(frozen=True)
class TableContract:
    """A table's DataFrameModel plus its keys and which columns must hold known categories."""

    name: str
    model: type[pa.DataFrameModel]
    keys: tuple[str, ...]
    category_columns: tuple[str, ...] = ()
    date_column: str = "DATE"
    upper_bounds: Mapping[str, float] = field(default_factory=dict)  # column -> largest plausible value

    def schema(self, ctx: ContractContext) -> pa.DataFrameSchema:
        schema = self.model.to_schema()
        start, end = ctx.window_start, ctx.window_end
        updates: dict[str, dict] = {
            self.date_column: {
                "checks": [
                    *schema.columns[self.date_column].checks,
                    named_check(f"date_inside_partition[{start}, {end})", lambda c: c.is_between(start, end, closed="left")),
                ]
            }
        }
        bounds = {**self.upper_bounds, **ctx.upper_bounds}
        for column, spec in schema.columns.items():
            if "Float" not in str(spec.dtype):
                continue
            # inf and NaN pass >= 0; a number no business could produce (1e308 spend) is a unit
            # or parsing error: both would be stored and fed to the models.
            checks = [named_check("finite_number", _finite_or_null)]
            if column in bounds:
                checks.append(named_check(f"at_most_{bounds[column]:g}", functools.partial(_at_most, bound=bounds[column])))
            updates[column] = {"checks": [*spec.checks, *checks]}
        for column in self.category_columns:
            if column not in schema.columns:
                continue
            # A name is an identifier, not a document: 10,000 characters is a broken export.
            checks = [*schema.columns[column].checks, named_check(f"at_most_{MAX_NAME_CHARS}_characters", _short_name)]
            allowed = ctx.categories.get(column)
            if allowed is not None:
                checks.append(named_check(f"known_{column.lower()}", functools.partial(_is_in, allowed=list(allowed))))
            updates[column] = {"checks": checks}
        return schema.update_columns(updates)

    def validate(self, frame: pl.DataFrame, ctx: ContractContext) -> ContractReport:
        try:
            self.schema(ctx).validate(frame, lazy=True)
        except pa.errors.SchemaErrors as err:
            return ContractReport(self.name, frame.height, _violations_from(err.failure_cases, frame, self.keys))
        return ContractReport(self.name, frame.height)


def _violations_from(failure_cases: pl.DataFrame, frame: pl.DataFrame, keys: Sequence[str]) -> tuple[Violation, ...]:
    violations = []
    for (check, column), group in failure_cases.group_by(["check", "column"], maintain_order=True):
        column = column or "<table>"
        indices = [i for i in group["index"].to_list() if i is not None]
        if not indices:
            # Structural failures (a missing column, a wrong dtype) concern the column, not rows.
            values = ", ".join(str(v) for v in group["failure_case"].to_list()[:MAX_EXAMPLES])
            violations.append(Violation(str(check), column, frame.height if column in frame.columns else 0, ({"found": values},)))
            continue
        unique_idx = sorted(set(indices))
        shown_cols = [k for k in keys if k in frame.columns]
        if column in frame.columns and column not in shown_cols:
            shown_cols.append(column)
        examples = tuple(frame[unique_idx[:MAX_EXAMPLES]].select(shown_cols).to_dicts())
        violations.append(Violation(str(check), column, len(unique_idx), examples))
    return tuple(violations)


def _is_in(column: pl.Expr, allowed: list) -> pl.Expr:
    return column.is_in(allowed)


def _short_name(column: pl.Expr) -> pl.Expr:
    return column.str.len_chars() <= MAX_NAME_CHARS


def _finite_or_null(column: pl.Expr) -> pl.Expr:
    return column.is_finite() | column.is_null()  # nulls are the nullable rule's business


def _at_most(column: pl.Expr, bound: float) -> pl.Expr:
    return (column <= bound) | ~column.is_finite() | column.is_null()  # non-finite values break finite_number instead
