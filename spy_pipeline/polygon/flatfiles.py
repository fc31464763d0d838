"""Polygon's (Massive's) Flat Files: one gzipped CSV per dataset and day on an S3-compatible endpoint.

The client is boto3, the reference S3 client: it signs v4 with the dashboard's S3 key pair, tells a 403
from a 404 by status, gives each object's ETag and size, and hands out the body as a stream, so a day file is
parsed while it downloads and is never held whole in memory (see io/flatfiles.py).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from spy_pipeline.polygon.errors import PolygonAuthError, PolygonError, PolygonUnavailableError

OPTIONS_DATASET = "us_options_opra/minute_aggs_v1"
STOCKS_DATASET = "us_stocks_sip/minute_aggs_v1"
INDICES_DATASET = "us_indices/minute_aggs_v1"
MASSIVE_ENDPOINT = "https://files.massive.com"


class FlatFileForbiddenError(PolygonAuthError):
    """403 on a flat file: S3 does not say which of the causes it is."""


class FlatFileNotPublishedError(PolygonError):
    """The day's object does not exist (yet): files appear around 11:00 ET the next trading day."""


def object_key(dataset: str, day: dt.date) -> str:
    return f"{dataset}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str  # without quotes
    size: int


@dataclass
class FlatFileStats:
    """What a client asked for; counted under a lock, since several day files download at once."""

    heads: int = 0
    gets: int = 0
    bytes_received: int = 0
    keys: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_head(self) -> None:
        with self._lock:
            self.heads += 1

    def count_get(self, key: str) -> None:
        with self._lock:
            self.gets += 1
            self.keys.append(key)

    def count_bytes(self, received: int) -> None:
        with self._lock:
            self.bytes_received += received

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"heads": self.heads, "gets": self.gets, "bytes_received": self.bytes_received}


class FlatFilesClient:
    def __init__(
        self, endpoint: str, bucket: str, access_key_id: str, secret_access_key: str,
        connect_timeout_s: float = 10.0, read_timeout_s: float = 60.0, max_retries: int = 4,
    ) -> None:
        self.endpoint, self.bucket = endpoint, bucket
        self.stats = FlatFileStats()
        self._s3 = _s3_client(
            endpoint_url=endpoint, aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
            region_name="us-east-1",
            config=Config(
                signature_version="s3v4", s3={"addressing_style": "path"},
                connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                retries={"max_attempts": max_retries + 1, "mode": "standard"},
            ),
        )

    def head(self, key: str) -> ObjectInfo | None:
        """The object's ETag and size; None when it does not exist (yet)."""
        self.stats.count_head()
        try:
            answer = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise self._error(exc, key) from None
        except BotoCoreError as exc:
            raise PolygonUnavailableError(f"flat file {key}: {exc}") from None
        return ObjectInfo(key, answer["ETag"].strip('"'), int(answer["ContentLength"]))

    @contextmanager
    def open(self, key: str) -> Iterator[tuple[ObjectInfo, BinaryIO]]:
        """A GET of the object: its info and the streaming body (closed on leaving)."""
        self.stats.count_get(key)
        try:
            answer = self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            raise self._error(exc, key) from None
        except BotoCoreError as exc:
            raise PolygonUnavailableError(f"flat file {key}: {exc}") from None
        info = ObjectInfo(key, answer["ETag"].strip('"'), int(answer["ContentLength"]))
        body = answer["Body"]
        try:
            yield info, _CountingStream(body, self.stats, key)
        finally:
            body.close()

    def _error(self, exc: ClientError, key: str) -> PolygonError:
        status = _status(exc)
        where = f"s3://{self.bucket}/{key} at {self.endpoint}"
        if status == 403:
            return FlatFileForbiddenError(
                f"403 Forbidden on {where}: the S3 keys are wrong or lack Flat Files, the day is outside the "
                "plan's history, or the file is not published yet"
            )
        if status == 404:
            return FlatFileNotPublishedError(
                f"{where} does not exist: not published yet (day files appear around 11:00 ET the next trading "
                "day) or not a trading day"
            )
        return PolygonUnavailableError(f"flat file {where}: HTTP {status} {exc.response.get('Error', {})}")

    def close(self) -> None:
        self._s3.close()


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class _CountingStream:
    """The body as a read-only file object that counts bytes (pyarrow reads it through `read`)."""

    def __init__(self, body: object, stats: FlatFileStats, key: str) -> None:
        self._body, self._stats, self._key = body, stats, key
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        try:
            chunk = self._body.read(None if size is None or size < 0 else size)  # type: ignore[attr-defined]
        except (BotoCoreError, OSError) as exc:  # a dropped connection, a short body
            raise PolygonUnavailableError(f"the download of {self._key} was interrupted: {exc}") from None
        self._stats.count_bytes(len(chunk))
        return chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


_SESSION_LOCK = threading.Lock()


@cache
def _boto_session() -> boto3.session.Session:
    return boto3.session.Session()


def _s3_client(**options: object):
    """An S3 client from the process's one boto3 session: a new session parses botocore's S3 model again
    (~0.2 s a client, and a run opens one per resource set-up). Sessions are not thread-safe, so clients are
    made under a lock; the clients are, and each carries its own endpoint and credentials."""
    with _SESSION_LOCK:
        return _boto_session().client("s3", **options)
