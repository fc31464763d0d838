"""The sandbox's news: synthetic, deterministic articles per New York calendar day, and GET /v2/reference/news.

More articles in market hours, some overnight and at weekends; SPY's sentiment loosely follows that day's SPY
move. Pages are keyset-paged by (publication time, id).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import operator
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import market
from spy_pipeline.sandbox.http_api import ApiError, Request
from spy_pipeline.sandbox.queries import choice, next_url, page_limit, parse_date, query_bounds, query_of

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
        raise ApiError(400, f"Could not parse {name} '{text}': use YYYY-MM-DD or RFC3339") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def ticker_news(request: Request, _match: re.Match[str]) -> dict[str, Any]:
    """GET /v2/reference/news: articles by publication time, newest first unless order=asc."""
    query = query_of(request)
    query.setdefault("_today", request.today.isoformat())  # pages keep the first page's horizon
    choice(query, "sort", ("published_utc",), "published_utc")
    order = choice(query, "order", ("asc", "desc"), "desc")
    limit = page_limit(query)
    ticker = query.get("ticker")
    bounds = query_bounds(query, "published_utc", _parse_instant)
    lowest = max([v for c, v in bounds if c in (operator.eq, operator.gt, operator.ge)], default=None)
    highest = min([v for c, v in bounds if c in (operator.eq, operator.lt, operator.le)], default=None)
    first_day = NEWS_FIRST_DAY
    last_day = min(parse_date(query["_today"], "cursor"), cal.last_known_day())
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
        body["next_url"] = next_url(request, {**query, "_after": f"{page[-1].published},{page[-1].id}"})
    return body
