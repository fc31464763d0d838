"""Dagster objects, grouped by area. Thin shells over the plain modules of the package."""
