"""Reading an uploaded CSV defensively: every byte and line of it, not only the header.

polars reads fast but says little about where a file is broken (and pads a short row with
nulls), so the bytes are checked first: strict UTF-8, then the structure with the standard
library's csv reader (every record has the header's number of fields, every quote is closed).
Each check raises `UploadError` naming the rule and the line, which the service answers as a 400.
"""

from __future__ import annotations

import polars as pl

from demand_assets.sources.csv_structure import structure_problem

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
    """Every record has as many fields as the header, and every quoted field is closed."""
    problem = structure_problem(text)
    if problem is not None:
        raise UploadError(problem[1])


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
