"""The WebSocket sandbox with the unmodified official client (and raw `websockets` for frames and close codes)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import polars as pl
import polygon
import pytest
from polygon.exceptions import AuthError
from polygon.websocket.models import EquityAgg, WebSocketMessage
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import options
from spy_pipeline.sandbox.replay_clock import SimClock
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline.sandbox.websocket import MAX_OPTION_CONTRACTS, SandboxStream
from spy_pipeline_tests.conftest import SANDBOX_KEY

pytestmark = pytest.mark.integration

DAY = dt.date(2025, 1, 8)
EARLY_CLOSE_DAY = dt.date(2024, 11, 29)
INDEX_FIELDS = {"ev", "sym", "op", "o", "c", "h", "l", "s", "e"}
EQUITY_FIELDS = {"ev", "sym", "v", "av", "op", "vw", "o", "c", "h", "l", "a", "z", "s", "e"}


def et_ms(day: dt.date, hhmm: str) -> int:
    return int(dt.datetime.combine(day, dt.time.fromisoformat(hhmm), tzinfo=cal.NEW_YORK).timestamp() * 1000)


def stream(**kwargs: Any) -> SandboxStream:
    """A fast stream whose clock starts at the first subscription (so a slow connect loses nothing)."""
    settings: dict[str, Any] = {"day": DAY, "speed": 600.0, "start_at": "15:50", "clock_start": "subscribe"}
    return SandboxStream(SANDBOX_KEY, **{**settings, **kwargs})


def run_official(
    server: SandboxStream, market: str, subscriptions: list[str], timeout: float = 10.0, **client_kwargs: Any
) -> list[WebSocketMessage]:
    """Run the official client's `connect` coroutine until the server ends the stream."""
    client = polygon.WebSocketClient(
        api_key=client_kwargs.pop("api_key", SANDBOX_KEY),
        feed=server.feed,
        market=market,
        secure=False,
        subscriptions=subscriptions,
        **client_kwargs,
    )
    received: list[WebSocketMessage] = []

    async def processor(messages: list[WebSocketMessage]) -> None:
        received.extend(messages)

    asyncio.run(asyncio.wait_for(client.connect(processor), timeout))
    return received


