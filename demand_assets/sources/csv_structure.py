"""Where a CSV text is malformed, found with the standard library's csv reader: polars reads
fast but says little about where a file is broken (and pads a short row with nulls)."""

from __future__ import annotations

import csv
import io

__all__ = ["structure_problem"]


def structure_problem(text: str) -> tuple[int, str] | None:
    """(line, message) of the first record whose field count differs from the header's or whose
    quoted field is never closed; None for a well-formed text. Blank lines are let through (they
    read as empty rows, which the value rules then name)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    expected: int | None = None
    start = 1  # the line the record being read starts on
    try:
        for row in reader:
            if row and expected is None:
                expected = len(row)
            elif row and len(row) != expected:
                return start, (
                    f"rule 'same number of fields on every line': line {start} has {len(row)} field(s), the header has {expected}; "
                    "look for an unquoted comma or a missing value"
                )
            start = reader.line_num + 1
    except csv.Error as err:
        return start, _quoting_message(str(err), start, reader.line_num)
    return None


def _quoting_message(error: str, start: int, line: int) -> str:
    if "unexpected end of data" in error:
        return f"rule 'quotes are closed': the quoted field starting on line {start} is never closed (unterminated quote)"
    if "field larger than field limit" in error:
        return f"rule 'quotes are closed': the field starting on line {start} runs over {csv.field_size_limit()} characters; a quote there is probably never closed"
    return f"rule 'well-formed quoting': line {line}: {error} (a closing quote must end its field)"
