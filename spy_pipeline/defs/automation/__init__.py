"""Unattended operation: declarative automation of the daily and reference assets, failure logging, and the
step retry policy for the Polygon-bound assets.

The assets carry their conditions (`automation_condition=DAILY_CONDITION` / `REFERENCE_CONDITION`);
`automation_condition_sensor` evaluates them and `run_failure_logger` logs failed runs. Wire into the code
location (spy_pipeline/definitions.py): `Definitions(..., sensors=SENSORS)`. Both start RUNNING as soon as the
daemon (`dagster dev`, `dagster-daemon run`) loads the location.
"""

from spy_pipeline.defs.automation.conditions import DAILY_CONDITION, LOOKBACK, REFERENCE_CONDITION
from spy_pipeline.defs.automation.retries import POLYGON_RETRY_POLICY
from spy_pipeline.defs.automation.sensors import automation_condition_sensor, run_failure_logger

SENSORS = [automation_condition_sensor, run_failure_logger]

__all__ = [
    "DAILY_CONDITION",
    "LOOKBACK",
    "POLYGON_RETRY_POLICY",
    "REFERENCE_CONDITION",
    "SENSORS",
    "automation_condition_sensor",
    "run_failure_logger",
]
