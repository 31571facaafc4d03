"""A CSV snapshot is read as text first: every way a file can fail to fit its table's columns is
a named rule with the column and the offending lines, recorded as the table's failed contract
check, and nothing is written. The corrupted files are generated from a good export."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from contracts import SourceFormatError
from demand_assets.sources import Domain
from demand_assets.sources.csv_snapshot import CSV_FILES, CsvSnapshotSource, export_snapshot
from resources import DemandSourceResource
from tests.conftest import materialize_range, small_resources

START, END = dt.date(2024, 1, 1), dt.date(2024, 1, 11)
CHANNEL, PRODUCT = CSV_FILES[Domain.CHANNEL_SPEND_RESPONSE], CSV_FILES[Domain.PRODUCT_DEMAND]


@pytest.fixture(scope="module")
def good(tmp_path_factory, small_source) -> Path:
    folder = tmp_path_factory.mktemp("good")
    export_snapshot(small_source, START, END, folder)
    return folder


def _set_cell(path: Path, column: str, line: int, value: str) -> None:
    frame = pl.read_csv(path, infer_schema=False)
    frame.with_row_index("_i").with_columns(pl.when(pl.col("_i") == line - 2).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)).drop("_i").write_csv(
        path
    )


def _rename(path: Path, old: str, new: str) -> None:
    lines = path.read_text().split("\n", 1)
    path.write_text(lines[0].replace(old, new, 1) + "\n" + lines[1])


CASES: dict[str, tuple[str, Callable[[Path], None], str, str]] = {
    # name: (file, corruption, rule fragment, column)
    "text_in_a_float": (CHANNEL, lambda p: _set_cell(p, "SPEND", 5, "abc"), "decimal numbers", "SPEND"),
    "thousands_separator": (CHANNEL, lambda p: _set_cell(p, "SPEND", 5, "1,234.5"), "decimal numbers", "SPEND"),
    "decimal_in_a_count": (PRODUCT, lambda p: _set_cell(p, "PRODUCT_DEMAND", 7, "2.5"), "whole numbers", "PRODUCT_DEMAND"),
    "other_date_format": (PRODUCT, lambda p: _set_cell(p, "DATE", 7, "01/02/2024"), "dates are YYYY-MM-DD", "DATE"),
    "impossible_date": (CHANNEL, lambda p: _set_cell(p, "DATE", 4, "2024-02-30"), "dates are YYYY-MM-DD", "DATE"),
    "not_a_boolean": (PRODUCT, lambda p: _set_cell(p, "PROMO", 3, "yes"), "true or false", "PROMO"),
    "lower_case_header": (CHANNEL, lambda p: _rename(p, "SPEND", "spend"), "expected columns", "SPEND"),
    "padded_header": (CHANNEL, lambda p: _rename(p, "SPEND", " SPEND "), "expected columns", "SPEND"),
    "semicolons": (CHANNEL, lambda p: p.write_text(p.read_text().replace(",", ";")), "comma-separated", "<header>"),
    "invalid_utf8": (PRODUCT, lambda p: p.write_bytes(p.read_bytes().replace(b"P00003", b"P\xff0003", 1)), "UTF-8 text", "<file>"),
    "empty_file": (CHANNEL, lambda p: p.write_text(""), "file is not empty", "<file>"),
    "header_only": (CHANNEL, lambda p: p.write_text(p.read_text().split("\n", 1)[0] + "\n"), "rows after the header", "<file>"),
    "ragged_row": (CHANNEL, lambda p: p.write_text(p.read_text() + "2024-01-05,US,TV,1.0,2.0,extra\n"), "well-formed CSV", "<file>"),
    "a_folder_not_a_file": (CHANNEL, lambda p: (p.unlink(), p.mkdir()), "a file, not a folder", "<file>"),
}


def _corrupt(good: Path, tmp_path: Path, case: str) -> Path:
    folder = tmp_path / "snapshot"
    shutil.copytree(good, folder)
    file, corrupt, _, _ = CASES[case]
    corrupt(folder / file)
    return folder


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_format_problem_is_a_named_rule_with_its_column_and_lines(good, tmp_path, case):
    file, _, rule, column = CASES[case]
    source = CsvSnapshotSource(_corrupt(good, tmp_path, case))
    domain = next(d for d, f in CSV_FILES.items() if f == file)
    with pytest.raises(SourceFormatError) as err:
        list(source.read(domain, START, END))
    (violation,) = [v for v in err.value.violations if rule in v.rule and v.column == column]
    assert violation.column == column
    message = str(err.value)
    assert f"rule '{violation.rule}' on column {column}" in message
    if column not in ("<file>", "<header>") and "columns" not in rule:
        assert violation.n_rows == 1 and "LINE=" in message  # the offending line of the file
    if case == "lower_case_header":
        assert "did you mean=spend" in message
    if case == "invalid_utf8":
        assert "line=" in message


def test_the_good_export_reads_back_as_typed_columns(good):
    frame = next(iter(CsvSnapshotSource(good).read(Domain.PRODUCT_DEMAND, START, END)))
    assert frame.schema["DATE"] == pl.Date and frame.schema["PRODUCT_DEMAND"] == pl.Int64 and frame.schema["PROMO"] == pl.Boolean


@pytest.mark.parametrize("case", ["text_in_a_float", "lower_case_header", "empty_file"])
def test_a_format_problem_is_a_failed_contract_check_and_nothing_is_written(good, tmp_path, case):
    folder = _corrupt(good, tmp_path, case)
    resources = small_resources(tmp_path / "delta", source=DemandSourceResource(kind="csv", csv_dir=str(folder)))
    result = materialize_range(resources, "2024-01-01", "2024-01-10")
    assert not result.success
    evaluations = {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    check = evaluations["channel_spend_response_contract"]
    assert check.passed is False and CASES[case][2] in check.metadata["violations"].value
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "channel_spend_response" not in materialized and "product_demand" not in materialized
    assert not resources["store"].exists("channel_spend_response")
    assert dg.DagsterEventType.STEP_FAILURE in {e.event_type for e in result.all_events}


def test_a_day_missing_from_a_file_is_a_named_failure_not_a_hole(good, tmp_path):
    """A whole day missing from the product file used to pass every check: product_demand and
    the training dataset silently lost the day."""
    folder = tmp_path / "snapshot"
    shutil.copytree(good, folder)
    product = folder / PRODUCT
    pl.read_csv(product, infer_schema=False).filter(pl.col("DATE") != "2024-01-04").write_csv(product)
    resources = small_resources(tmp_path / "delta", source=DemandSourceResource(kind="csv", csv_dir=str(folder)))
    result = materialize_range(resources, "2024-01-01", "2024-01-10")
    assert not result.success
    evaluations = {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    violations = evaluations["product_demand_contract"].metadata["violations"].value
    assert evaluations["product_demand_contract"].passed is False
    assert "every day of the window has rows" in violations and "2024-01-04" in violations
    assert not resources["store"].exists("product_demand") and not resources["store"].exists("training_dataset")
