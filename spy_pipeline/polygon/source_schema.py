"""The observed source schema: the JSON field names and types of what Polygon actually sent, per endpoint.

Captured from the raw payload (the transport's decoded body; the WebSocket client's decoded frames), not
from the official client's models, which drop fields they do not know and default absent ones to None.
An asset opens `recorder.capture()` around its fetches and compares the capture with the endpoint's baseline
(`baselines/<endpoint>.json`, written from Polygon's OpenAPI spec; `spy-pipeline schema baseline` re-captures).

A flat-file CSV header is one more endpoint: `record_header("flatfile_minute_aggs", header)` notes each column
as a "string" (all of a CSV's values arrive as text; the columns that parse as numbers are the baseline's
"number"s, see `csv_header_items`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from importlib import resources
from typing import Any

from spy_pipeline.domain.source_schema import NEEDED, OPTIONAL, Baseline, Drift, ObservedSchema, compare

BASELINES_PACKAGE = "spy_pipeline.polygon.baselines"
# endpoint -> (spec file, spec path, key of the result items; None: the payload is the item, a WebSocket event)
SPEC_SOURCES: dict[str, tuple[str, str, str | None]] = {
    "aggregates_stock": ("rest.json", "/v2/aggs/ticker/{stocksTicker}/range/{multiplier}/{timespan}/{from}/{to}",
                         "results"),
    "aggregates_index": ("rest.json", "/v2/aggs/ticker/{indicesTicker}/range/{multiplier}/{timespan}/{from}/{to}",
                         "results"),
    "aggregates_option": ("rest.json", "/v2/aggs/ticker/{optionsTicker}/range/{multiplier}/{timespan}/{from}/{to}",
                          "results"),
    "options_contracts": ("rest.json", "/v3/reference/options/contracts", "results"),
    "news": ("rest.json", "/v2/reference/news", "results"),
    "dividends": ("rest.json", "/v3/reference/dividends", "results"),
    "splits": ("rest.json", "/v3/reference/splits", "results"),
    "websocket_stock_minute": ("websocket.json", "/stocks/AM", None),
    "websocket_option_minute": ("websocket.json", "/options/AM", None),
    "websocket_index_minute": ("websocket.json", "/indices/AM", None),
}
_BAR = {"t": NEEDED, "o": NEEDED, "h": NEEDED, "l": NEEDED, "c": NEEDED, "v": NEEDED, "vw": NEEDED, "n": NEEDED}
_EVENT = {"ev": NEEDED, "sym": NEEDED, "o": NEEDED, "h": NEEDED, "l": NEEDED, "c": NEEDED, "s": NEEDED, "e": NEEDED}
# The fields the pipeline reads, per endpoint (client.py, io/news.py, io/corporate_actions.py, streaming/batches.py).
FIELDS_READ: dict[str, dict[str, str]] = {
    "aggregates_stock": _BAR,
    "aggregates_option": _BAR,
    "aggregates_index": {name: NEEDED for name in ("t", "o", "h", "l", "c")},  # an index has no volume
    "options_contracts": {name: NEEDED for name in (
        "ticker", "underlying_ticker", "contract_type", "strike_price", "expiration_date", "exercise_style",
        "shares_per_contract")},
    "news": {
        "id": NEEDED, "published_utc": NEEDED, "title": OPTIONAL, "author": OPTIONAL, "publisher": OPTIONAL,
        "publisher.name": NEEDED, "article_url": OPTIONAL, "description": OPTIONAL, "tickers": OPTIONAL,
        "keywords": OPTIONAL, "insights": OPTIONAL, "insights[].ticker": NEEDED, "insights[].sentiment": NEEDED,
        "insights[].sentiment_reasoning": OPTIONAL,
    },
    "dividends": {"ticker": NEEDED, "ex_dividend_date": NEEDED, "cash_amount": NEEDED, "pay_date": OPTIONAL,
                  "record_date": OPTIONAL, "declaration_date": OPTIONAL, "frequency": OPTIONAL,
                  "dividend_type": OPTIONAL},
    "splits": {"ticker": NEEDED, "execution_date": NEEDED, "split_from": NEEDED, "split_to": NEEDED},
    "websocket_stock_minute": {**_EVENT, "v": NEEDED, "vw": NEEDED},
    "websocket_option_minute": {**_EVENT, "v": NEEDED, "vw": NEEDED},
    "websocket_index_minute": _EVENT,
}
_WEBSOCKET_ENDPOINTS = {"stocks": "websocket_stock_minute", "options": "websocket_option_minute",
                        "indices": "websocket_index_minute"}


def endpoint_of(path: str) -> str | None:
    """The endpoint name of a REST path the pipeline reads; None for others (their answers are not captured)."""
    if path.startswith("/v2/aggs/ticker/"):
        ticker = path.removeprefix("/v2/aggs/ticker/").split("/", 1)[0]
        return "aggregates_index" if ticker.startswith("I:") else (
            "aggregates_option" if ticker.startswith("O:") else "aggregates_stock")
    return {
        "/v3/reference/options/contracts": "options_contracts",
        "/v2/reference/news": "news",
        "/v3/reference/dividends": "dividends",
        "/v3/reference/splits": "splits",
    }.get(path)


def websocket_endpoint(market: str) -> str:
    return _WEBSOCKET_ENDPOINTS[market]


@cache
def load_baseline(endpoint: str) -> Baseline:
    text = resources.files(BASELINES_PACKAGE).joinpath(f"{endpoint}.json").read_text()
    return Baseline.from_json(json.loads(text))


def drift_of(observed: ObservedSchema) -> Drift:
    return compare(observed, load_baseline(observed.endpoint), FIELDS_READ.get(observed.endpoint, {}))


class Capture:
    """The observed schemas of the answers received while it was open, by endpoint."""

    def __init__(self) -> None:
        self.endpoints: dict[str, ObservedSchema] = {}

    def add(self, endpoint: str, items: Iterable[object]) -> None:
        self.endpoints.setdefault(endpoint, ObservedSchema(endpoint)).observe(items)

    def drifts(self) -> list[Drift]:
        return [drift_of(observed) for _, observed in sorted(self.endpoints.items())]

    def to_json(self) -> dict[str, Any]:
        return {name: observed.to_json() for name, observed in sorted(self.endpoints.items())}


class SchemaRecorder:
    """Where the transport and the WebSocket client report decoded payloads; any open captures receive them.

    Thread-safe: a materialization fetches option bars from several threads into the capture it opened.
    """

    def __init__(self) -> None:
        self._captures: list[Capture] = []
        self._lock = threading.Lock()

    @contextmanager
    def capture(self) -> Iterator[Capture]:
        capture = Capture()
        with self._lock:
            self._captures.append(capture)
        try:
            yield capture
        finally:
            with self._lock:
                self._captures.remove(capture)

    def record(self, endpoint: str, items: Sequence[object]) -> None:
        with self._lock:
            for capture in self._captures:
                capture.add(endpoint, items)

    def record_rest(self, path: str, body: object) -> None:
        """A REST answer of `path`: its `results` items (an answer without results shows no fields)."""
        endpoint = endpoint_of(path)
        if endpoint is None or not self._captures or not isinstance(body, dict):
            return
        results = body.get("results")
        self.record(endpoint, results if isinstance(results, list) else [])

    def record_events(self, market: str, frame: object) -> None:
        """A WebSocket frame of `market`: its minute-aggregate events (status events are the protocol's)."""
        if not self._captures or not isinstance(frame, list):
            return
        events = [event for event in frame if isinstance(event, dict) and event.get("ev") == "AM"]
        if events:
            self.record(websocket_endpoint(market), events)

    def record_header(self, endpoint: str, header: Sequence[str]) -> None:
        """A flat file's CSV header: one item whose fields are the columns (see csv_header_items)."""
        self.record(endpoint, csv_header_items(header))


def csv_header_items(header: Sequence[str], sample_row: Sequence[str] | None = None) -> list[dict[str, object]]:
    """A CSV header as one result item: each column a "number" when the sample row's value parses as one,
    else a "string" (no sample: all strings)."""
    item: dict[str, object] = {}
    for index, column in enumerate(header):
        value = sample_row[index] if sample_row is not None and index < len(sample_row) else ""
        try:
            item[column] = float(value)
        except ValueError:
            item[column] = value
    return [item]


class ObservingJson:
    """The `custom_json` of the official WebSocketClient: json itself, reporting each decoded frame first."""

    def __init__(self, recorder: SchemaRecorder, market: str) -> None:
        self.recorder, self.market = recorder, market

    def loads(self, data: str | bytes) -> Any:
        decoded = json.loads(data)
        self.recorder.record_events(self.market, decoded)
        return decoded

    @staticmethod
    def dumps(value: Any) -> str:
        return json.dumps(value)
