"""What a person sees in the Dagster UI: markdown tables and charts for asset metadata."""

from demand_assets.reporting.charts import (
    figure_to_markdown,
    forecast_band_figure,
    line_chart_markdown,
    metric_comparison_figure,
    ranked_bar_figure,
    response_curve_figure,
    scatter_chart_markdown,
)
from demand_assets.reporting.tables import frame_to_markdown

__all__ = [
    "figure_to_markdown",
    "forecast_band_figure",
    "frame_to_markdown",
    "line_chart_markdown",
    "metric_comparison_figure",
    "ranked_bar_figure",
    "response_curve_figure",
    "scatter_chart_markdown",
]
