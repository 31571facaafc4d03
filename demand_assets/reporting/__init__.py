"""What a person sees in the Dagster UI: markdown tables and charts for asset metadata."""

from demand_assets.reporting.charts import line_chart_markdown, scatter_chart_markdown
from demand_assets.reporting.tables import frame_to_markdown

__all__ = ["frame_to_markdown", "line_chart_markdown", "scatter_chart_markdown"]
