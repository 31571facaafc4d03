"""Small PNG charts embedded in markdown metadata as data URIs."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on workers
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

__all__ = [
    "figure_to_markdown",
    "forecast_band_figure",
    "line_chart_figure",
    "line_chart_markdown",
    "metric_comparison_figure",
    "ranked_bar_figure",
    "response_curve_figure",
    "scatter_chart_figure",
    "scatter_chart_markdown",
]


def figure_to_markdown(fig, title: str) -> str:
    """A figure as a markdown image (data URI), closing it."""
    return _to_markdown(fig, title)


def _to_markdown(fig, title: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def line_chart_markdown(frame: pl.DataFrame, x: str, panels: Sequence[str], by: str | None = None, title: str = "") -> str:
    """One panel per column in `panels`, one line per value of `by`."""
    return _to_markdown(line_chart_figure(frame, x, panels, by, title), title or "chart")


def line_chart_figure(frame: pl.DataFrame, x: str, panels: Sequence[str], by: str | None = None, title: str = ""):
    # Constrained layout keeps the title, the legend and every panel's labels from overlapping.
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), sharex=True, squeeze=False, layout="constrained")
    groups = frame.partition_by(by, as_dict=True, maintain_order=True) if by else {("all",): frame}
    for ax, column in zip(axes[:, 0], panels):
        for key, part in sorted(groups.items()):
            part = part.sort(x)
            ax.plot(part[x].to_list(), part[column].to_list(), label=str(key[0]), linewidth=1)
        ax.set_ylabel(column, fontsize=8)
        ax.set_xlabel(x, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.tick_params(axis="x", labelbottom=True, labelrotation=20)
    if by:
        axes[0, 0].legend(fontsize=7, ncol=min(len(groups), 6), loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def scatter_chart_markdown(frame: pl.DataFrame, x: str, y: str, by: str, title: str = "") -> str:
    """Small multiples of y against x, one per value of `by` (e.g. response against spend)."""
    return _to_markdown(scatter_chart_figure(frame, x, y, by, title), title or f"{y} vs {x}")


def scatter_chart_figure(frame: pl.DataFrame, x: str, y: str, by: str, title: str = ""):
    groups = sorted(frame.partition_by(by, as_dict=True, maintain_order=True).items())
    cols = min(len(groups), 4)
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.5 * rows + 0.4), squeeze=False, layout="constrained")
    for ax, (key, part) in zip(axes.flat, groups):
        ax.scatter(part[x].to_list(), part[y].to_list(), s=4, alpha=0.5)
        ax.set_title(str(key[0]), fontsize=8)
        ax.set_xlabel(x, fontsize=7)
        ax.set_ylabel(y, fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    fig.suptitle(title or f"{y} vs {x}", fontsize=9)
    return fig


def forecast_band_figure(frame: pl.DataFrame, series: Sequence[tuple[str, str]], title: str = ""):
    """Per series: observed sales, true demand (if present), the p50 forecast and its p10-p90
    band. `frame` has DATE, COUNTRY, PRODUCT, ACTUAL, P10, P50, P90 (and TRUE_DEMAND)."""
    fig, axes = plt.subplots(len(series), 1, figsize=(9, 2.3 * len(series)), squeeze=False)
    for ax, (country, product) in zip(axes[:, 0], series):
        part = frame.filter((pl.col("COUNTRY") == country) & (pl.col("PRODUCT") == product)).sort("DATE")
        # History rows have no forecast and future rows no actual: draw each where it exists.
        fc = part.filter(pl.col("P50").is_not_null())
        ax.fill_between(fc["DATE"].to_list(), fc["P10"].to_list(), fc["P90"].to_list(), alpha=0.25, label="p10-p90")
        ax.plot(fc["DATE"].to_list(), fc["P50"].to_list(), linewidth=1.2, label="p50")
        seen = part.filter(pl.col("ACTUAL").is_not_null())
        ax.plot(seen["DATE"].to_list(), seen["ACTUAL"].to_list(), "k.", markersize=4, label="observed sales")
        if "TRUE_DEMAND" in part.columns:
            true = part.filter(pl.col("TRUE_DEMAND").is_not_null())
            ax.plot(true["DATE"].to_list(), true["TRUE_DEMAND"].to_list(), "r+", markersize=4, label="true demand")
        ax.set_title(f"{country} / {product}", fontsize=8)
        ax.set_xlabel("date", fontsize=7)
        ax.set_ylabel("units", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.tick_params(axis="x", labelrotation=20)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def metric_comparison_figure(metrics: pl.DataFrame, metric: str, group: str, hue: str, title: str = ""):
    """Grouped bars: `metric` per `group` (e.g. model), one bar per `hue` (e.g. regime)."""
    groups = metrics[group].unique(maintain_order=True).to_list()
    hues = metrics[hue].unique(maintain_order=True).to_list()
    width = 0.8 / max(len(hues), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups)), 3.2))
    for i, h in enumerate(hues):
        values = [metrics.filter((pl.col(group) == g) & (pl.col(hue) == h))[metric].mean() for g in groups]
        ax.bar([x + i * width for x in range(len(groups))], [v if v is not None else 0 for v in values], width, label=str(h))
    ax.set_xticks([x + width * (len(hues) - 1) / 2 for x in range(len(groups))])
    ax.set_xticklabels(groups, fontsize=7, rotation=20)
    ax.set_xlabel(group, fontsize=8)
    ax.set_ylabel(metric, fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(title or f"{metric} by {group}", fontsize=9)
    return fig


def response_curve_figure(panels: Sequence[dict], title: str = ""):
    """One panel per channel: incremental revenue per day against a steady daily spend, one line
    per country with its bootstrap P10-P90 band and a dot at the current spend.
    Each panel dict: channel, and lines: [{label, spend, p50, p10, p90, current_spend, current_value}]."""
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for line in panel["lines"]:
            (handle,) = ax.plot(line["spend"], line["p50"], linewidth=1.2, label=line["label"])
            ax.fill_between(line["spend"], line["p10"], line["p90"], alpha=0.2, color=handle.get_color())
            ax.plot([line["current_spend"]], [line["current_value"]], "o", color=handle.get_color(), markersize=4)
        ax.set_title(panel["channel"], fontsize=9)
        ax.set_xlabel("daily spend", fontsize=7)
        ax.set_ylabel("incremental revenue / day", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def ranked_bar_figure(frame: pl.DataFrame, label: str, value: str, low: str, high: str, title: str = ""):
    """Horizontal bars of `value` for the rows of `frame` in order, with [low, high] error bars."""
    labels = frame[label].to_list()[::-1]
    values = frame[value].to_numpy()[::-1]
    lower = (values - frame[low].to_numpy()[::-1]).clip(min=0)
    upper = (frame[high].to_numpy()[::-1] - values).clip(min=0)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(labels) + 1.2))
    ax.barh(range(len(labels)), values, xerr=[lower, upper], capsize=2, alpha=0.8)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel(value, fontsize=8)
    ax.set_ylabel(label, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title or value, fontsize=9)
    fig.tight_layout()
    return fig
