"""The sandbox HTTP server: a real threaded server on 127.0.0.1 that the official client talks to."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from spy_pipeline.sandbox import flatfiles
from spy_pipeline.sandbox.faults import REPLACING_KINDS, Fault, FaultPlan
from spy_pipeline.sandbox.http_api import NOT_ENTITLED_MESSAGE, SOURCES, data_source
from spy_pipeline.sandbox.routes import ROUTES, ApiError, Request


@dataclass
class RequestRecord:
    at: float
    path: str
    status: int


@dataclass
class SandboxState:
    api_key: str
    faults: FaultPlan = field(default_factory=FaultPlan)
    today: dt.date | None = None
    not_entitled: frozenset[str] = frozenset()  # data sets the key's "plan" lacks: HTTP 403, as Polygon answers
    requests: list[RequestRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    flat_files: flatfiles.FlatFileState | None = None  # the S3 endpoint's access key id, overrides and faults

    def record(self, path: str, status: int) -> None:
        with self.lock:
            self.requests.append(RequestRecord(time.monotonic(), path, status))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the sandbox's request log lives in SandboxState.requests."""

    def do_HEAD(self) -> None:
        self._s3(unquote(urlsplit(self.path).path), head=True) or self.send_error(405)

    def _s3(self, path: str, head: bool) -> bool:
        s3 = self.server.state.flat_files
        if s3 is None or not flatfiles.is_s3_request(path, s3):
            return False
        flatfiles.handle(self, s3, path, head, self.server.state.today)
        return True

    def do_GET(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        if self._s3(path, head=False):
            return None
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        request_id = uuid.uuid4().hex
        if not self._authorized(query, state.api_key):
            return self._finish(path, 401, _error_body(request_id, self._auth_message(query)))
        query.pop("apiKey", None)
        if data_source(path) in state.not_entitled:
            return self._finish(path, 403, _error_body(request_id, NOT_ENTITLED_MESSAGE, "NOT_AUTHORIZED"))
        fault = state.faults.take(path)
        if fault is not None and fault.kind in REPLACING_KINDS and self._apply_fault(fault, path, request_id):
            return None
        cap = state.faults.page_cap(path)
        if cap is not None and "cursor" not in query:  # a next page's cursor carries the first page's limit
            query["limit"] = str(min(cap, int(query["limit"]))) if query.get("limit", "").isdigit() else str(cap)
        status, body = self._route(path, query, request_id)
        if fault is None or status != 200:
            return self._finish(path, status, body)
        if fault.kind == "truncated":
            return self._send(path, 200, fault.cut(json.dumps(body, separators=(",", ":")).encode()))
        if fault.kind in ("repeat_page", "skip_page") and isinstance(body, dict) and body.get("next_url"):
            body = {**body, "next_url": self._paging_fault(fault.kind, path, query, body["next_url"], request_id)}
            if body["next_url"] is None:
                del body["next_url"]
        return self._finish(path, status, fault.corrupt(body))

    def _route(self, path: str, query: dict[str, str], request_id: str) -> tuple[int, object]:
        for pattern, handler in ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            request = Request(
                path=path,
                query=query,
                base_url=self._base_url(),
                request_id=request_id,
                today=self.server.state.today or dt.date.today(),
            )
            try:
                return 200, handler(request, match)
            except ApiError as exc:
                return exc.status, _error_body(request_id, exc.message, exc.status_word)
        return 404, _error_body(request_id, "Not found", "NOT_FOUND")

    def _base_url(self) -> str:
        return f"http://{self.headers.get('Host', '127.0.0.1')}"

    def _paging_fault(
        self, kind: str, path: str, query: dict[str, str], next_url: str, request_id: str
    ) -> str | None:
        """repeat_page: the next page is this one again. skip_page: the next page is the one after it."""
        if kind == "repeat_page":
            return f"{self._base_url()}{path}?{urlencode(query)}"
        parts = urlsplit(next_url)
        status, skipped = self._route(unquote(parts.path), dict(parse_qsl(parts.query)), request_id)
        if status != 200 or not isinstance(skipped, dict):
            return next_url
        return skipped.get("next_url")

    def _authorized(self, query: dict[str, str], api_key: str) -> bool:
        header = self.headers.get("Authorization", "")
        return header == f"Bearer {api_key}" or query.get("apiKey") == api_key

    def _auth_message(self, query: dict[str, str]) -> str:
        if "Authorization" in self.headers or "apiKey" in query:
            return "Unknown API Key"
        return "API Key was not provided"

    def _apply_fault(self, fault: Fault, path: str, request_id: str) -> bool:
        """Returns True when the fault replaced the answer."""
        if fault.kind == "slow":
            time.sleep(fault.delay_s)
            return False
        if fault.kind == "reset":
            self.server.state.record(path, 0)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.kind == "malformed":
            self._send(path, 200, b'{"status":"OK","results":[{"v":1')
            return True
        headers = {}
        if fault.retry_after_s is not None:
            headers["Retry-After"] = f"{fault.retry_after_s:g}"
        message = "You've exceeded the maximum requests per minute" if fault.status == 429 else "Internal error"
        self._finish(path, fault.status, _error_body(request_id, message), headers)
        return True

    def _finish(self, path: str, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        self._send(path, status, json.dumps(body, separators=(",", ":")).encode(), headers)

    def _send(self, path: str, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        if len(payload) > 1024 and "gzip" in self.headers.get("Accept-Encoding", ""):
            payload = gzip.compress(payload, compresslevel=5)
            headers = {**(headers or {}), "Content-Encoding": "gzip"}
        self.server.state.record(path, status)  # before answering: a client never sees an unrecorded reply
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _error_body(request_id: str, message: str, status_word: str = "ERROR") -> dict[str, str]:
    key = "error" if status_word == "ERROR" else "message"
    return {"status": status_word, "request_id": request_id, key: message}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        super().__init__(address, _Handler)
        self.state = state

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (a timeout, an injected reset) is normal here: no traceback on stderr."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class SandboxServer:
    """A Polygon-compatible REST server on loopback. Use as a context manager or start()/stop()."""

    def __init__(
        self, api_key: str, host: str = "127.0.0.1", port: int = 0, today: dt.date | None = None,
        s3_access_key_id: str | None = None, not_entitled: tuple[str, ...] = (),
    ) -> None:
        """`s3_access_key_id` also serves Polygon's Flat Files on the same port (path-style S3, sandbox/flatfiles);
        `not_entitled` names sources answered with 403 (see `deny`)."""
        self.state = SandboxState(api_key=api_key, today=today)
        if s3_access_key_id is not None:
            self.state.flat_files = flatfiles.FlatFileState(access_key_id=s3_access_key_id)
        self.deny(*not_entitled)
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def faults(self) -> FaultPlan:
        return self.state.faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        """Swap the whole plan (a seeded `FaultPlan.random`, say)."""
        self.state.faults = plan

    def deny(self, *sources: str) -> None:
        """Answer 403 NOT_AUTHORIZED for these data sets (stocks, options, indices, news, reference), as Polygon
        does for a plan that does not include them."""
        unknown = [s for s in sources if s not in SOURCES]
        if unknown:
            raise ValueError(f"unknown data set(s) {unknown}: one of {', '.join(SOURCES)}")
        self.state.not_entitled = frozenset(sources)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SandboxServer:
        self._server = _Server((self._host, self._port), self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, name="polygon-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server = _Server((self._host, self._port), self.state)
        self._server.serve_forever()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def request_count(self, path_prefix: str = "/") -> int:
        with self.state.lock:
            return sum(1 for r in self.state.requests if r.path.startswith(path_prefix))

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
