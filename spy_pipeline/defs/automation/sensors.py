"""The automation condition sensor (declarative automation of the daily and reference assets) and the
one-line log of failed runs.

What the sensor requests is decided by the assets' conditions (spy_pipeline.defs.automation.conditions).
Dagster's default automation sensor starts stopped; this one starts RUNNING with the daemon (`dagster dev`,
`dagster-daemon run`) and emits a backfill whenever a tick requests more than one partition of an asset.
"""

from __future__ import annotations

import datetime as dt

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunFailureSensorContext,
    run_failure_sensor,
)

from spy_pipeline.domain.run_failures import failure_fields, failure_line
from spy_pipeline.logs import get_logger, redact

log = get_logger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


automation_condition_sensor = AutomationConditionSensorDefinition(
    "automation_condition_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    emit_backfills=True,
    description="Evaluates the assets' automation conditions every 30 s: each trading day missing in the last "
    "2 weeks (the day that just ended from 00:00 ET) as one backfill of single-run ranges, failed days left "
    "alone; corporate_actions when missing and on Sundays at 12:00 ET.",
)


@run_failure_sensor(
    name="run_failure_logger",
    default_status=DefaultSensorStatus.RUNNING,
    description="Logs every failed run of this code location in one structured line: job, partitions, the "
    "first failing step and the first line of its error.",
)
def run_failure_logger(context: RunFailureSensorContext) -> None:
    run = context.dagster_run
    step_errors = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        cause = (error.cause or error) if error else None  # the user's exception, not Dagster's wrapper
        step_errors.append((event.step_key or "?", cause.message if cause else ""))
    fields = failure_fields(
        job=run.job_name,
        run_id=run.run_id,
        tags=run.tags,
        step_errors=step_errors,
        run_message=context.failure_event.message,
    )
    fields = {key: redact(value) for key, value in fields.items()}
    context.log.error(failure_line(fields))
    log.error("run_failed", **fields)
