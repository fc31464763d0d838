"""Polygon REST endpoints of the sandbox: plain functions from a parsed request to a JSON body, and ROUTES.

Aggregates, open-close and market status are here; the reference lists are in contracts.py, news.py and
corporate_actions.py (their query conventions in queries.py, what every handler shares in http_api.py).

Shapes follow Polygon's documented responses (see the README's "Sandbox" section).
"""

from __future__ import annotations

import datetime as dt
import re

import polars as pl

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import catalog, contracts, corporate_actions, market, news
from spy_pipeline.sandbox.http_api import ApiError, Handler, Request, decode_cursor, encode_cursor

MAX_AGGS_LIMIT = 50_000
DEFAULT_AGGS_LIMIT = 5_000
# Polygon names an early close after the holiday it neighbours.
EARLY_CLOSE_NAMES = {7: "Independence Day", 11: "Thanksgiving", 12: "Christmas"}
TIMESPAN_MS = {"minute": 60_000, "hour": 3_600_000}


def _parse_bound(text: str, end: bool) -> int:
    """A from/to bound as ms: YYYY-MM-DD means that whole ET day; digits are Unix ms."""
    if text.isdigit():
        return int(text)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ApiError(
            400, f"Could not parse the time parameter: '{text}'. Use YYYY-MM-DD or a Unix MS Timestamp"
        ) from None
    midnight = dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time(), tzinfo=cal.NEW_YORK)
    return int(midnight.timestamp() * 1000) - (1 if end else 0)


def _days_between(start_ms: int, end_ms: int) -> list[dt.date]:
    first = dt.datetime.fromtimestamp(start_ms / 1000, cal.NEW_YORK).date()
    last = dt.datetime.fromtimestamp(end_ms / 1000, cal.NEW_YORK).date()
    if first > last:
        raise ApiError(400, "The 'from' date must not be after the 'to' date")
    if (last - first).days > 3_660:
        raise ApiError(400, "The requested range is too large")
    return cal.trading_days(first, last) if last >= cal.FIRST_TRADING_DAY else []


def _bar_exprs(columns: list[str]) -> list[pl.Expr]:
    """How minute bars combine into a longer bar; an index (no volume) has only o/h/l/c."""
    exprs = [pl.col("o").first(), pl.col("h").max(), pl.col("l").min(), pl.col("c").last()]
    if "v" in columns:
        exprs += [
            ((pl.col("vw") * pl.col("v")).sum() / pl.col("v").sum()).round(4).alias("vw"),
            pl.col("v").sum(),
            pl.col("n").sum(),
        ]
    return exprs


