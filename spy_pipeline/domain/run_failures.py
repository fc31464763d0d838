"""A failed run summed up in one log line: job, partitions, first failing step, first line of its error."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

# Dagster's run tags for a partition range and a single partition (dagster._core.storage.tags).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"


def first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return "unknown error"


def run_partitions(tags: Mapping[str, str]) -> str:
    """"2025-01-13..2025-01-16" for a range run, "2025-01-13" for one partition, "none" for neither."""
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}..{end}"
    return tags.get(PARTITION_TAG) or "none"


def failure_fields(
    *,
    job: str,
    run_id: str,
    tags: Mapping[str, str],
    step_errors: Sequence[tuple[str, str]],
    run_message: str | None,
) -> dict[str, str]:
    """One failed run as flat fields for a structured log line: job, partitions, first failing step and
    the first line of its error (else of the run's failure message)."""
    fields = {"job": job, "run_id": run_id, "partitions": run_partitions(tags)}
    if step_errors:
        step, message = step_errors[0]
        fields |= {"step": step, "error": first_line(message)}
        if len(step_errors) > 1:
            fields["failed_steps"] = ", ".join(s for s, _ in step_errors)
    else:
        fields["error"] = first_line(run_message)
    return fields


def failure_line(fields: Mapping[str, str]) -> str:
    return "run failed: " + " ".join(f"{key}={json.dumps(value)}" for key, value in fields.items())
