"""Polygon reference endpoints of the sandbox: options contracts, news, dividends and splits.

Handlers take a parsed request and the route's match and return the JSON body, like those in
routes.py (which lists them in ROUTES). Lists page with an absolute `next_url` whose query holds only
`cursor=...`: the cursor carries the whole query (with defaults such as `as_of` resolved), so every
page answers the same question.

Data are synthetic and deterministic: contracts come from spy_pipeline.sandbox.options; news is
generated per New York calendar day (more in market hours, some overnight and at weekends, SPY's
sentiment loosely following that day's SPY move); SPY, QQQ and IWM pay quarterly dividends; none of
them split (two fictional tickers carry splits so the shape has examples).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import market, options

if TYPE_CHECKING:
    from spy_pipeline.sandbox.routes import Request

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
RANGE_SUFFIXES: dict[str, Callable[[Any, Any], bool]] = {
    "": operator.eq,
    ".gt": operator.gt,
    ".gte": operator.ge,
    ".lt": operator.lt,
    ".lte": operator.le,
}


# --- shared plumbing -----------------------------------------------------------------------------


def _error(status: int, message: str) -> Exception:
    # routes.py imports this module for its ROUTES table, so its names are imported here on use.
    from spy_pipeline.sandbox.routes import ApiError

    return ApiError(status, message)


def _query(request: Request) -> dict[str, str]:
    """The request's query, or the one a cursor carries (a next page sends nothing else)."""
    if "cursor" not in request.query:  # keys starting with "_" are the sandbox's own, only ever in cursors
        return {k: v for k, v in request.query.items() if not k.startswith("_")}
    from spy_pipeline.sandbox.routes import _decode_cursor

    state = _decode_cursor(request.query["cursor"])
    if not isinstance(state, dict):
        raise _error(400, "Invalid cursor")
    return {str(k): str(v) for k, v in state.items()}


def _next_url(request: Request, state: dict[str, str]) -> str:
    from spy_pipeline.sandbox.routes import _encode_cursor

    return f"{request.base_url}{request.path}?cursor={_encode_cursor(state)}"


