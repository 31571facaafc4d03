"""Reading an uploaded CSV defensively: every byte and line of it, not only the header.

polars reads fast but says little about where a file is broken (and pads a short row with
nulls), so the bytes are checked first: strict UTF-8, then the structure with the standard
library's csv reader (every record has the header's number of fields, every quote is closed).
Each check raises `UploadError` naming the rule and the line, which the service answers as a 400.
"""

from __future__ import annotations

import csv
import io

import polars as pl

__all__ = ["UploadError", "check_structure", "decode_utf8", "read_header", "read_table"]


class UploadError(ValueError):
    """An upload that breaks a rule; the message names the rule, and the line when known."""


def decode_utf8(content: bytes) -> str:
    """The upload as text; a byte that is not UTF-8 is named with its line and position."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as err:
        line = content.count(b"\n", 0, err.start) + 1
        position = err.start - content.rfind(b"\n", 0, err.start)
        raise UploadError(
            f"rule 'UTF-8 text': line {line}, byte {position} (0x{content[err.start : err.end].hex()}) is not valid UTF-8; save the file as UTF-8"
        ) from err


def check_structure(text: str) -> None:
    """Every record has as many fields as the header, and every quoted field is closed. Blank
    lines are let through (they read as empty rows, which the value rules then name)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    expected: int | None = None
    start = 1  # the line the record being read starts on
    try:
        for row in reader:
            if row and expected is None:
                expected = len(row)
            elif row and len(row) != expected:
                raise UploadError(
                    f"rule 'same number of fields on every line': line {start} has {len(row)} field(s), the header has {expected}; "
                    "look for an unquoted comma or a missing value"
                )
            start = reader.line_num + 1
    except csv.Error as err:
        raise UploadError(_quoting_message(str(err), start, reader.line_num)) from err


def _quoting_message(error: str, start: int, line: int) -> str:
    if "unexpected end of data" in error:
        return f"rule 'quotes are closed': the quoted field starting on line {start} is never closed (unterminated quote)"
    if "field larger than field limit" in error:
        return f"rule 'quotes are closed': the field starting on line {start} runs over {csv.field_size_limit()} characters; a quote there is probably never closed"
    return f"rule 'well-formed quoting': line {line}: {error} (a closing quote must end its field)"


def read_header(content: bytes) -> list[str]:
    try:
        return pl.read_csv(content, n_rows=0).columns
    except pl.exceptions.PolarsError as err:
        raise UploadError(f"rule 'readable CSV': the header is not readable ({str(err)[:200]})") from err


def read_table(content: bytes) -> pl.DataFrame:
    """Every column as text; a failure polars finds past the checks above is still a rule."""
    try:
        return pl.read_csv(content, infer_schema=False)
    except pl.exceptions.PolarsError as err:
        raise UploadError(f"rule 'readable CSV': {type(err).__name__}: {str(err)[:200]}") from err
