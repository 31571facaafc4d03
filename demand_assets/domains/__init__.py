"""Dagster assets of the four data domains (thin wrappers over `sources`, `features`, `contracts`)."""
