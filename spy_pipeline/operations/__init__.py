"""Storage operations on the data dir: retention, a storage report, the instance status. No Dagster here
except in `status` (it reads the Dagster instance); the Dagster shells are in spy_pipeline.defs.operations."""
