"""stream_session: one trading day's streaming session, then the after-close compaction of what it landed.

Run by the market-open sensor (one per trading day), from the UI's launchpad, or by `spy-pipeline
simulate`. With `from_lake` the day recorded in the data dir is replayed (io/lake_replay.py): the WebSocket,
the gap fills, the news polls and the compaction's reconciliation all read the raw partitions, never Polygon.
Terminating the run from the UI stops the session cleanly (the buffer lands, no partial file);
the compaction then does not run (the day was not streamed to its close). A live day is compacted after its
after-hours session by stream_compaction_schedule (compaction.py).

During the session the live scanner (spy_pipeline/streaming/live_scanner.py) scans each landed option batch and
alerts each new movement event through the notifier (SPY_PIPELINE_ALERT_URLS): one line per event in the run's
log, the deliveries on alert_deliveries at the end.
"""


import datetime as dt
from typing import Any

from dagster import Config, In, MetadataValue, OpExecutionContext, Out, in_process_executor, job, op
from pydantic import Field

from spy_pipeline.defs.alerts.resources import NotifierResource, record_deliveries
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource, settings_with_logging
from spy_pipeline.defs.streaming.compaction import compact_and_report, rest_day_complete
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.selection import DEFAULT_MAX_CONTRACTS, SelectionConfig
from spy_pipeline.io import lake
from spy_pipeline.io.alerts import AlertLedger, NotifierOptions
from spy_pipeline.io.lake_replay import RecordedDay
from spy_pipeline.io.storage import DataRoot, StorageError
from spy_pipeline.logs import get_logger
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.errors import PolygonError
from spy_pipeline.polygon.session import open_replay_endpoint, open_stream_endpoint
from spy_pipeline.settings import load_settings
from spy_pipeline.streaming.intraday import contracts_path, previous_close, session_contracts
from spy_pipeline.streaming.live_scanner import LiveScanConfig, LiveScanner
from spy_pipeline.streaming.planning import DEFAULT_LEAD
from spy_pipeline.streaming.session import MAX_OPTION_CONTRACTS, StreamConfig, run_interruptibly, run_stream_session

STREAM_JOB = "stream_session"
STREAM_DAY_TAG = "spy_pipeline/stream_day"


class StreamSessionConfig(Config):
    """One session. The sandbox-only fields replay a past day (simulation); with a key they must stay unset,
    unless the day is replayed from the data dir (`from_lake`)."""

    date: str | None = Field(default=None, description="Trading day YYYY-MM-DD (default: today in New York)")
    speed: float | None = Field(default=None, description="Sandbox only: replay speed, 1-600 (60 = an hour a minute)")
    start_at: str | None = Field(
        default=None, description="Sandbox only: market time (ET, HH:MM) the replay starts at (default: now / 09:25)"
    )
    drop_every: int | None = Field(
        default=None, description="Sandbox only: drop each connection after N data frames (tests, demos)"
    )
    from_lake: bool = Field(
        default=False, description="Replay the day recorded in the data dir (its raw partitions) on loopback: "
        "WebSocket, gap fills, news and compaction never call Polygon, whatever the key",
    )
    flush_seconds: float = Field(default=5.0, gt=0, description="Land buffered bars at least this often (wall s)")
    flush_records: int = Field(default=5_000, ge=1, description="Land a source's buffer at once at this size")
    heartbeat_seconds: float = Field(default=5.0, gt=0, description="Heartbeat interval (wall s)")
    news_poll_seconds: float = Field(default=60.0, gt=0, description="News poll interval (market s)")
    live_scan: bool = Field(
        default=True, description="Scan the option bars as they land and alert each movement event (the daily "
        "options_movement's definitions and floors)",
    )
    alert_digest_window_s: float = Field(
        default=0.2, ge=0, description="Live alerts: after one, wait this long for a burst to send as one digest"
    )
    max_contracts: int = Field(
        default=DEFAULT_MAX_CONTRACTS, ge=1, le=MAX_OPTION_CONTRACTS,
        description="Option contracts streamed (band ±1% around the previous close, 0DTE + 2 expirations)",
    )

    def day(self) -> dt.date:
        return cal.require_trading_day(cal.parse_date(self.date) if self.date else cal.new_york_date())


