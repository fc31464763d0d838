"""Alerts in Dagster: the `notifier` resource and the sensors that send (failed runs and sessions, failed
blocking checks, scanner events, Polygon's error rate, trading days still missing after the catch-up window),
recorded on the `alert_deliveries` asset.

Wire into the code location: `Definitions(assets=[..., *ALERT_ASSETS], sensors=[..., *ALERT_SENSORS],
resources={..., "notifier": NotifierResource()})`. The logic lives in spy_pipeline/io/alerts.
"""

from spy_pipeline.defs.alerts.resources import ALERT_DELIVERIES, NotifierResource, alert_deliveries, record_deliveries
from spy_pipeline.defs.alerts.sensors import (
    build_partition_missing_sensor,
    build_polygon_error_rate_sensor,
    failed_check_alerts,
    partition_missing_alerts,
    polygon_error_rate_alerts,
    run_failure_alerts,
    scanner_event_alerts,
)

ALERT_ASSETS = [alert_deliveries]
ALERT_SENSORS = [run_failure_alerts, failed_check_alerts, scanner_event_alerts, polygon_error_rate_alerts,
                 partition_missing_alerts]

__all__ = [
    "ALERT_ASSETS",
    "ALERT_DELIVERIES",
    "ALERT_SENSORS",
    "NotifierResource",
    "alert_deliveries",
    "build_partition_missing_sensor",
    "build_polygon_error_rate_sensor",
    "failed_check_alerts",
    "partition_missing_alerts",
    "polygon_error_rate_alerts",
    "record_deliveries",
    "run_failure_alerts",
    "scanner_event_alerts",
]
