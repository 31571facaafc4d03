"""Dagster assets of the four data domains (thin wrappers over `sources`, `features`, `contracts`)."""

import warnings

import dagster as dg

# BackfillPolicy and range-aware partition mappings are marked beta in Dagster 1.13; we rely on
# them deliberately (single-run backfills), so their warnings would only be noise for users.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