@op(out=Out(dict), description="Stream SPY, I:VIX and the day's option contracts until the close; poll news; scan "
    "the option bars as they land and alert each movement event (live_scan).")
def stream_market_session(
    context: OpExecutionContext, config: StreamSessionConfig, polygon: PolygonResource, store: ParquetStoreResource,
    notifier: NotifierResource,
) -> dict[str, Any]:
    day = config.day()
    # a run launched from the UI counts for the market-open sensor like one it started itself
    context.instance.add_run_tags(context.run_id, {STREAM_DAY_TAG: day.isoformat()})
    root = store.data_root
    settings = settings_with_logging()
    if config.from_lake:
        recorded = RecordedDay(root, day)
        rest = recorded
        contracts = recorded.contracts(config.max_contracts)
        root.write_parquet(contracts, contracts_path(root, day))  # the contracts the day's sessions follow
        opened = open_replay_endpoint(day, recorded.stream_bars, config.speed, config.start_at, config.drop_every)
    else:
        rest = polygon.client
        contracts = session_contracts(rest, root, day, SelectionConfig(max_contracts=config.max_contracts))
        opened = open_stream_endpoint(settings, day, config.speed, config.start_at, config.drop_every)
    tickers = tuple(contracts["ticker"].to_list())
    source = "the data dir" if config.from_lake else "the sandbox" if settings.uses_embedded_sandbox else "Polygon"
    context.log.info(f"{day}: streaming SPY, I:VIX and {len(tickers)} option contracts from {source}")
    live = _live_scanner(context, config, notifier, rest, root, day) if config.live_scan else None
    try:
        with opened as endpoint:
            stream_config = StreamConfig(
                day=day, api_key=endpoint.api_key, feed=endpoint.feed, secure=endpoint.secure, options=tickers,
                flush_seconds=config.flush_seconds, flush_records=config.flush_records,
                heartbeat_seconds=config.heartbeat_seconds, news_tickers=("SPY",),
                news_poll_seconds=config.news_poll_seconds,
                # whatever the start time, the day's bars from the pre-market open on come first from REST
                fill_from=cal.session_bounds(day).pre_market_open,
            )
            with polygon.client.schemas.capture() as seen:  # the raw events' fields, for schema drift
                result = run_interruptibly(lambda stop: run_stream_session(
                    stream_config, root, endpoint.clock, rest, stop,  # type: ignore[arg-type]
                    live.on_landed if live else None))
    finally:
        if live is not None:
            _close_live_scanner(context, live, notifier)
    drift = [line for d in seen.drifts() for line in (*d.blocking, *d.warnings)]
    for line in drift:
        context.log.warning(f"source schema drift: {line}")
    stats = result.stats
    context.add_output_metadata({
        "day": day.isoformat(),
        "ended": result.reason,
        "simulated": endpoint.simulated,
        "source": source,
        "feed": endpoint.feed,
        "messages": stats.messages,
        "landed_rows": stats.landed_rows,
        "files": stats.files,
        "duplicates": stats.duplicates,
        "invalid": stats.invalid,
        "gaps_filled_from_rest": sum(gap.filled for gap in result.gaps),
        "gaps_unfilled": sum(bool(gap.failed) for gap in result.gaps),
        "rest_rows": result.rest_rows,
        "news_articles": result.news_articles,
        "heartbeat": MetadataValue.path(root.uri(result.heartbeat_path)),
        "wall_seconds": round(result.wall_seconds, 2),
        "source_schema": MetadataValue.json(seen.to_json()),
        "source_schema_drift": "\n".join(drift) or "none",
        **({"live_events": live.stats.events, "live_alerts": live.stats.alerts} if live else {}),
    })
    return {"day": day.isoformat(), "reason": result.reason, "contracts": list(tickers), "from_lake": config.from_lake}


