"""Polars frames as markdown tables (the Dagster UI renders markdown metadata)."""

from __future__ import annotations

import polars as pl

__all__ = ["frame_to_markdown"]


def frame_to_markdown(frame: pl.DataFrame, max_rows: int = 10, float_digits: int = 3) -> str:
    shown = frame.head(max_rows).with_columns(pl.selectors.float().round(float_digits))
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    body = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in shown.iter_rows()]
    more = [f"\n_{frame.height - max_rows} more rows_"] if frame.height > max_rows else []
    return "\n".join([header, rule, *body, *more])
