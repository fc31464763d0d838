"""Unattended operation: a nightly schedule, a catch-up safety net, weekly reference data, failure logging,
and the step retry policy for the Polygon-bound assets.

Wire into the code location (spy_pipeline/definitions.py):

    Definitions(..., jobs=[daily_backfill_job, reference_data_job, ...], schedules=SCHEDULES, sensors=SENSORS)

The schedule and sensors name their jobs ("daily_backfill", "reference_data"); Definitions resolves them.
Every one starts RUNNING as soon as the daemon (`dagster dev`, `dagster-daemon run`) loads the location.
"""

from spy_pipeline.defs.automation.retries import POLYGON_RETRY_POLICY
from spy_pipeline.defs.automation.schedules import after_close_schedule, build_nightly_schedule
from spy_pipeline.defs.automation.sensors import (
    build_catch_up_sensor,
    build_reference_sensor,
    catch_up_sensor,
    reference_refresh_sensor,
    run_failure_logger,
)

SCHEDULES = [after_close_schedule]
SENSORS = [catch_up_sensor, reference_refresh_sensor, run_failure_logger]

__all__ = [
    "POLYGON_RETRY_POLICY",
    "SCHEDULES",
    "SENSORS",
    "after_close_schedule",
    "build_catch_up_sensor",
    "build_nightly_schedule",
    "build_reference_sensor",
    "catch_up_sensor",
    "reference_refresh_sensor",
    "run_failure_logger",
]