def _live_scanner(context: OpExecutionContext, config: StreamSessionConfig, notifier: NotifierResource,
                  rest: PolygonClient | RecordedDay, root: DataRoot, day: dt.date) -> LiveScanner:
    settings = load_settings()
    scan = LiveScanConfig(
        min_price=settings.scanner_min_price, min_volume=settings.scanner_min_volume,
        risk_free_rate=settings.risk_free_rate, dividend_yield=_dividend_yield(rest, root, day),
        run_id=context.run_id, ui_url=settings.ui_url,
    )
    # the resource's delivery settings (it builds its options inside `open`), with the live digest window
    options = NotifierOptions(
        digest_window_s=config.alert_digest_window_s, digest_min_alerts=notifier.digest_min_alerts,
        channel_messages=notifier.channel_messages, channel_period_s=notifier.channel_period_s,
        max_attempts=notifier.max_attempts, timeout_s=notifier.timeout_s, queue_size=20_000,
    )
    context.log.info(f"live scanner: bars from ${scan.min_price:g} and {scan.min_volume:g} contracts a minute; "
                     f"alerts to {len(settings.alert_url_list)} channel(s)")
    return LiveScanner(scan, settings.alert_url_list, AlertLedger(settings.resolved_alert_state), options,
                       on_alert=lambda alert: context.log.info(f"scanner event: {alert.body} {alert.link or ''}"))


def _dividend_yield(rest: PolygonClient | RecordedDay, root: DataRoot, day: dt.date) -> float:
    """SPY's trailing yield as consolidated uses it, when the dividends are in the lake; else 0 (IV only)."""
    try:
        return lake.dividend_yield(root, "SPY", day, previous_close(rest, day))  # type: ignore[arg-type]
    except (StorageError, PolygonError) as exc:
        get_logger(__name__).info("live_scanner_no_dividend_yield", error=str(exc))
        return 0.0


def _close_live_scanner(context: OpExecutionContext, live: LiveScanner, notifier: NotifierResource) -> None:
    """Wait for the last deliveries (at most the resource's wait_s), then show them on alert_deliveries."""
    live.close(notifier.wait_s)
    if live.alerts:
        record_deliveries(context.instance, live.alerts, live.deliveries, live.notifier.channels, context.log)
    context.log.info(f"live scanner: {live.stats.events} events, {live.stats.alerts} alerts sent, "
                     f"{live.stats.bars} bars in {live.stats.batches} batches")


@op(ins={"session": In(dict)}, description="A replayed past day: compaction reconciled with REST at once.")
def compact_stream_day(
    context: OpExecutionContext, session: dict[str, Any], polygon: PolygonResource, store: ParquetStoreResource
) -> None:
    day = dt.date.fromisoformat(session["day"])
    if session["reason"] != "session_close":
        context.log.info(f"{day}: the session ended before the close ({session['reason']}): no compaction")
    elif not rest_day_complete(day):
        context.log.info(f"{day}: compaction after the after-hours session, by stream_compaction_schedule (20:15 ET)")
    elif session.get("from_lake"):  # reconciled with the recording, which stands for REST
        compact_and_report(context, RecordedDay(store.data_root, day), store, day)  # type: ignore[arg-type]
    else:
        compact_and_report(context, polygon.client, store, day)


@job(
    name=STREAM_JOB,
    executor_def=in_process_executor,  # one process: a terminated run interrupts the session's own thread
    description=f"A trading day's streaming session (started by market_open_sensor {DEFAULT_LEAD.seconds // 60} min "
    "before the open); a replayed past day is then compacted at once (live days: stream_compaction_schedule).",
    tags={"spy_pipeline/kind": "streaming"},
)
def stream_session_job() -> None:
    compact_stream_day(stream_market_session())