def rest_bars(sandbox: SandboxServer, ticker: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Minute bars with start_ms <= t < end_ms from the REST sandbox, through the official REST client."""
    client = polygon.RESTClient(SANDBOX_KEY, base=sandbox.url)
    aggs = client.list_aggs(ticker, 1, "minute", start_ms, end_ms - 1, limit=50_000)
    return [
        {"t": a.timestamp, "o": a.open, "h": a.high, "l": a.low, "c": a.close, "v": a.volume, "vw": a.vwap}
        for a in aggs
    ]


def as_bar(agg: EquityAgg) -> dict[str, Any]:
    return {"t": agg.start_timestamp, "o": agg.open, "h": agg.high, "l": agg.low, "c": agg.close,
            "v": agg.volume, "vw": agg.vwap}


def of(messages: list[WebSocketMessage], ev: str, sym: str | None = None) -> list[EquityAgg]:
    return [m for m in messages if isinstance(m, EquityAgg) and m.event_type == ev and sym in (None, m.symbol)]


def recv_json(ws: ClientConnection) -> list[dict[str, Any]]:
    frame = json.loads(ws.recv(timeout=5))
    assert isinstance(frame, list) and frame and all(isinstance(item, dict) and "ev" in item for item in frame)
    return frame


def login(ws: ClientConnection, key: str = SANDBOX_KEY) -> list[dict[str, Any]]:
    assert recv_json(ws) == [{"ev": "status", "status": "connected", "message": "Connected Successfully"}]
    ws.send(json.dumps({"action": "auth", "params": key}))
    return recv_json(ws)


def drain(ws: ClientConnection) -> Iterator[list[dict[str, Any]]]:
    """Every frame until the server closes cleanly."""
    try:
        while True:
            yield recv_json(ws)
    except ConnectionClosedOK:
        return


@pytest.fixture
def option_ticker() -> str:
    """A listed 0DTE SPY call a few dollars in the money at 15:50, so its last minutes trade at real prices."""
    contracts = options.listed_contracts(DAY).filter(
        (pl.col("expiration_date") == DAY) & (pl.col("contract_type") == "call") & (pl.col("strike_price") == 580.0)
    )
    return contracts["ticker"][0]


# --- clock -----------------------------------------------------------------------------------------------


def test_sim_clock_maps_wall_time_to_market_time() -> None:
    clock = SimClock(DAY, speed=60.0, start_at="10:00")
    assert clock.now() == dt.datetime.combine(DAY, dt.time(10), tzinfo=cal.NEW_YORK)  # stands still until started
    wall = time.monotonic()
    clock.start(wall=wall - 2.0)  # two wall seconds ago: two market minutes
    assert abs(clock.now_ms() - et_ms(DAY, "10:02")) < 1_000
    assert clock.wall_at(et_ms(DAY, "10:03")) == pytest.approx(wall + 1.0)
    assert SimClock(DAY).start_ms == et_ms(DAY, "09:30")  # default: the regular open
    with pytest.raises(ValueError):
        SimClock(DAY, speed=0)
    with pytest.raises(cal.TradingCalendarError):
        SimClock(dt.date(2025, 1, 9))  # the national day of mourning for President Carter


# --- protocol --------------------------------------------------------------------------------------------


def test_connect_auth_subscribe_flow_and_every_frame_is_an_array() -> None:
    with stream(start_at="15:57") as server, ws_connect(server.url_for("stocks")) as ws:
        assert login(ws) == [{"ev": "status", "status": "auth_success", "message": "authenticated"}]
        ws.send(json.dumps({"action": "subscribe", "params": "A.SPY,AM.SPY"}))
        assert recv_json(ws) == [{"ev": "status", "status": "success", "message": "subscribed to: A.SPY"}]
        assert recv_json(ws) == [{"ev": "status", "status": "success", "message": "subscribed to: AM.SPY"}]
        ws.send(json.dumps({"action": "dance", "params": ""}))
        ws.send("not json")
        ws.send(json.dumps({"action": "subscribe", "params": "T.SPY,nonsense"}))
        ws.send(json.dumps({"action": "unsubscribe", "params": "A.SPY"}))
        frames = list(drain(ws))
        assert ws.close_code == 1000
    statuses = [item for frame in frames for item in frame if item["ev"] == "status"]
    data = [item for frame in frames for item in frame if item["ev"] != "status"]
    assert [s["status"] for s in statuses] == ["error", "error", "error", "error", "success", "session_closed"]
    assert statuses[0]["message"] == "unknown action: dance"
    assert statuses[-2]["message"] == "unsubscribed to: A.SPY"
    assert {d["ev"] for d in data} <= {"A", "AM"} and {d["sym"] for d in data} == {"SPY"}
    assert all(set(d) == EQUITY_FIELDS for d in data)
    assert [d["e"] for d in data if d["ev"] == "AM"] == [et_ms(DAY, t) for t in ("15:58", "15:59", "16:00")]


def test_official_client_wrong_key_raises_auth_error() -> None:
    with stream() as server:
        with pytest.raises(AuthError, match="authentication failed"):
            run_official(server, "stocks", ["AM.SPY"], api_key="wrong-key")
        with ws_connect(server.url_for("stocks")) as ws:
            assert login(ws, "wrong-key") == [
                {"ev": "status", "status": "auth_failed", "message": "authentication failed"}
            ]
            with pytest.raises(ConnectionClosedError):  # nothing more: the server closes (1008)
                ws.recv(timeout=5)
            assert ws.close_code == 1008
    assert [log.ended_by for log in server.connections] == ["auth_failed", "auth_failed"]
    assert all(not log.authenticated and not log.data_frames for log in server.connections)


def test_subscribing_before_auth_and_unknown_markets_are_refused() -> None:
    with stream() as server:
        with ws_connect(server.url_for("stocks")) as ws:
            recv_json(ws)
            ws.send(json.dumps({"action": "subscribe", "params": "AM.SPY"}))
            assert recv_json(ws)[0]["status"] == "error"
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(f"ws://{server.feed}/crypto").close()
        assert refused.value.response.status_code == 404
        assert not server.clock.started


def test_option_subscriptions_are_capped_per_connection() -> None:
    # Unlisted strikes (half dollars) are fine for counting: they are accepted and never stream.
    channels = [f"AM.O:SPY250117C{(100_500 + 1_000 * i):08d}" for i in range(MAX_OPTION_CONTRACTS + 1)]
    held = f"A.{channels[0][3:]}"  # another channel of a contract already held does not count
    with stream(start_at="15:59:30") as server, ws_connect(server.url_for("options")) as ws:
        login(ws)
        params = ",".join([*channels[:-2], held, channels[-2], channels[-1], "AM.*"])
        ws.send(json.dumps({"action": "subscribe", "params": params}))
        statuses = [item for frame in drain(ws) for item in frame]
    assert [s["status"] for s in statuses[:-1]].count("success") == MAX_OPTION_CONTRACTS + 1
    errors = [s["message"] for s in statuses if s["status"] == "error"]
    assert len(errors) == 2
    assert errors[0].startswith("max option contracts per connection (1000) reached") and channels[-1] in errors[0]
    assert errors[1].startswith("wildcard option subscriptions are not supported")


# --- replay equals the REST market -----------------------------------------------------------------------


def test_am_stream_equals_rest_minute_bars_to_the_close(sandbox: SandboxServer) -> None:
    start, close = et_ms(DAY, "15:50"), et_ms(DAY, "16:00")
    with stream() as server:
        received = run_official(server, "stocks", ["AM.SPY", "A.SPY"])
    minutes = of(received, "AM", "SPY")
    expected = rest_bars(sandbox, "SPY", start, close)
    assert len(expected) >= 9
    assert [as_bar(m) for m in minutes] == expected
    assert all(m.end_timestamp == m.start_timestamp + 60_000 for m in minutes)

    whole_day = rest_bars(sandbox, "SPY", et_ms(DAY, "04:00"), close)
    official_open = next(b["o"] for b in whole_day if b["t"] >= et_ms(DAY, "09:30"))
    seconds = of(received, "A", "SPY")
    for minute in minutes:
        inside = [a for a in seconds if minute.start_timestamp <= a.start_timestamp < minute.end_timestamp]
        assert 1 <= len(inside) <= 4 and all(a.end_timestamp - a.start_timestamp == 15_000 for a in inside)
        assert inside[0].open == minute.open and inside[-1].close == minute.close
        assert max(a.high for a in inside) == minute.high and min(a.low for a in inside) == minute.low
        assert sum(a.volume for a in inside) == minute.volume
        assert sum(a.volume * a.vwap for a in inside) / minute.volume == pytest.approx(minute.vwap, abs=1e-3)
        assert all(a.low <= a.vwap <= a.high for a in inside)
        through = [b for b in whole_day if b["t"] <= minute.start_timestamp]
        day_volume = sum(b["v"] for b in through)
        assert minute.accumulated_volume == inside[-1].accumulated_volume == day_volume
        day_vwap = sum(b["v"] * b["vw"] for b in through) / day_volume
        assert minute.aggregate_vwap == inside[-1].aggregate_vwap == pytest.approx(day_vwap, abs=1e-4)
        assert minute.official_open_price == official_open
    assert (server.connections[0].ended_by, server.connections[0].sent[-1].items()[0]["status"]) == (
        "session_end",
        "session_closed",
    )


def test_vix_on_indices_carries_only_index_fields(sandbox: SandboxServer) -> None:
    start, close = et_ms(DAY, "15:50"), et_ms(DAY, "16:00")
    with stream() as server, ws_connect(server.url_for("indices")) as ws:
        login(ws)
        ws.send(json.dumps({"action": "subscribe", "params": "AM.I:VIX,A.I:VIX"}))
        items = [item for frame in drain(ws) for item in frame if item["ev"] != "status"]
    assert items and all(set(item) == INDEX_FIELDS for item in items)
    minutes = [item for item in items if item["ev"] == "AM"]
    expected = rest_bars(sandbox, "I:VIX", start, close)
    assert [(m["s"], m["o"], m["h"], m["l"], m["c"]) for m in minutes] == [
        (b["t"], b["o"], b["h"], b["l"], b["c"]) for b in expected
    ]
    assert len([item for item in items if item["ev"] == "A"]) == 4 * len(minutes)  # an index prints every quarter


def test_option_am_stream_equals_rest_bars(sandbox: SandboxServer, option_ticker: str) -> None:
    start, close = et_ms(DAY, "15:45"), et_ms(DAY, "16:00")
    with stream(start_at="15:45") as server:
        received = run_official(server, "options", [f"AM.{option_ticker}", f"A.{option_ticker}"])
    expected = rest_bars(sandbox, option_ticker, start, close)
    assert len(expected) >= 10 and len({b["c"] for b in expected}) > 3
    assert [as_bar(m) for m in of(received, "AM", option_ticker)] == expected
    raw = server.connections[0].events()
    assert raw and all(item["sym"] == option_ticker and set(item) == EQUITY_FIELDS for item in raw)


def test_wildcard_subscribes_every_stock_and_early_close_ends_at_13() -> None:
    with stream(day=EARLY_CLOSE_DAY, start_at="12:57") as server, ws_connect(server.url_for("stocks")) as ws:
        login(ws)
        ws.send(json.dumps({"action": "subscribe", "params": "AM.*"}))
        items = [item for frame in drain(ws) for item in frame]
        assert ws.close_code == 1000
    minutes = [item for item in items if item["ev"] == "AM"]
    assert {m["sym"] for m in minutes} == {"SPY", "QQQ", "IWM"}
    assert max(m["e"] for m in minutes) == et_ms(EARLY_CLOSE_DAY, "13:00")
    assert items[-1]["status"] == "session_closed" and "13:00 ET" in items[-1]["message"]


# --- drops and reconnects --------------------------------------------------------------------------------


@pytest.mark.parametrize("drop_code", [None, 1011], ids=["tcp-abort", "close-1011"])
def test_drop_every_makes_the_official_client_reconnect_and_resubscribe(
    sandbox: SandboxServer, drop_code: int | None
) -> None:
    start, close = et_ms(DAY, "15:45"), et_ms(DAY, "16:00")
    with stream(start_at="15:45", drop_every=6, drop_code=drop_code) as server:
        received = run_official(server, "stocks", ["AM.SPY"])
    logs = server.connections
    assert len(logs) >= 2
    assert [log.ended_by for log in logs] == ["drop"] * (len(logs) - 1) + ["session_end"]
    for log in logs:  # each connection authenticated and subscribed again by itself
        assert [json.loads(m)["action"] for m in log.received] == ["auth", "subscribe"]
        assert set(log.subscriptions) == {"AM.SPY"}
    assert all(len(log.data_frames) == 6 and log.lost for log in logs[:-1])

    got = [as_bar(m) for m in of(received, "AM", "SPY")]
    assert [m["s"] for m in server.sent_events("AM")] == [bar["t"] for bar in got]  # received = sent, in order
    expected = rest_bars(sandbox, "SPY", start, close)
    missing = [bar for bar in expected if bar not in got]
    assert [bar for bar in got if bar not in expected] == []
    # What is lost is exactly what was published between a drop and the next connection's subscription.
    gaps = [
        (dropped.lost[0].market_ms, following.subscriptions["AM.SPY"])
        for dropped, following in itertools.pairwise(logs)
    ]
    lost_minutes = {item["s"] for log in logs for frame in log.lost for item in frame.items()}
    assert lost_minutes and lost_minutes <= {bar["t"] for bar in missing}
    for bar in missing:
        assert any(lo <= bar["t"] + 60_000 <= hi for lo, hi in gaps), bar


def test_drop_now_with_the_blocking_run_api() -> None:
    received: list[WebSocketMessage] = []
    with stream(start_at="15:50", speed=300.0) as server:
        client = polygon.WebSocketClient(
            api_key=SANDBOX_KEY, feed=server.feed, market="stocks", secure=False, subscriptions=["AM.SPY"]
        )
        worker = threading.Thread(target=client.run, args=(received.extend,), daemon=True)
        worker.start()
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.01)
        server.drop_now()
        worker.join(timeout=15)
        assert not worker.is_alive()
    first, second = server.connections
    assert (first.ended_by, second.ended_by) == ("drop", "session_end")
    assert json.loads(second.received[1]) == {"action": "subscribe", "params": "AM.SPY"}
    assert [m.start_timestamp for m in of(received, "AM")] == [e["s"] for e in server.sent_events("AM")]


def test_server_keeps_pace_with_spy_vix_and_100_options_at_600x() -> None:
    listed = options.listed_contracts(DAY).filter(pl.col("expiration_date") == DAY)
    nearest = listed.sort((pl.col("strike_price") - 584.0).abs(), "ticker").head(100)
    contracts = nearest["ticker"].to_list()
    with stream(start_at="15:55") as server, contextlib.ExitStack() as stack:
        # The series are built before the clock starts (subscriptions on three sockets build concurrently, and the
        # first one done starts the clock: a cold process would otherwise spend the 0.5 s replay building).
        server.preload("SPY", "I:VIX", *contracts)
        sockets = {m: stack.enter_context(ws_connect(server.url_for(m))) for m in ("options", "stocks", "indices")}
        params = {"stocks": "A.SPY,AM.SPY", "indices": "A.I:VIX,AM.I:VIX",
                  "options": ",".join(f"{ev}.{t}" for t in contracts for ev in ("A", "AM"))}
        for market_name, ws in sockets.items():
            login(ws)
            ws.send(json.dumps({"action": "subscribe", "params": params[market_name]}))
        counts = {m: sum(len(frame) for frame in drain(ws)) for m, ws in sockets.items()}
    frames = [f for log in server.connections for f in log.data_frames]
    lateness = [f.wall - server.clock.wall_at(f.market_ms) for f in frames]
    assert counts["options"] > 500 and counts["stocks"] > 20 and counts["indices"] > 20
    assert max(lateness) < 0.25  # each frame within 2.5 market minutes of its time at 600x
