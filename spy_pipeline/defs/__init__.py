"""Dagster objects, grouped by area. Thin shells over the plain modules of the package."""

import warnings

from dagster import BetaWarning

# Single-run backfill policies and column-schema checks are Dagster beta APIs we rely on on purpose.
warnings.filterwarnings("ignore", category=BetaWarning)
