"""`spy-pipeline simulate --date D --speed 60`: replay a past trading day through the sandbox WebSocket and the
real streaming code, as Dagster runs on the instance (so `make dev` shows them): reference data when
missing, the stream_session job (session + after-close compaction), then intraday_refresh.

`--from-lake` replays the day recorded in the data dir instead of the synthetic market (stream_session's
`from_lake`, io/lake_replay.py): it never calls Polygon, so it runs with a real key set, and it refuses,
before any run, a day whose raw partitions are not all there (MissingInputsError names them).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult

from spy_pipeline.app.runner import QUIET_CONSOLE, step_failure_lines
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.io import storage
from spy_pipeline.io.lake_replay import MissingInputsError, missing_inputs
from spy_pipeline.settings import load_settings


@dataclass(frozen=True)
class SimulationResult:
    success: bool
    seconds: float
    lines: list[str]
    run_ids: list[str]


def _step_metadata(result: ExecuteInProcessResult, step: str) -> dict[str, object]:
    for event in result.all_events:
        if event.event_type_value == "STEP_OUTPUT" and event.step_key == step:
            return {key: value.value for key, value in (event.event_specific_data.metadata or {}).items()}
    return {}


def simulate(
    day: dt.date, speed: float, start_at: str | None = None, drop_every: int | None = None, from_lake: bool = False
) -> SimulationResult:
    from spy_pipeline.definitions import defs

    day = cal.require_trading_day(day)
    if from_lake and (missing := missing_inputs(storage.as_data_root(load_settings().data_dir), day)):
        raise MissingInputsError(day, missing)
    session_config: dict[str, object] = {"date": day.isoformat(), "speed": speed, "start_at": start_at or "09:25",
                                         "from_lake": from_lake}
    if drop_every is not None:
        session_config["drop_every"] = drop_every
    started = time.monotonic()
    lines: list[str] = []
    results: list[ExecuteInProcessResult] = []
    with DagsterInstance.get() as instance:
        # a replay from the data dir has its corporate actions there already (missing_inputs checked them)
        if not from_lake and instance.get_latest_materialization_event(AssetKey("corporate_actions")) is None:
            results.append(defs.resolve_job_def("reference_data").execute_in_process(
                instance=instance, raise_on_error=False, run_config=QUIET_CONSOLE))
        if all(r.success for r in results):
            stream = defs.resolve_job_def("stream_session").execute_in_process(
                instance=instance, raise_on_error=False,
                run_config={**QUIET_CONSOLE, "ops": {"stream_market_session": {"config": session_config}}},
            )
            results.append(stream)
            session = _step_metadata(stream, "stream_market_session")
            if session:
                lines.append(
                    f"  session {day} from {session['source']} at {speed:g}x: {session['messages']:,} messages, "
                    f"{session['landed_rows']:,} rows in {session['files']} micro-batches, "
                    f"{session['gaps_filled_from_rest']} gaps filled from REST, {session['news_articles']} news "
                    f"articles; ended: {session['ended']}"
                )
            compaction = _step_metadata(stream, "compact_stream_day")
            if "reconciliation" in compaction:
                record = "the recording" if from_lake else "REST"
                lines.append(f"  after the close, reconciled with {record}:")
                lines += [f"    {row}" for row in str(compaction["reconciliation"]).splitlines()]
        if all(r.success for r in results):
            intraday = defs.resolve_job_def("intraday_refresh").execute_in_process(
                instance=instance, raise_on_error=False, partition_key=day.isoformat(), run_config=QUIET_CONSOLE,
            )
            results.append(intraday)
            for event in intraday.get_asset_materialization_events():
                meta = event.step_materialization_data.materialization.metadata
                lines.append(f"  intraday_consolidated: {meta['rows'].value:,} rows, "
                             f"{meta['contracts'].value} contracts, up to {meta['last_minute'].value}")
    for result in results:
        lines += step_failure_lines(result)
    return SimulationResult(all(r.success for r in results), time.monotonic() - started, lines,
                            [r.run_id for r in results])
