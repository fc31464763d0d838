"""Live mode: the streaming session job, its sensors and the intraday consolidated asset."""

from spy_pipeline.defs.streaming.compaction import stream_compaction_job, stream_compaction_schedule
from spy_pipeline.defs.streaming.intraday_assets import intraday_consolidated, intraday_refresh_job
from spy_pipeline.defs.streaming.sensors import intraday_sensor, market_open_sensor, stream_health_sensor
from spy_pipeline.defs.streaming.session_job import stream_session_job

STREAMING_ASSETS = [intraday_consolidated]
STREAMING_JOBS = [stream_session_job, intraday_refresh_job, stream_compaction_job]
STREAMING_SCHEDULES = [stream_compaction_schedule]
STREAMING_SENSORS = [market_open_sensor, stream_health_sensor, intraday_sensor]

__all__ = ["STREAMING_ASSETS", "STREAMING_JOBS", "STREAMING_SCHEDULES", "STREAMING_SENSORS"]
