"""demand_assets: demand forecasting and marketing-spend impact as a Dagster asset graph.

Pure logic lives in `marketing`, `sources` and `features` (no Dagster imports); the Dagster
assets that wrap it live in `domains`, and `definitions` assembles the code location.
"""
