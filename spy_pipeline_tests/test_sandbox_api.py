"""The sandbox over real HTTP: the unmodified official client, and raw urllib3 for bodies, statuses and headers."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import polygon
import pytest
import urllib3
from polygon.exceptions import BadResponse
from polygon.rest.models import Agg

from spy_pipeline.sandbox.faults import Fault
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline_tests.conftest import SANDBOX_KEY, fixture_json

pytestmark = pytest.mark.integration

NEW_YORK = ZoneInfo("America/New_York")
DAY = "2025-01-08"
MINUTE_RANGE = "/v2/aggs/ticker/SPY/range/1/minute/2025-01-06/2025-01-08"
AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}






def get(http: urllib3.PoolManager, url: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    return http.request("GET", url, headers=AUTH if headers is None else headers)


def bar_tuple(agg: Agg) -> tuple[Any, ...]:
    return (agg.timestamp, agg.open, agg.high, agg.low, agg.close, agg.volume, agg.vwap, agg.transactions)


def et_time(t_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ms / 1000, NEW_YORK)


def assert_polygon_error(body: bytes | str, status_word: str = "ERROR") -> dict[str, Any]:
    error = json.loads(body)
    message_key = "error" if status_word == "ERROR" else "message"
    assert set(error) == {"status", "request_id", message_key}
    assert error["status"] == status_word
    assert error["request_id"]
    assert error[message_key]
    return error


# --- response shapes -----------------------------------------------------------------------------


def test_day_aggs_keys_match_polygon_fixture(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    expected = fixture_json("aggs_day_AAPL.json")
    response = get(http, f"{sandbox.url}/v2/aggs/ticker/SPY/range/1/day/2025-01-06/2025-01-08")
    assert response.status == 200
    body = response.json()
    # The fixture is a single page; `next_url` is the only documented key it may lack.
    assert set(body) == set(expected)
    assert body["status"] == "OK"
    assert body["resultsCount"] == len(body["results"]) == 3
    item_keys = set(expected["results"][0])
    assert all(set(item) == item_keys for item in body["results"])
    assert all(isinstance(item["t"], int) and isinstance(item["n"], int) for item in body["results"])


def test_open_close_keys_match_polygon_fixture(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    expected = fixture_json("open_close_AAPL.json")
    response = get(http, f"{sandbox.url}/v1/open-close/SPY/{DAY}")
    assert response.status == 200
    body = response.json()
    assert set(body) == set(expected)
    assert (body["status"], body["from"], body["symbol"]) == ("OK", DAY, "SPY")


def test_upcoming_market_status_items_match_polygon_fixture(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    expected = fixture_json("marketstatus_upcoming.json")
    closed_keys = {frozenset(item) for item in expected if item["status"] == "closed"}
    early_keys = {frozenset(item) for item in expected if item["status"] == "early-close"}
    assert closed_keys == {frozenset({"exchange", "name", "date", "status"})}
    assert early_keys == {frozenset({"exchange", "name", "date", "status", "open", "close"})}

    sandbox.state.today = dt.date(2024, 11, 1)
    response = get(http, f"{sandbox.url}/v1/marketstatus/upcoming")
    assert response.status == 200
    body = response.json()
    assert isinstance(body, list) and body
    for item in body:
        assert item["status"] in ("closed", "early-close")
        assert frozenset(item) in (closed_keys if item["status"] == "closed" else early_keys)
    statuses = {(item["date"], item["exchange"]): item for item in body}
    assert statuses[("2024-11-28", "NYSE")]["status"] == "closed"
    black_friday = statuses[("2024-11-29", "NYSE")]
    assert black_friday["status"] == "early-close"
    assert (black_friday["open"], black_friday["close"]) == ("2024-11-29T14:30:00.000Z", "2024-11-29T18:00:00.000Z")
    assert [item["date"] for item in body] == sorted(item["date"] for item in body)


# --- minute aggregates ---------------------------------------------------------------------------


def test_minute_aggs_paginate_to_the_same_bars_as_one_request(
    sandbox: SandboxServer, client: polygon.RESTClient
) -> None:
    before = sandbox.request_count("/v2/aggs")
    paged = [bar_tuple(a) for a in client.list_aggs("SPY", 1, "minute", "2025-01-06", DAY, limit=500)]
    pages = sandbox.request_count("/v2/aggs") - before
    single = [bar_tuple(a) for a in client.list_aggs("SPY", 1, "minute", "2025-01-06", DAY, limit=50_000)]
    assert sandbox.request_count("/v2/aggs") - before == pages + 1
    assert pages == -(-len(single) // 500) > 1
    assert paged == single
    assert len(single) > 1500


def test_minute_aggs_page_has_absolute_next_url(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    first = get(http, f"{sandbox.url}{MINUTE_RANGE}?limit=500").json()
    assert first["resultsCount"] == len(first["results"]) == 500
    assert first["next_url"].startswith("http://127.0.0.1:")
    assert first["next_url"].startswith(sandbox.url + "/v2/aggs/")
    second = get(http, first["next_url"]).json()
    assert second["results"][0]["t"] > first["results"][-1]["t"]


def test_minute_aggs_sort_desc_reverses(client: polygon.RESTClient) -> None:
    ascending = [bar_tuple(a) for a in client.list_aggs("SPY", 1, "minute", "2025-01-06", DAY, limit=50_000)]
    descending = [bar_tuple(a) for a in client.list_aggs("SPY", 1, "minute", "2025-01-06", DAY, sort="desc", limit=500)]
    assert descending == ascending[::-1]


def test_aggs_limit_above_max_is_400_with_polygon_error_body(
    sandbox: SandboxServer, http: urllib3.PoolManager, client: polygon.RESTClient
) -> None:
    response = get(http, f"{sandbox.url}{MINUTE_RANGE}?limit=50001")
    assert response.status == 400
    assert_polygon_error(response.data)
    with pytest.raises(BadResponse):
        client.get_aggs("SPY", 1, "minute", "2025-01-06", DAY, limit=50_001)


def test_minute_timestamps_are_unix_ms_bar_starts(client: polygon.RESTClient) -> None:
    bars = client.get_aggs("SPY", 1, "minute", DAY, DAY, limit=50_000)
    stamps = [bar.timestamp for bar in bars]
    assert all(isinstance(t, int) and 10**12 < t < 10**13 and t % 60_000 == 0 for t in stamps)
    times = [et_time(t) for t in stamps]
    assert all(ts.date() == dt.date(2025, 1, 8) for ts in times)
    # Starts, not ends: the first bar is stamped 04:00 and none is stamped 20:00.
    assert times[0].time() == dt.time(4, 0)
    assert max(times).time() < dt.time(20, 0)
    assert dt.time(9, 30) in {ts.time() for ts in times}


def _regular(bars: list[Agg]) -> list[Agg]:
    return [bar for bar in bars if dt.time(9, 30) <= et_time(bar.timestamp).time() < dt.time(16, 0)]


def test_hour_bars_aggregate_minute_bars(client: polygon.RESTClient) -> None:
    minutes = client.get_aggs("SPY", 1, "minute", DAY, DAY, limit=50_000)
    hours = client.get_aggs("SPY", 1, "hour", DAY, DAY, limit=50_000)
    assert len(hours) == 16  # 04:00 to 19:00 ET
    for hour in hours:
        inside = [m for m in minutes if hour.timestamp <= m.timestamp < hour.timestamp + 3_600_000]
        assert et_time(hour.timestamp).minute == 0
        assert hour.open == inside[0].open
        assert hour.close == inside[-1].close
        assert hour.high == max(m.high for m in inside)
        assert hour.low == min(m.low for m in inside)
        assert hour.volume == sum(m.volume for m in inside)
        assert hour.transactions == sum(m.transactions for m in inside)


def test_day_bar_matches_regular_session_minutes(client: polygon.RESTClient) -> None:
    regular = _regular(client.get_aggs("SPY", 1, "minute", DAY, DAY, limit=50_000))
    (day,) = client.get_aggs("SPY", 1, "day", DAY, DAY)
    assert day.open == regular[0].open
    assert day.high == max(m.high for m in regular)
    assert day.low == min(m.low for m in regular)
    assert day.close == regular[-1].close
    assert day.timestamp == int(dt.datetime(2025, 1, 8, tzinfo=NEW_YORK).timestamp() * 1000)


def test_open_close_matches_regular_session_minutes(client: polygon.RESTClient) -> None:
    regular = _regular(client.get_aggs("SPY", 1, "minute", DAY, DAY, limit=50_000))
    summary = client.get_daily_open_close_agg("SPY", DAY)
    assert (summary.open, summary.close) == (regular[0].open, regular[-1].close)
    assert (summary.high, summary.low) == (max(m.high for m in regular), min(m.low for m in regular))


# --- auth ----------------------------------------------------------------------------------------


def test_bearer_header_is_accepted(client: polygon.RESTClient) -> None:
    assert client.get_daily_open_close_agg("SPY", DAY).status == "OK"


def test_api_key_query_parameter_is_accepted(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    response = get(http, f"{sandbox.url}/v1/open-close/SPY/{DAY}?apiKey={SANDBOX_KEY}", headers={})
    assert response.status == 200
    assert response.json()["status"] == "OK"


def test_wrong_key_is_401_with_polygon_error_body(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    for headers, suffix in (({"Authorization": "Bearer wrong"}, ""), ({}, "?apiKey=wrong")):
        response = get(http, f"{sandbox.url}/v1/open-close/SPY/{DAY}{suffix}", headers=headers)
        assert response.status == 401
        assert_polygon_error(response.data)


def test_wrong_key_makes_the_client_raise_bad_response(sandbox: SandboxServer) -> None:
    wrong = polygon.RESTClient("not-the-key", base=sandbox.url)
    with pytest.raises(BadResponse) as raised:
        wrong.get_aggs("SPY", 1, "day", DAY, DAY)
    assert_polygon_error(str(raised.value))
    assert sandbox.request_count("/v2/aggs") == 1  # 401 is not retried


def test_missing_key_is_401(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    response = get(http, f"{sandbox.url}/v1/open-close/SPY/{DAY}", headers={})
    assert response.status == 401
    assert_polygon_error(response.data)


# --- not found -----------------------------------------------------------------------------------


def test_open_close_on_a_holiday_is_404(
    sandbox: SandboxServer, http: urllib3.PoolManager, client: polygon.RESTClient
) -> None:
    response = get(http, f"{sandbox.url}/v1/open-close/SPY/2024-12-25")
    assert response.status == 404
    assert_polygon_error(response.data, status_word="NOT_FOUND")
    with pytest.raises(BadResponse):
        client.get_daily_open_close_agg("SPY", "2024-12-25")


def test_aggs_with_from_after_to_gets_an_answer(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    """A reversed range is a client mistake; the server must answer it (Polygon: 200 empty or 400), not hang up."""
    response = get(http, f"{sandbox.url}/v2/aggs/ticker/SPY/range/1/day/2025-01-08/2025-01-06")
    assert response.status in (200, 400)
    body = response.json()
    assert body.get("resultsCount", 0) == 0 or body["status"] == "ERROR"


# --- fault injection -----------------------------------------------------------------------------


def test_429_burst_carries_retry_after_and_then_clears(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    sandbox.faults.burst("/v2/aggs", 429, 2, retry_after_s=0)
    url = f"{sandbox.url}/v2/aggs/ticker/SPY/range/1/day/{DAY}/{DAY}"
    for _ in range(2):
        response = get(http, url)
        assert response.status == 429
        assert response.headers["Retry-After"] == "0"
        assert_polygon_error(response.data)
    assert get(http, url).status == 200


def test_official_client_retries_through_a_429_burst(sandbox: SandboxServer, client: polygon.RESTClient) -> None:
    sandbox.faults.burst("/v2/aggs", 429, 2, retry_after_s=0)
    assert len(client.get_aggs("SPY", 1, "day", DAY, DAY)) == 1
    assert sandbox.request_count("/v2/aggs") == 3


def test_malformed_fault_sends_invalid_json(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    sandbox.faults.add("/v2/aggs", Fault("malformed"))
    response = get(http, f"{sandbox.url}/v2/aggs/ticker/SPY/range/1/day/{DAY}/{DAY}")
    assert response.status == 200
    with pytest.raises(ValueError):
        json.loads(response.data)


def test_official_client_swallows_malformed_json_as_empty(sandbox: SandboxServer, client: polygon.RESTClient) -> None:
    """The trap: a truncated 200 body looks like "no bars" to the client; the project's transport must catch it."""
    sandbox.faults.add("/v2/aggs", Fault("malformed"))
    assert client.get_aggs("SPY", 1, "day", DAY, DAY) == []
    assert len(client.get_aggs("SPY", 1, "day", DAY, DAY)) == 1  # the same call without the fault has data
