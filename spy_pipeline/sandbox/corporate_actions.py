"""The sandbox's corporate actions: GET /v3/reference/dividends and /v3/reference/splits.

SPY, QQQ and IWM pay quarterly dividends (ex-dates around the third Friday of Mar/Jun/Sep/Dec); none of them
split, so two fictional tickers carry splits to show the shape.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import market
from spy_pipeline.sandbox.http_api import Request
from spy_pipeline.sandbox.queries import (
    choice,
    filter_records,
    offset_page,
    parse_bool,
    parse_date,
    parse_number,
    query_of,
)

DIVIDEND_YIELDS = {"SPY": 0.013, "QQQ": 0.006, "IWM": 0.012}
T_PLUS_ONE = dt.date(2024, 5, 28)  # from then on the record date is the ex-dividend date
def record_id(*parts: str) -> str:
    """A stable id in Polygon's shape ("E" and 64 hex digits); the spec requires one on every dividend and split."""
    return "E" + hashlib.sha256("|".join(parts).encode()).hexdigest()


SPLITS = (  # SPY, QQQ and IWM never split; fictional tickers show the shape
    {"execution_date": "2021-07-20", "id": record_id("split", "SBXA", "2021-07-20"), "split_from": 1, "split_to": 4,
     "ticker": "SBXA"},
    {"execution_date": "2023-03-01", "id": record_id("split", "SBXB", "2023-03-01"), "split_from": 10, "split_to": 1,
     "ticker": "SBXB"},
)


def _session_on_or_before(day: dt.date) -> dt.date:
    while not cal.is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def _session_after(day: dt.date, sessions: int = 1) -> dt.date:
    for _ in range(sessions):
        day += dt.timedelta(days=1)
        while not cal.is_trading_day(day):
            day += dt.timedelta(days=1)
    return day


def _session_before(day: dt.date, sessions: int = 1) -> dt.date:
    for _ in range(sessions):
        day = _session_on_or_before(day - dt.timedelta(days=1))
    return day


def _last_session_of_month(year: int, month: int) -> dt.date:
    first_of_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return _session_on_or_before(first_of_next - dt.timedelta(days=1))


def _third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)


@cache
def all_dividends() -> tuple[dict[str, Any], ...]:
    """Quarterly dividends of SPY, QQQ and IWM: ex-dates around the third Friday of Mar/Jun/Sep/Dec."""
    records = []
    last = cal.last_known_day() - dt.timedelta(days=45)
    for year in range(cal.FIRST_TRADING_DAY.year, last.year + 1):
        for month in (3, 6, 9, 12):
            friday = _session_on_or_before(_third_friday(year, month))
            for ticker, annual_yield in DIVIDEND_YIELDS.items():
                ex = friday if ticker != "QQQ" else _session_after(friday)  # QQQ goes ex the Monday after
                if not cal.FIRST_TRADING_DAY < ex <= last:
                    continue
                declared = _session_before(ex, 3)
                record = ex if ex >= T_PLUS_ONE else _session_after(ex)
                pay = _last_session_of_month(year + month // 12, month % 12 + 1)  # end of the next month
                noise = 1.0 + 0.04 * market._rng("dividend", ticker, ex.isoformat()).standard_normal()
                cash = round(market.regular_close(ticker, declared) * annual_yield / 4 * noise, 5)
                records.append(
                    {
                        "cash_amount": cash,
                        "declaration_date": declared.isoformat(),
                        "dividend_type": "CD",
                        "ex_dividend_date": ex.isoformat(),
                        "frequency": 4,
                        "id": record_id("dividend", ticker, ex.isoformat()),
                        "pay_date": pay.isoformat(),
                        "record_date": record.isoformat(),
                        "ticker": ticker,
                    }
                )
    return tuple(records)


DIVIDEND_FILTERS: dict[str, Callable[[str, str], Any]] = {
    "ticker": lambda text, _name: text,
    "ex_dividend_date": parse_date,
    "record_date": parse_date,
    "declaration_date": parse_date,
    "pay_date": parse_date,
    "cash_amount": parse_number,
    "frequency": lambda text, name: int(parse_number(text, name)),
    "dividend_type": lambda text, _name: text,
}


def dividends(request: Request, _match: re.Match[str]) -> dict[str, Any]:
    """GET /v3/reference/dividends: those declared by today, latest ex-dividend date first by default."""
    query = query_of(request)
    query.setdefault("_today", request.today.isoformat())
    today = parse_date(query["_today"], "cursor")
    sort = choice(
        query,
        "sort",
        ("ex_dividend_date", "pay_date", "declaration_date", "record_date", "cash_amount", "ticker"),
        "ex_dividend_date",
    )
    order = choice(query, "order", ("asc", "desc"), "desc")
    records = [r for r in all_dividends() if r["declaration_date"] <= today.isoformat()]
    records = filter_records(records, query, DIVIDEND_FILTERS)
    return offset_page(request, query, records, sort, order)


def splits(request: Request, _match: re.Match[str]) -> dict[str, Any]:
    """GET /v3/reference/splits: latest execution date first by default (SPY has none)."""
    query = query_of(request)
    sort = choice(query, "sort", ("execution_date", "ticker"), "execution_date")
    order = choice(query, "order", ("asc", "desc"), "desc")
    records = filter_records(
        [dict(s) for s in SPLITS], query, {"ticker": lambda text, _name: text, "execution_date": parse_date}
    )
    if "reverse_split" in query:
        reverse = parse_bool(query["reverse_split"], "reverse_split")
        records = [r for r in records if (r["split_from"] > r["split_to"]) == reverse]
    return offset_page(request, query, records, sort, order)
