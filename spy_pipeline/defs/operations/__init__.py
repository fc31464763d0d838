"""Operations on the platform itself: retention of the data dir (job + weekly schedule), a storage report."""

from spy_pipeline.defs.operations.retention import build_retention_schedule, retention_job, retention_schedule
from spy_pipeline.defs.operations.storage_report import storage_report

OPERATIONS_ASSETS = [storage_report]
OPERATIONS_JOBS = [retention_job]
OPERATIONS_SCHEDULES = [retention_schedule]

__all__ = [
    "OPERATIONS_ASSETS",
    "OPERATIONS_JOBS",
    "OPERATIONS_SCHEDULES",
    "build_retention_schedule",
    "retention_job",
    "retention_schedule",
    "storage_report",
]
