"""What the sandbox's REST handlers share: the parsed Request, ApiError, and the cursor of `next_url` links.

Handlers are plain functions from a Request and their route's match to a JSON body (routes.py lists them).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass


class ApiError(Exception):
    def __init__(self, status: int, message: str, status_word: str = "ERROR") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.status_word = status_word


@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, str]
    base_url: str  # scheme://host:port as the client addressed us, for absolute next_url links
    request_id: str
    today: dt.date


Handler = Callable[[Request, re.Match[str]], object]


SOURCES = ("stocks", "options", "indices", "news", "reference")  # what Polygon sells separately
NOT_ENTITLED_MESSAGE = "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing"


def data_source(path: str) -> str:
    """Which of Polygon's separately sold data sets a request path reads."""
    if path.startswith("/v2/aggs/ticker/"):
        ticker = path.removeprefix("/v2/aggs/ticker/").split("/", 1)[0]
        return "indices" if ticker.startswith("I:") else "options" if ticker.startswith("O:") else "stocks"
    if path.startswith("/v1/open-close/"):
        ticker = path.removeprefix("/v1/open-close/").split("/", 1)[0]
        return "indices" if ticker.startswith("I:") else "options" if ticker.startswith("O:") else "stocks"
    if path.startswith("/v3/reference/options"):
        return "options"
    if path.startswith("/v2/reference/news"):
        return "news"
    return "reference"


def encode_cursor(state: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, object]:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise ApiError(400, "Invalid cursor") from None