def _aggregate(bars: pl.DataFrame, bucket_ms: int) -> pl.DataFrame:
    return (
        bars.with_columns(bucket=(pl.col("t") // bucket_ms) * bucket_ms)
        .group_by("bucket", maintain_order=True)
        .agg(_bar_exprs(bars.columns))
        .rename({"bucket": "t"})
    )


def _day_bar(day: dt.date, bars: pl.DataFrame) -> pl.DataFrame:
    """Price fields from the regular session; volume and trades from the whole day (as Polygon)."""
    regular = pl.Series(market.session_of(day, bars["t"].to_numpy()) == "regular")
    midnight_ms = int(dt.datetime.combine(day, dt.time(), tzinfo=cal.NEW_YORK).timestamp() * 1000)
    bar = bars.filter(regular).select(_bar_exprs(bars.columns)).with_columns(t=pl.lit(midnight_ms, pl.Int64))
    if "v" in bars.columns:
        bar = bar.with_columns(v=pl.lit(float(bars["v"].sum())), n=pl.lit(int(bars["n"].sum())))
    return bar


def aggregates(request: Request, match: re.Match[str]) -> dict[str, object]:
    ticker, multiplier, timespan = match["ticker"], int(match["multiplier"]), match["timespan"]
    query = dict(request.query)
    if "cursor" in query:
        query = {**{k: str(v) for k, v in decode_cursor(query["cursor"]).items()}}
    offset = int(query.get("offset", 0))
    sort = query.get("sort", "asc")
    if sort not in ("asc", "desc"):
        raise ApiError(400, "sort must be 'asc' or 'desc'")
    try:
        limit = int(query.get("limit", DEFAULT_AGGS_LIMIT))
    except ValueError:
        raise ApiError(400, "limit must be an integer") from None
    if not 1 <= limit <= MAX_AGGS_LIMIT or multiplier < 1:
        raise ApiError(400, f"limit must be 1 to {MAX_AGGS_LIMIT} and multiplier at least 1")
    if timespan not in ("minute", "hour", "day"):
        raise ApiError(400, f"Unsupported timespan '{timespan}' in the sandbox (minute, hour, day)")
    start_ms = _parse_bound(match["from"], end=False)
    end_ms = _parse_bound(match["to"], end=True)
    days = _days_between(start_ms, end_ms)
    if timespan == "day":
        frames = [_day_bar(d, bars) for d in days if (bars := catalog.minute_bars(ticker, d)).height]
        frame = pl.concat(frames) if frames else pl.DataFrame()
        if multiplier > 1 and frame.height:
            frame = (
                frame.with_row_index("i")
                .group_by(pl.col("i") // multiplier, maintain_order=True)
                .agg(pl.col("t").first(), *_bar_exprs(frame.columns))
                .drop("i")
            )
    else:
        frames = [catalog.minute_bars(ticker, d) for d in days]
        frame = pl.concat(frames) if frames else pl.DataFrame()
        if frame.height:
            frame = frame.filter(pl.col("t").is_between(start_ms, end_ms))
            bucket = multiplier * TIMESPAN_MS[timespan]
            if bucket != 60_000:
                frame = _aggregate(frame, bucket)
    if frame.height and sort == "desc":
        frame = frame.reverse()
    total = frame.height
    page = frame.slice(offset, limit) if total else frame
    body: dict[str, object] = {
        "ticker": ticker,
        "queryCount": page.height,
        "resultsCount": page.height,
        "adjusted": query.get("adjusted", "true") != "false",
        "status": "OK",
        "request_id": request.request_id,
        "count": page.height,
    }
    if page.height:
        fields = [name for name in ("v", "vw", "o", "c", "h", "l", "t", "n") if name in page.columns]
        body["results"] = page.select(fields).to_dicts()
    if offset + limit < total:
        state = {"offset": offset + limit, "limit": limit, "sort": sort, "adjusted": query.get("adjusted", "true")}
        body["next_url"] = f"{request.base_url}{request.path}?cursor={encode_cursor(state)}"
    return body


def open_close(request: Request, match: re.Match[str]) -> dict[str, object]:
    ticker = match["ticker"]
    try:
        day = dt.date.fromisoformat(match["date"])
    except ValueError:
        raise ApiError(400, f"Could not parse the date '{match['date']}'") from None
    bars = catalog.minute_bars(ticker, day)
    if not bars.height:
        raise ApiError(404, "Data not found.", status_word="NOT_FOUND")
    sessions = market.session_of(day, bars["t"].to_numpy())
    regular = bars.filter(pl.Series(sessions == "regular"))
    pre, post = bars.filter(pl.Series(sessions == "pre")), bars.filter(pl.Series(sessions == "post"))
    return {
        "status": "OK",
        "from": day.isoformat(),
        "symbol": ticker,
        "open": float(regular["o"][0]),
        "high": float(regular["h"].max()),
        "low": float(regular["l"].min()),
        "close": float(regular["c"][-1]),
        "volume": float(regular["v"].sum()),
        "afterHours": float(post["c"][-1]) if post.height else float(regular["c"][-1]),
        "preMarket": float(pre["o"][0]) if pre.height else float(regular["o"][0]),
    }


def upcoming_market_status(request: Request, _match: re.Match[str]) -> list[dict[str, object]]:
    start = request.today
    end = min(start + dt.timedelta(days=370), cal.last_known_day())
    entries: list[tuple[dt.date, dict[str, object]]] = []
    for day, name in cal.holidays_with_names(start, end):
        for exchange in ("NYSE", "NASDAQ"):
            entries.append((day, {"exchange": exchange, "name": name, "date": day.isoformat(), "status": "closed"}))
    for day in cal.early_closes(start, end):
        bounds = cal.session_bounds(day)
        for exchange in ("NYSE", "NASDAQ"):
            entries.append(
                (
                    day,
                    {
                        "exchange": exchange,
                        "name": EARLY_CLOSE_NAMES.get(day.month, "Early Close"),
                        "date": day.isoformat(),
                        "status": "early-close",
                        "open": _iso_ms(bounds.open),
                        "close": _iso_ms(bounds.close),
                    },
                )
            )
    return [entry for _, entry in sorted(entries, key=lambda item: item[0])]


def _iso_ms(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


ROUTES: list[tuple[re.Pattern[str], Handler]] = [
    (
        re.compile(
            r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<multiplier>\d+)/(?P<timespan>[a-z]+)/(?P<from>[^/]+)/(?P<to>[^/]+)$"
        ),
        aggregates,
    ),
    (re.compile(r"^/v1/open-close/(?P<ticker>[^/]+)/(?P<date>[^/]+)$"), open_close),
    (re.compile(r"^/v1/marketstatus/upcoming$"), upcoming_market_status),
    (re.compile(r"^/v3/reference/options/contracts$"), contracts.options_contracts),
    (re.compile(r"^/v2/reference/news$"), news.ticker_news),
    (re.compile(r"^/v3/reference/dividends$"), corporate_actions.dividends),
    (re.compile(r"^/v3/reference/splits$"), corporate_actions.splits),
]
