"""The good days a partial range left behind (defs/partial_ranges.py), requested again downstream.

When a raw asset fails only some days of a range run, Dagster skips every step after it for the whole range:
the good days' processed partitions were planned, not run, and count as failed. This sensor reads the failed
step's `materialized_days` and requests, for each run of consecutive good days, one run of the assets
downstream of the failed ones. The failed days themselves are not retried (their data is not there).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorDefinition,
    SkipReason,
    run_failure_sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from spy_pipeline.defs.partial_ranges import MATERIALIZED_DAYS
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.run_failures import RANGE_END_TAG, RANGE_START_TAG

HELD_BACK_TAG = "spy_pipeline/held_back_by"  # the failed run whose good days a run finishes


def held_back_requests(
    run_id: str, failures: Sequence[tuple[AssetKey, list[str]]], assets: Sequence[AssetsDefinition]
) -> list[RunRequest]:
    """The runs finishing a run whose `failures` are (asset failed on some days, its materialized days)."""
    failed = AssetSelection.assets(*(key for key, _ in failures))
    downstream = sorted((failed.downstream() - failed).resolve(assets), key=lambda key: key.to_user_string())
    good = set.intersection(*(set(days) for _, days in failures)) if failures else set()
    if not downstream or not good:
        return []
    return [
        RunRequest(
            run_key=f"{run_id}:{first}",
            asset_selection=downstream,
            tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat(), HELD_BACK_TAG: run_id},
        )
        for first, last in cal.consecutive_runs(good)
    ]


def held_back_days_sensor(job: UnresolvedAssetJobDefinition, assets: Sequence[AssetsDefinition]) -> SensorDefinition:
    """A run failure sensor on every run of the location (the UI's and the automation's asset runs too),
    requesting the held-back assets through `job` (the daily backfill, which holds all of `assets`)."""

    @run_failure_sensor(
        name="held_back_days_sensor",
        request_job=job,
        default_status=DefaultSensorStatus.RUNNING,
        description="After a range run in which a raw asset failed only some days: one run per stretch of "
        "consecutive good days for the assets downstream of it (the failed days are left failed).",
    )
    def sensor(context: RunFailureSensorContext) -> Iterator[RunRequest | SkipReason]:
        failures = []
        for event in context.get_step_failure_events():
            user_failure = event.step_failure_data.user_failure_data
            days = (user_failure.metadata.get(MATERIALIZED_DAYS) if user_failure else None)
            if days is None or not event.step_key:
                return  # a whole step failed: nothing was left behind
            failures.append((AssetKey(event.step_key), list(days.value)))
        requests = held_back_requests(context.dagster_run.run_id, failures, assets)
        if not requests:
            yield SkipReason("no good days left behind")
        yield from requests

    return sensor
