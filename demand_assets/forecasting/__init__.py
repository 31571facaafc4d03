"""Forecasting: the models, the rolling-origin backtest, metrics, and the registry of model names (no Dagster)."""
