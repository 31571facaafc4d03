"""Small PNG charts embedded in markdown metadata as data URIs."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on workers
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

__all__ = ["line_chart_markdown", "scatter_chart_markdown"]


def _to_markdown(fig, title: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def line_chart_markdown(frame: pl.DataFrame, x: str, panels: Sequence[str], by: str | None = None, title: str = "") -> str:
    """One panel per column in `panels`, one line per value of `by`."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), sharex=True, squeeze=False)
    groups = frame.partition_by(by, as_dict=True, maintain_order=True) if by else {("all",): frame}
    for ax, column in zip(axes[:, 0], panels):
        for key, part in sorted(groups.items()):
            part = part.sort(x)
            ax.plot(part[x].to_list(), part[column].to_list(), label=str(key[0]), linewidth=1)
        ax.set_ylabel(column, fontsize=8)
        ax.tick_params(labelsize=7)
    if by:
        axes[0, 0].legend(fontsize=7, ncol=min(len(groups), 6), loc="upper left")
    if title:
        axes[0, 0].set_title(title, fontsize=10)
    fig.autofmt_xdate()
    return _to_markdown(fig, title or "chart")


def scatter_chart_markdown(frame: pl.DataFrame, x: str, y: str, by: str, title: str = "") -> str:
    """Small multiples of y against x, one per value of `by` (e.g. response against spend)."""
    groups = sorted(frame.partition_by(by, as_dict=True, maintain_order=True).items())
    cols = min(len(groups), 4)
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.3 * rows), squeeze=False)
    for ax, (key, part) in zip(axes.flat, groups):
        ax.scatter(part[x].to_list(), part[y].to_list(), s=4, alpha=0.5)
        ax.set_title(str(key[0]), fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.suptitle(title or f"{y} vs {x}", fontsize=9)
    return _to_markdown(fig, title or f"{y} vs {x}")
