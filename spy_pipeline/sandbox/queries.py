"""The query conventions of the sandbox's reference lists: parsing, range filters and pages.

Lists page with an absolute `next_url` whose query holds only `cursor=...`: the cursor carries the whole query
(with defaults such as `as_of` resolved, and keys starting with "_" for the sandbox's own paging state), so
every page answers the same question.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Callable, Iterable
from typing import Any

from spy_pipeline.sandbox.http_api import ApiError, Request, decode_cursor, encode_cursor

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
RANGE_SUFFIXES: dict[str, Callable[[Any, Any], bool]] = {
    "": operator.eq,
    ".gt": operator.gt,
    ".gte": operator.ge,
    ".lt": operator.lt,
    ".lte": operator.le,
}


def query_of(request: Request) -> dict[str, str]:
    """The request's query, or the one a cursor carries (a next page sends nothing else)."""
    if "cursor" not in request.query:  # keys starting with "_" are the sandbox's own, only ever in cursors
        return {k: v for k, v in request.query.items() if not k.startswith("_")}
    state = decode_cursor(request.query["cursor"])
    if not isinstance(state, dict):
        raise ApiError(400, "Invalid cursor")
    return {str(k): str(v) for k, v in state.items()}


def next_url(request: Request, state: dict[str, str]) -> str:
    return f"{request.base_url}{request.path}?cursor={encode_cursor(state)}"


def page_limit(query: dict[str, str]) -> int:
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise ApiError(400, "limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be 1 to {MAX_LIMIT}")
    return limit


def page_offset(query: dict[str, str]) -> int:
    try:
        return max(int(query.get("_offset", 0)), 0)
    except ValueError:
        raise ApiError(400, "Invalid cursor") from None


def choice(query: dict[str, str], name: str, allowed: Iterable[str], default: str) -> str:
    allowed = tuple(allowed)
    value = query.get(name, default)
    if value not in allowed:
        raise ApiError(400, f"{name} must be one of {', '.join(allowed)}, got '{value}'")
    return value


def parse_date(text: str, name: str = "date") -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"Could not parse {name} '{text}': use YYYY-MM-DD") from None


def parse_number(text: str, name: str = "number") -> float:
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"Could not parse {name} '{text}' as a number") from None
    if not math.isfinite(value):
        raise ApiError(400, f"{name} must be finite")
    return value


def parse_bool(text: str, name: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ApiError(400, f"{name} must be true or false")
    return text.lower() == "true"


def query_bounds(query: dict[str, str], field: str, parse: Callable[[str, str], Any]) -> list[tuple[Callable, Any]]:
    """The comparisons a query asks of a field: field=, field.gt=, .gte=, .lt=, .lte=."""
    return [
        (compare, parse(query[field + suffix], field + suffix))
        for suffix, compare in RANGE_SUFFIXES.items()
        if field + suffix in query
    ]


def filter_records(records: list[dict[str, Any]], query: dict[str, str], fields: dict[str, Callable]) -> list:
    for field, parse in fields.items():
        for compare, value in query_bounds(query, field, parse):
            records = [r for r in records if compare(_comparable(r[field]), _comparable(value))]
    return records


def _comparable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def offset_page(
    request: Request, query: dict[str, str], records: list[dict[str, Any]], sort: str, order: str
) -> dict[str, Any]:
    records = sorted(records, key=lambda r: (r[sort], r["ticker"]), reverse=order == "desc")
    offset, limit = page_offset(query), page_limit(query)
    body: dict[str, Any] = {
        "results": records[offset : offset + limit],
        "status": "OK",
        "request_id": request.request_id,
    }
    if offset + limit < len(records):
        body["next_url"] = next_url(request, {**query, "_offset": str(offset + limit)})
    return body
