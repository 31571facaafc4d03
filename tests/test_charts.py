"""Charts a person reads in the UI: every panel has both axis labels, and no title overlaps
another title or a panel's labels."""

from __future__ import annotations

import datetime as dt
import itertools

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest

from demand_assets.reporting.charts import (
    forecast_band_figure,
    line_chart_figure,
    metric_comparison_figure,
    ranked_bar_figure,
    response_curve_figure,
    scatter_chart_figure,
)

DAYS = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(60)]


def _daily() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "DATE": DAYS * 3,
            "CHANNEL": [c for c in ("SEARCH", "SOCIAL", "TV") for _ in DAYS],
            "SPEND": rng.gamma(2, 500, 180),
            "CHANNEL_RESPONSE": rng.gamma(2, 50, 180),
        }
    )


def _forecast() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "DATE": DAYS * 2,
            "COUNTRY": ["DE"] * 120,
            "PRODUCT": ["P1"] * 60 + ["P2"] * 60,
            "ACTUAL": [float(i % 7) for i in range(120)],
            "P10": [1.0] * 120,
            "P50": [3.0] * 120,
            "P90": [6.0] * 120,
        }
    )


CHARTS = {
    "line (spend and response)": lambda: line_chart_figure(
        _daily(), "DATE", ["SPEND", "CHANNEL_RESPONSE"], by="CHANNEL", title="Spend and response by channel"
    ),
    "scatter (response vs spend)": lambda: scatter_chart_figure(_daily(), "SPEND", "CHANNEL_RESPONSE", by="CHANNEL", title="Daily response against spend"),
    "forecast bands": lambda: forecast_band_figure(_forecast(), [("DE", "P1"), ("DE", "P2")], "lightgbm: last fold"),
    "metric bars": lambda: metric_comparison_figure(
        pl.DataFrame({"MODEL": ["a", "a", "b", "b"], "REGIME": ["all", "in_stock"] * 2, "WAPE": [0.5, 0.4, 0.6, 0.5]}), "WAPE", "MODEL", "REGIME"
    ),
    "ranked bars": lambda: ranked_bar_figure(pl.DataFrame({"ITEM": ["x", "y"], "V": [2.0, 1.0], "LO": [1.5, 0.5], "HI": [2.5, 1.5]}), "ITEM", "V", "LO", "HI"),
    "response curves": lambda: response_curve_figure(
        [
            {
                "channel": ch,
                "lines": [
                    {"label": "DE", "spend": [0, 1, 2], "p50": [0, 1, 1.5], "p10": [0, 0.8, 1.2], "p90": [0, 1.2, 1.8], "current_spend": 1, "current_value": 1}
                ],
            }
            for ch in ("SEARCH", "TV")
        ],
        title="Response curves",
    ),
}


@pytest.mark.parametrize("name", list(CHARTS))
def test_every_panel_is_labelled_and_no_title_overlaps(name):
    fig = CHARTS[name]()
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        axes = [ax for ax in fig.axes if ax.get_visible()]
        for ax in axes:
            assert ax.get_xlabel() and ax.get_ylabel(), f"{name}: a panel lacks an axis label"
        titles = [t for t in [fig._suptitle, *(ax.title for ax in axes)] if t is not None and t.get_text()]
        boxes = [t.get_window_extent(renderer) for t in titles]
        for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
            assert not a.overlaps(b), f"{name}: titles {titles[i].get_text()!r} and {titles[j].get_text()!r} overlap"
        for title, box in zip(titles, boxes):
            for ax in axes:
                for label in (ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()):
                    if label.get_visible() and label.get_text():
                        assert not box.overlaps(label.get_window_extent(renderer)), f"{name}: title {title.get_text()!r} overlaps {label.get_text()!r}"
    finally:
        plt.close(fig)
