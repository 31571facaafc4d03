"""Corrupted copies of a good CSV snapshot, generated (never hand-kept), each with the check and
the rule that must refuse it.

Every variant changes one file of a snapshot exported with `demand-export-csv` (or
`export_snapshot`): format problems a reader meets (delimiters, encodings, headers, quoting),
values a type cannot hold, impossible numbers, holes, duplicates, unknown categories, and totals
that do not reconcile. tests/test_corrupted_snapshots.py re-materializes each over a good store.

Write them all to a folder to look at: `python -m tests.snapshot_corruptions GOOD_SNAPSHOT OUT`.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from demand_assets.sources import Domain
from demand_assets.sources.csv_snapshot import CSV_FILES

__all__ = ["CORRUPT_DAY", "CORRUPTIONS", "Corruption", "apply", "ids"]

COUNTRY, CHANNEL, PRODUCT = (CSV_FILES[d] for d in (Domain.COUNTRY_DEMAND, Domain.CHANNEL_SPEND_RESPONSE, Domain.PRODUCT_DEMAND))
CHECKS = {COUNTRY: "country_demand_contract", CHANNEL: "channel_spend_response_contract", PRODUCT: "product_demand_contract"}
RECONCILIATION = "product_demand_reconciles_with_country_total"
FLOATS = {
    COUNTRY: ("ECONOMIC_INDEX", "INFLATION_RATE", "UNEMPLOYMENT_RATE", "BASELINE_DEMAND"),
    CHANNEL: ("SPEND", "CHANNEL_RESPONSE"),
    PRODUCT: ("PRICE",),
}
CORRUPT_DAY = "2024-01-15"  # inside the window the tests re-materialize


@dataclass(frozen=True)
class Corruption:
    name: str
    file: str
    change: Callable[[Path], None]
    check: str  # the check that must fail
    rule: str  # a fragment of the rule it must name


# --- changes to one file --------------------------------------------------------------------


def _frame(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


def _first_row_of_day() -> pl.Expr:
    return (pl.col("DATE") == CORRUPT_DAY) & (pl.int_range(pl.len()).over("DATE") == 0)


def set_value(column: str, value: str) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        frame = _frame(path)
        frame.with_columns(pl.when(_first_row_of_day()).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)).write_csv(path)

    return change


def scale_day(column: str, factor: float) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        frame = _frame(path)
        scaled = (pl.col(column).cast(pl.Float64) * factor).round(0).cast(pl.Int64) if column == "PRODUCT_DEMAND" else pl.col(column).cast(pl.Float64) * factor
        frame.with_columns(pl.when(pl.col("DATE") == CORRUPT_DAY).then(scaled.cast(pl.String)).otherwise(pl.col(column)).alias(column)).write_csv(path)

    return change


def drop_rows(which: Callable[[pl.DataFrame], pl.Expr]) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        frame = _frame(path)
        frame.filter(~which(frame)).write_csv(path)

    return change


def duplicate_a_row(path: Path) -> None:
    frame = _frame(path)
    pl.concat([frame, frame.filter(_first_row_of_day())]).write_csv(path)


def header(old: str, new: str) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        first, rest = path.read_text().split("\n", 1)
        path.write_text(",".join(new if c == old else c for c in first.split(",")) + "\n" + rest)

    return change


def add_column(path: Path) -> None:
    _frame(path).with_columns(pl.lit("x").alias("NOTE")).write_csv(path)


def drop_column(column: str) -> Callable[[Path], None]:
    return lambda path: _frame(path).drop(column).write_csv(path)


def text(edit: Callable[[str], str]) -> Callable[[Path], None]:
    return lambda path: path.write_text(edit(path.read_text()))


def raw_bytes(edit: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(edit(path.read_bytes()))


def folder_instead(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _middle_line(content: str, edit: Callable[[str], str]) -> str:
    lines = content.split("\n")
    middle = len(lines) // 2
    lines[middle] = edit(lines[middle])
    return "\n".join(lines)


# --- the variants ---------------------------------------------------------------------------


def _per_file(file: str) -> list[Corruption]:
    check, first_float = CHECKS[file], FLOATS[file][0]
    return [
        Corruption("semicolons", file, text(lambda s: s.replace(",", ";")), check, "comma-separated"),
        Corruption("tabs", file, text(lambda s: s.replace(",", "\t")), check, "comma-separated"),
        Corruption("invalid_utf8", file, raw_bytes(lambda b: b.replace(b"US", b"U\xff", 3)), check, "UTF-8 text"),
        Corruption("empty_file", file, text(lambda s: ""), check, "file is not empty"),
        Corruption("header_only", file, text(lambda s: s.split("\n", 1)[0] + "\n"), check, "rows after the header"),
        Corruption("a_folder", file, folder_instead, check, "a file, not a folder"),
        Corruption("ragged_row", file, text(lambda s: _middle_line(s, lambda line: line + ",extra")), check, "well-formed CSV"),
        Corruption("unterminated_quote", file, text(lambda s: _middle_line(s, lambda line: line.replace(",", ',"', 1))), check, "well-formed CSV"),
        Corruption("lower_case_header", file, header(first_float, first_float.lower()), check, "expected columns"),
        Corruption("padded_header", file, header(first_float, f" {first_float} "), check, "expected columns"),
        Corruption("extra_column", file, add_column, check, "no unexpected columns"),
        Corruption("missing_column", file, drop_column(first_float), check, "expected columns"),
        Corruption("us_date", file, set_value("DATE", "01/15/2024"), check, "dates are YYYY-MM-DD"),
        Corruption("impossible_date", file, set_value("DATE", "2024-02-30"), check, "dates are YYYY-MM-DD"),
        Corruption("month_13", file, set_value("DATE", "2024-13-01"), check, "dates are YYYY-MM-DD"),
        Corruption("missing_day", file, drop_rows(lambda f: pl.col("DATE") == CORRUPT_DAY), check, "every day of the window has rows"),
        Corruption(
            "missing_series_day",
            file,
            drop_rows(lambda f: (pl.col("DATE") == CORRUPT_DAY) & (pl.col("COUNTRY") == "US") & (pl.int_range(pl.len()).over("DATE", "COUNTRY") == 0)),
            check,
            "every series has a row on every day",
        ),
        Corruption("duplicate_row", file, duplicate_a_row, check, "unique"),
        Corruption("unknown_country", file, set_value("COUNTRY", "XX"), check, "known_country"),
        Corruption("empty_cell", file, set_value(first_float, ""), check, "not_nullable"),
    ]


def _numbers(file: str) -> list[Corruption]:
    check = CHECKS[file]
    found = []
    for column in FLOATS[file]:
        found += [
            Corruption(f"inf_{column}", file, set_value(column, "inf"), check, "finite_number"),
            Corruption(f"nan_{column}", file, set_value(column, "NaN"), check, "finite_number"),
            Corruption(f"text_{column}", file, set_value(column, "n/a"), check, "decimal numbers"),
            Corruption(f"comma_decimal_{column}", file, set_value(column, "12,5"), check, "decimal numbers"),
        ]
    return found


BOUNDED = [(CHANNEL, "SPEND"), (CHANNEL, "CHANNEL_RESPONSE"), (COUNTRY, "BASELINE_DEMAND"), (PRODUCT, "PRICE")]
NON_NEGATIVE = [(CHANNEL, "SPEND"), (CHANNEL, "CHANNEL_RESPONSE"), (PRODUCT, "PRODUCT_DEMAND")]

CORRUPTIONS: list[Corruption] = [
    *(c for file in (COUNTRY, CHANNEL, PRODUCT) for c in (*_per_file(file), *_numbers(file))),
    *(Corruption(f"1e308_{column}", file, set_value(column, "1e308"), CHECKS[file], "at_most_") for file, column in BOUNDED),
    *(Corruption(f"negative_{column}", file, set_value(column, "-5"), CHECKS[file], "greater_than_or_equal_to(0)") for file, column in NON_NEGATIVE),
    Corruption("zero_PRICE", PRODUCT, set_value("PRICE", "0"), CHECKS[PRODUCT], "greater_than(0)"),
    Corruption("decimal_count", PRODUCT, set_value("PRODUCT_DEMAND", "2.5"), CHECKS[PRODUCT], "whole numbers"),
    Corruption("yes_for_PROMO", PRODUCT, set_value("PROMO", "yes"), CHECKS[PRODUCT], "true or false"),
    Corruption("maybe_IN_STOCK", PRODUCT, set_value("IN_STOCK", "maybe"), CHECKS[PRODUCT], "true or false"),
    Corruption("unknown_product", PRODUCT, set_value("PRODUCT", "P99999"), CHECKS[PRODUCT], "known_product"),
    Corruption("10000_character_product", PRODUCT, set_value("PRODUCT", "P" * 10_000), CHECKS[PRODUCT], "at_most_100_characters"),
    Corruption("unknown_channel", CHANNEL, set_value("CHANNEL", "PODCAST"), CHECKS[CHANNEL], "known_channel"),
    Corruption("sales_far_above_the_total", PRODUCT, scale_day("PRODUCT_DEMAND", 50), RECONCILIATION, "product_sum_at_most_country_total"),
    Corruption("total_far_above_the_sales", COUNTRY, scale_day("BASELINE_DEMAND", 20), RECONCILIATION, "product_sum_reaches_country_total"),
    Corruption("media_response_far_above", CHANNEL, scale_day("CHANNEL_RESPONSE", 200), RECONCILIATION, "product_sum_reaches_country_total"),
]


def apply(corruption: Corruption, good: Path, folder: Path) -> Path:
    """A copy of the snapshot `good` in `folder`, with `corruption` applied."""
    shutil.copytree(good, folder)
    corruption.change(folder / corruption.file)
    return folder


def ids() -> list[str]:
    return [f"{c.file.removesuffix('.csv')}-{c.name}" for c in CORRUPTIONS]


if __name__ == "__main__":
    good_snapshot, out = Path(sys.argv[1]), Path(sys.argv[2])
    for corruption, name in zip(CORRUPTIONS, ids(), strict=True):
        apply(corruption, good_snapshot, out / name)
    print(f"wrote {len(CORRUPTIONS)} corrupted snapshots under {out}")