def _limit(query: dict[str, str]) -> int:
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise _error(400, "limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise _error(400, f"limit must be 1 to {MAX_LIMIT}")
    return limit


def _offset(query: dict[str, str]) -> int:
    try:
        return max(int(query.get("_offset", 0)), 0)
    except ValueError:
        raise _error(400, "Invalid cursor") from None


def _choice(query: dict[str, str], name: str, allowed: Iterable[str], default: str) -> str:
    allowed = tuple(allowed)
    value = query.get(name, default)
    if value not in allowed:
        raise _error(400, f"{name} must be one of {', '.join(allowed)}, got '{value}'")
    return value


def _parse_date(text: str, name: str = "date") -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _error(400, f"Could not parse {name} '{text}': use YYYY-MM-DD") from None


def _parse_number(text: str, name: str = "number") -> float:
    try:
        value = float(text)
    except ValueError:
        raise _error(400, f"Could not parse {name} '{text}' as a number") from None
    if not math.isfinite(value):
        raise _error(400, f"{name} must be finite")
    return value


def _parse_bool(text: str, name: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise _error(400, f"{name} must be true or false")
    return text.lower() == "true"


def _bounds(query: dict[str, str], field: str, parse: Callable[[str, str], Any]) -> list[tuple[Callable, Any]]:
    """The comparisons a query asks of a field: field=, field.gt=, .gte=, .lt=, .lte=."""
    return [
        (compare, parse(query[field + suffix], field + suffix))
        for suffix, compare in RANGE_SUFFIXES.items()
        if field + suffix in query
    ]


def _filter_records(records: list[dict[str, Any]], query: dict[str, str], fields: dict[str, Callable]) -> list:
    for field, parse in fields.items():
        for compare, value in _bounds(query, field, parse):
            records = [r for r in records if compare(_comparable(r[field]), _comparable(value))]
    return records


def _comparable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _offset_page(
    request: Request, query: dict[str, str], records: list[dict[str, Any]], sort: str, order: str
) -> dict[str, Any]:
    records = sorted(records, key=lambda r: (r[sort], r["ticker"]), reverse=order == "desc")
    offset, limit = _offset(query), _limit(query)
    body: dict[str, Any] = {
        "results": records[offset : offset + limit],
        "status": "OK",
        "request_id": request.request_id,
    }
    if offset + limit < len(records):
        body["next_url"] = _next_url(request, {**query, "_offset": str(offset + limit)})
    return body


# --- options contracts ---------------------------------------------------------------------------

CONTRACT_SORTS = ("ticker", "expiration_date", "strike_price")


def _json_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def options_contracts(request: Request, _match: re.Match[str]) -> dict[str, Any]:
    """GET /v3/reference/options/contracts: the contracts listed on `as_of` (default today)."""
    query = _query(request)
    query.setdefault("as_of", request.today.isoformat())
    as_of = _parse_date(query["as_of"], "as_of")
    expired = _parse_bool(query.get("expired", "false"), "expired")
    contract_type = query.get("contract_type")
    if contract_type not in (None, "call", "put"):
        raise _error(400, "contract_type must be 'call' or 'put'")
    sort = _choice(query, "sort", CONTRACT_SORTS, "ticker")
    order = _choice(query, "order", ("asc", "desc"), "asc")
    limit, offset = _limit(query), _offset(query)
    expiration_bounds = _bounds(query, "expiration_date", _parse_date)
    strike_bounds = _bounds(query, "strike_price", _parse_number)
    underlyings = [u for u in options.UNDERLYINGS if query.get("underlying_ticker", u) == u]

    # One row per contract: (underlying, expiration, type, strike) as arrays, in ticker order.
    columns: list[tuple[np.ndarray, ...]] = []
    types = [t for t in ("call", "put") if contract_type in (None, t)]
    for u, underlying in enumerate(underlyings):
        for expiration in options.listed_expirations(as_of, underlying, expired):
            if not all(compare(expiration.date, value) for compare, value in expiration_bounds):
                continue
            grid = options.strikes(expiration, as_of, underlying)
            keep = np.ones(grid.size, dtype=bool)
            for compare, value in strike_bounds:
                keep &= compare(grid, value)
            grid = grid[keep]
            for kind in types:
                n = grid.size
                columns.append(
                    (
                        np.full(n, u),
                        np.full(n, expiration.date.toordinal()),
                        np.full(n, kind == "put"),
                        grid,
                    )
                )
    if columns:
        und, exp, put, strike = (np.concatenate(parts) for parts in zip(*columns, strict=True))
    else:
        und, exp, put, strike = (np.empty(0), np.empty(0), np.empty(0, dtype=bool), np.empty(0))
    keys = {  # np.lexsort sorts by its last key first
        "ticker": (strike, put, exp, und),
        "expiration_date": (strike, put, und, exp),
        "strike_price": (put, exp, und, strike),
    }[sort]
    ordered = np.lexsort(keys)
    if order == "desc":
        ordered = ordered[::-1]
    page = ordered[offset : offset + limit]
    results = []
    for i in page:
        underlying = underlyings[int(und[i])]
        kind = "put" if put[i] else "call"
        expiration = dt.date.fromordinal(int(exp[i]))
        results.append(
            {
                "cfi": options.CFI[kind],
                "contract_type": kind,
                "exercise_style": "american",
                "expiration_date": expiration.isoformat(),
                "primary_exchange": options.PRIMARY_EXCHANGE,
                "shares_per_contract": options.SHARES_PER_CONTRACT,
                "strike_price": _json_number(strike[i]),
                "ticker": options.ticker_for(underlying, expiration, kind, float(strike[i])),
                "underlying_ticker": underlying,
            }
        )
    body: dict[str, Any] = {"results": results, "status": "OK", "request_id": request.request_id}
    if offset + limit < ordered.size:
        body["next_url"] = _next_url(request, {**query, "_offset": str(offset + limit)})
    return body


# --- news ----------------------------------------------------------------------------------------

NEWS_FIRST_DAY = dt.date(2015, 1, 1)


@dataclass(frozen=True)
class Publisher:
    name: str
    homepage_url: str
    slug: str
    authors: tuple[str, ...]

    def as_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "homepage_url": self.homepage_url,
            "logo_url": f"https://s3.polygon.io/public/assets/news/logos/{self.slug}.svg",
            "favicon_url": f"https://s3.polygon.io/public/assets/news/favicons/{self.slug}.ico",
        }


PUBLISHERS = (
    Publisher("MarketWatch", "https://www.marketwatch.com/", "marketwatch", ("Alex Rowan", "Priya Natarajan")),
    Publisher("Benzinga", "https://www.benzinga.com/", "benzinga", ("Benzinga Newsdesk", "Casey Moreno")),
    Publisher("The Motley Fool", "https://www.fool.com/", "fool", ("Jordan Hale", "Morgan Lee")),
    Publisher("Zacks Investment Research", "https://www.zacks.com/", "zacks", ("Zacks Equity Research",)),
    Publisher("Investing.com", "https://www.investing.com/", "investing", ("Investing.com Staff", "Dana Kim")),
    Publisher("GlobeNewswire Inc.", "https://www.globenewswire.com/", "globenewswire", ("GlobeNewswire",)),
)
NEWS_TICKERS = ("SPY", "QQQ", "IWM", "AAPL", "NVDA", "MSFT", "AMZN", "GOOGL", "META", "TSLA", "JPM", "XOM", "AVGO")
COMPANY_NAMES = {
    "SPY": "the S&P 500",
    "QQQ": "the Nasdaq-100",
    "IWM": "small caps",
    "AAPL": "Apple",
    "NVDA": "Nvidia",
    "MSFT": "Microsoft",
    "AMZN": "Amazon",
    "GOOGL": "Alphabet",
    "META": "Meta Platforms",
    "TSLA": "Tesla",
    "JPM": "JPMorgan Chase",
    "XOM": "Exxon Mobil",
    "AVGO": "Broadcom",
}
REASONS = (
    "Treasury yields ease",
    "inflation data cools",
    "the Fed signals patience",
    "earnings beat estimates",
    "AI spending stays strong",
    "jobs data surprises",
    "oil prices swing",
    "bond yields climb",
    "tariff worries return",
    "consumer spending slows",
)
KEYWORDS = (
    "stocks",
    "S&P 500",
    "ETFs",
    "options",
    "Federal Reserve",
    "earnings",
    "inflation",
    "interest rates",
    "technology",
    "volatility",
    "market outlook",
    "economy",
)
HEADLINES = {
    "positive": (
        "Stocks climb as {reason}; {name} leads the way",
        "S&P 500 rallies as {reason}",
        "Wall Street gains: {name} pushes the market higher",
        "Bulls return as {reason}",
    ),
    "negative": (
        "Stocks slide as {reason}",
        "S&P 500 falls; {name} weighs on the market",
        "Sell-off deepens as {reason}",
        "Wall Street retreats as {reason}",
    ),
    "neutral": (
        "What to watch in markets as {reason}",
        "{name}: what options traders are pricing in",
        "ETF flows steady as {reason}",
        "Market check: {name} and the week ahead",
    ),
}
REASONING = {
    "positive": "{ticker} is seen benefiting as {reason}, with buyers stepping in.",
    "negative": "{ticker} came under pressure as {reason}, with sellers in control.",
    "neutral": "{ticker} is mentioned without a clear directional view while {reason}.",
}


def _day_move(day: dt.date) -> float:
    """SPY's close-to-close return on `day`, or on the last session before it when the market was shut."""
    index, closes, _ = market._daily_levels("SPY")
    session = day
    while session not in index and session > cal.FIRST_TRADING_DAY:
        session -= dt.timedelta(days=1)
    i = index.get(session, 0)
    return float(closes[i] / closes[i - 1] - 1.0) if i > 0 else 0.0


def _sentiment(score: float) -> str:
    return "positive" if score > 0.5 else "negative" if score < -0.5 else "neutral"


def _article_id(day: dt.date, number: int) -> str:
    digest = hashlib.sha256(f"news|{day.isoformat()}|{number}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _publish_times(rng: np.random.Generator, count: int, trading: bool) -> np.ndarray:
    """Seconds after New York midnight: mostly market hours on trading days, spread out otherwise."""
    if trading:
        spans = np.array([[9.5, 16.0], [6.0, 9.5], [16.0, 20.0], [0.0, 6.0], [20.0, 24.0]]) * 3600
        span = spans[rng.choice(len(spans), size=count, p=[0.6, 0.13, 0.14, 0.06, 0.07])]
    else:
        spans = np.array([[7.0, 22.0], [0.0, 7.0], [22.0, 24.0]]) * 3600
        span = spans[rng.choice(len(spans), size=count, p=[0.85, 0.1, 0.05])]
    return np.floor(rng.uniform(span[:, 0], span[:, 1]))


@dataclass(frozen=True)
class Article:
    published: int  # Unix seconds
    id: str
    tickers: tuple[str, ...]
    body: dict[str, Any]


@lru_cache(maxsize=8192)
def articles_on(day: dt.date) -> tuple[Article, ...]:
    """All synthetic articles published on a New York calendar day, in publication order."""
    rng = market._rng("news", day.isoformat())
    trading = cal.FIRST_TRADING_DAY <= day <= cal.last_known_day() and cal.is_trading_day(day)
    move = _day_move(day)
    market_score = move / 0.01 * (1.0 if trading else 0.5)
    if trading:
        spy_count = int(np.clip(round(16 + 7 * abs(move / 0.01) + 5 * rng.standard_normal()), 10, 40))
        other_count = int(rng.integers(5, 21))
    else:
        spy_count, other_count = int(rng.integers(2, 9)), int(rng.integers(1, 6))
    count = spy_count + other_count
    seconds = _publish_times(rng, count, trading)
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=cal.NEW_YORK)
    others = [t for t in NEWS_TICKERS if t != "SPY"]
    result = []
    for number in range(count):
        if number < spy_count:
            extra = rng.choice(others, size=int(rng.integers(0, 4)), replace=False).tolist()
            tickers = ["SPY", *extra]
        else:
            tickers = rng.choice(others, size=int(rng.integers(1, 4)), replace=False).tolist()
        rng.shuffle(tickers)
        scores = {
            t: (market_score if t == "SPY" else 0.6 * market_score + 0.9 * rng.standard_normal())
            + 0.7 * rng.standard_normal()
            for t in tickers
        }
        lead = "SPY" if "SPY" in tickers else tickers[0]
        mood = _sentiment(scores[lead])
        reason = REASONS[int(rng.integers(len(REASONS)))]
        publisher = PUBLISHERS[int(rng.integers(len(PUBLISHERS)))]
        name = COMPANY_NAMES[tickers[0] if lead == "SPY" and len(tickers) > 1 else lead]
        title = HEADLINES[mood][int(rng.integers(len(HEADLINES[mood])))].format(reason=reason, name=name)
        title = title[0].upper() + title[1:]
        published = midnight + dt.timedelta(seconds=float(seconds[number]))
        published_utc = published.astimezone(dt.UTC)
        article_id = _article_id(day, number)
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        story = f"{published_utc:%Y/%m/%d}/{slug}-{int(rng.integers(10**7, 10**8))}"
        keywords = rng.choice(KEYWORDS, size=int(rng.integers(2, 6)), replace=False).tolist()
        body = {
            "id": article_id,
            "publisher": publisher.as_json(),
            "title": title,
            "author": publisher.authors[int(rng.integers(len(publisher.authors)))],
            "published_utc": published_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "article_url": f"{publisher.homepage_url}news/{story}",
            "tickers": tickers,
            "amp_url": f"{publisher.homepage_url}amp/news/{story}",
            "image_url": f"https://images.polygon-sandbox.invalid/news/{article_id[:16]}.jpg",
            "description": f"{title}. Coverage of {', '.join(tickers)} and what it means for investors.",
            "keywords": keywords,
            "insights": [
                {
                    "ticker": t,
                    "sentiment": _sentiment(scores[t]),
                    "sentiment_reasoning": REASONING[_sentiment(scores[t])].format(ticker=t, reason=reason),
                }
                for t in tickers
            ],
        }
        result.append(Article(int(published_utc.timestamp()), article_id, tuple(tickers), body))
    return tuple(sorted(result, key=lambda a: (a.published, a.id)))


def _parse_instant(text: str, name: str) -> float:
    """A published_utc bound as Unix seconds: a date means its 00:00 UTC; RFC3339 without a zone is UTC."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _error(400, f"Could not parse {name} '{text}': use YYYY-MM-DD or RFC3339") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def ticker_news(request: Request, _match: re.Match[str]) -> dict[str, Any]:
    """GET /v2/reference/news: articles by publication time, newest first unless order=asc."""
    query = _query(request)
    query.setdefault("_today", request.today.isoformat())  # pages keep the first page's horizon
    _choice(query, "sort", ("published_utc",), "published_utc")
    order = _choice(query, "order", ("asc", "desc"), "desc")
    limit = _limit(query)
    ticker = query.get("ticker")
    bounds = _bounds(query, "published_utc", _parse_instant)
    lowest = max([v for c, v in bounds if c in (operator.eq, operator.gt, operator.ge)], default=None)
    highest = min([v for c, v in bounds if c in (operator.eq, operator.lt, operator.le)], default=None)
    first_day = NEWS_FIRST_DAY
    last_day = min(_parse_date(query["_today"], "cursor"), cal.last_known_day())
    if lowest is not None:
        first_day = max(first_day, dt.datetime.fromtimestamp(lowest, cal.NEW_YORK).date())
    if highest is not None:
        last_day = min(last_day, dt.datetime.fromtimestamp(highest, cal.NEW_YORK).date())
    after = None
    if "_after" in query:  # keyset paging: the last article of the previous page (Unix seconds, id)
        seconds, _, article_id = query["_after"].partition(",")
        after = (int(seconds), article_id)
        anchor = dt.datetime.fromtimestamp(after[0], cal.NEW_YORK).date()
        if order == "asc":
            first_day = max(first_day, anchor)
        else:
            last_day = min(last_day, anchor)

    def wanted(article: Article) -> bool:
        if ticker is not None and ticker not in article.tickers:
            return False
        if not all(compare(article.published, value) for compare, value in bounds):
            return False
        if after is not None:
            key = (article.published, article.id)
            return key > after if order == "asc" else key < after
        return True

    found: list[Article] = []
    if (ticker is None or ticker in NEWS_TICKERS) and first_day <= last_day:
        span = (last_day - first_day).days
        steps = range(span + 1) if order == "asc" else range(span, -1, -1)
        for step in steps:
            day_articles = articles_on(first_day + dt.timedelta(days=step))
            found += [a for a in (day_articles if order == "asc" else reversed(day_articles)) if wanted(a)]
            if len(found) > limit:
                break
    page = found[:limit]
    body: dict[str, Any] = {
        "results": [a.body for a in page],
        "status": "OK",
        "request_id": request.request_id,
        "count": len(page),
    }
    if len(found) > limit:
        body["next_url"] = _next_url(request, {**query, "_after": f"{page[-1].published},{page[-1].id}"})
    return body


# --- dividends and splits ------------------------------------------------------------------------

DIVIDEND_YIELDS = {"SPY": 0.013, "QQQ": 0.006, "IWM": 0.012}
T_PLUS_ONE = dt.date(2024, 5, 28)  # from then on the record date is the ex-dividend date
SPLITS = (  # SPY, QQQ and IWM never split; fictional tickers show the shape
    {"execution_date": "2021-07-20", "split_from": 1, "split_to": 4, "ticker": "SBXA"},
    {"execution_date": "2023-03-01", "split_from": 10, "split_to": 1, "ticker": "SBXB"},
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
                        "pay_date": pay.isoformat(),
                        "record_date": record.isoformat(),
                        "ticker": ticker,
                    }
                )
    return tuple(records)


DIVIDEND_FILTERS: dict[str, Callable[[str, str], Any]] = {
    "ticker": lambda text, _name: text,
    "ex_dividend_date": _parse_date,
    "record_date": _parse_date,
    "declaration_date": _parse_date,
    "pay_date": _parse_date,
    "cash_amount": _parse_number,
    "frequency": lambda text, name: int(_parse_number(text, name)),
    "dividend_type": lambda text, _name: text,
}


def dividends(request: Request, _match: re.Match[str]) -> dict[str, Any]:
    """GET /v3/reference/dividends: those declared by today, latest ex-dividend date first by default."""
    query = _query(request)
    query.setdefault("_today", request.today.isoformat())
    today = _parse_date(query["_today"], "cursor")
    sort = _choice(
        query,
        "sort",
        ("ex_dividend_date", "pay_date", "declaration_date", "record_date", "cash_amount", "ticker"),
        "ex_dividend_date",
    )
    order = _choice(query, "order", ("asc", "desc"), "desc")
    records = [r for r in all_dividends() if r["declaration_date"] <= today.isoformat()]
    records = _filter_records(records, query, DIVIDEND_FILTERS)
    return _offset_page(request, query, records, sort, order)


def splits(request: Request, _match: re.Match[str]) -> dict[str, Any]:
    """GET /v3/reference/splits: latest execution date first by default (SPY has none)."""
    query = _query(request)
    sort = _choice(query, "sort", ("execution_date", "ticker"), "execution_date")
    order = _choice(query, "order", ("asc", "desc"), "desc")
    records = _filter_records(
        [dict(s) for s in SPLITS], query, {"ticker": lambda text, _name: text, "execution_date": _parse_date}
    )
    if "reverse_split" in query:
        reverse = _parse_bool(query["reverse_split"], "reverse_split")
        records = [r for r in records if (r["split_from"] > r["split_to"]) == reverse]
    return _offset_page(request, query, records, sort, order)
