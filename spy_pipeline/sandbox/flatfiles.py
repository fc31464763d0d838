"""Polygon Flat Files in the sandbox: the synthetic market as daily gzipped CSV objects behind a path-style S3 API.

Objects are `/{bucket}/{dataset}/{YYYY}/{MM}/{YYYY-MM-DD}.csv.gz` with the real column order and Unix-nanosecond
`window_start`, generated lazily from the same series as the REST routes (catalog/market/options), so a contract's
flat-file bars are its REST bars. Every file also holds other underlyings, look-alikes included (SPYG, SPYV,
I:VIX9D, O:SPYG...). A day's files appear at 11:00 ET the next trading day; before that the key does not exist.

The sandbox's options file holds the SPY contracts near the money (strikes within CHAIN_BAND of the previous
close and of the open, on the expirations of the next CHAIN_SESSIONS sessions: every contract band mode picks)
and their bars: pricing every listed contract would take minutes.

Requests must carry an S3 signature v4 Authorization header whose Credential names the sandbox's access key id
(the signature itself is not verified): any unmodified S3 client works with `endpoint_url=http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler

import numpy as np
import polars as pl

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import market, options

BUCKET = "flatfiles"
OPTIONS_DATASET = "us_options_opra/minute_aggs_v1"
STOCKS_DATASET = "us_stocks_sip/minute_aggs_v1"
INDICES_DATASET = "us_indices/minute_aggs_v1"
BAR_COLUMNS = ["ticker", "volume", "open", "close", "high", "low", "window_start", "transactions"]
INDEX_COLUMNS = ["ticker", "open", "close", "high", "low", "window_start"]
PUBLISHED_AT = dt.time(11, 0)  # ET, the next trading day
CHAIN_BAND, CHAIN_SESSIONS = 0.02, 4
# Other underlyings in the same files, with prices from a known series times a factor.
STOCK_LOOKALIKES = {"SPYG": ("QQQ", 0.8), "SPYV": ("IWM", 0.45), "SPYD": ("IWM", 0.35), "SP": ("QQQ", 0.1)}
INDEX_LOOKALIKES = {"I:VIX9D": 0.93, "I:VIX3M": 1.12, "I:VIX1D": 0.85, "I:SPX": 170.0}
OPTION_LOOKALIKE_ROOTS = ("SPYG", "SPYV", "SPX")
_KEY = re.compile(
    r"^(?P<dataset>us_options_opra/minute_aggs_v1|us_stocks_sip/minute_aggs_v1|us_indices/minute_aggs_v1)"
    r"/(?P<year>[0-9]{4})/(?P<month>[0-9]{2})/(?P<day>[0-9]{4}-[0-9]{2}-[0-9]{2})\.csv\.gz\Z"
)
_CREDENTIAL = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<key_id>[^/\s]+)/")


def object_key(dataset: str, day: dt.date) -> str:
    return f"{dataset}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


def published_at(day: dt.date) -> dt.datetime:
    """When a trading day's files appear: 11:00 ET on the next trading day."""
    following = cal.trading_days(day + dt.timedelta(days=1), day + dt.timedelta(days=10))[0]
    return dt.datetime.combine(following, PUBLISHED_AT, tzinfo=cal.NEW_YORK)


def _with_window_start(bars: pl.DataFrame, ticker: str) -> pl.DataFrame:
    return bars.with_columns(ticker=pl.lit(ticker), window_start=pl.col("t") * 1_000_000)


def _scaled(bars: pl.DataFrame, ticker: str, factor: float) -> pl.DataFrame:
    prices = [(pl.col(name) * factor).round(2).clip(lower_bound=0.01) for name in ("o", "h", "l", "c")]
    return _with_window_start(bars.with_columns(prices), ticker)


def _stock_rows(day: dt.date) -> pl.DataFrame:
    frames = [_with_window_start(market.minute_bars(ticker, day), ticker) for ticker in sorted(market.PROFILES)]
    frames += [_scaled(market.minute_bars(src, day), name, k) for name, (src, k) in STOCK_LOOKALIKES.items()]
    return pl.concat(frames).select(
        "ticker", pl.col("v").cast(pl.Int64).alias("volume"), pl.col("o").alias("open"), pl.col("c").alias("close"),
        pl.col("h").alias("high"), pl.col("l").alias("low"), "window_start", pl.col("n").alias("transactions"),
    )


def _index_rows(day: dt.date) -> pl.DataFrame:
    vix = market.vix_minute_bars(day)
    frames = [_with_window_start(vix, market.VIX_TICKER)]
    frames += [_scaled(vix, name, k) for name, k in INDEX_LOOKALIKES.items()]
    return pl.concat(frames).select(
        "ticker", pl.col("o").alias("open"), pl.col("c").alias("close"), pl.col("h").alias("high"),
        pl.col("l").alias("low"), "window_start",
    )


def chain_tickers(day: dt.date) -> list[str]:
    """The SPY contracts the sandbox's options file holds for `day` (see the module docstring)."""
    path = market.price_path("SPY", day)
    opening = float(path.prices[path.minutes["pre"], 0])
    low = min(path.previous_close, opening) * (1 - CHAIN_BAND)
    high = max(path.previous_close, opening) * (1 + CHAIN_BAND)
    tickers = []
    for expiration in options.listed_expirations(day)[:CHAIN_SESSIONS]:
        grid = options.strikes(expiration, day)
        near = grid[(grid >= low) & (grid <= high)]
        for contract_type in ("call", "put"):
            tickers += [options.ticker_for("SPY", expiration.date, contract_type, float(k)) for k in near]
    return sorted(tickers)


def _option_rows(day: dt.date) -> pl.DataFrame:
    chain = [(ticker, bars) for ticker, bars in options.chain_bar_columns(chain_tickers(day), day) if bars["t"].size]
    # Look-alike roots: a few SPY contracts' bars under another root (O:SPYG...), never SPY's.
    lookalikes = [(ticker.replace("O:SPY", f"O:{root}", 1), bars)
                  for root in OPTION_LOOKALIKE_ROOTS for ticker, bars in chain[:6] if ticker.startswith("O:SPY2")]
    contracts = chain + lookalikes
    if not contracts:
        return pl.DataFrame(schema=dict.fromkeys(BAR_COLUMNS, pl.String))
    # the contracts' numpy columns joined once, one frame for the day (not a frame per contract)
    names = pl.Series([ticker for ticker, _ in contracts], dtype=pl.String)
    tickers = names.gather(np.repeat(np.arange(len(contracts)), [bars["t"].size for _, bars in contracts]))
    column = {name: np.concatenate([bars[name] for _, bars in contracts]) for name in "vochltn"}
    return pl.DataFrame({
        "ticker": tickers, "volume": column["v"].astype(np.int64), "open": column["o"], "close": column["c"],
        "high": column["h"], "low": column["l"], "window_start": column["t"] * 1_000_000,
        "transactions": column["n"],
    })


def day_rows(dataset: str, day: dt.date) -> pl.DataFrame:
    """A day file's rows in the real column order, sorted by ticker then window_start."""
    rows = {OPTIONS_DATASET: _option_rows, STOCKS_DATASET: _stock_rows, INDICES_DATASET: _index_rows}[dataset](day)
    return rows.sort("ticker", "window_start")


@lru_cache(maxsize=24)
def day_file(dataset: str, day: dt.date, revision: int = 0) -> bytes:
    """The gzipped CSV object; a republished revision adds one row of another underlying (a new ETag)."""
    rows = day_rows(dataset, day)
    text = rows.write_csv()
    if revision:
        text += ",".join(["ZZZ" + str(revision), *(["1"] * (rows.width - 1))]) + "\n"
    # level 1: a fifth of level 6's time for a day's options file (0.05 against 0.27 s) at 1.3x the bytes, on
    # loopback; still gzip as Polygon sends it
    return gzip.compress(text.encode(), compresslevel=1, mtime=0)


@dataclass
class FlatFileState:
    """What the sandbox's S3 endpoint serves beyond the generated files: overrides and faults, by key."""

    access_key_id: str
    bucket: str = BUCKET
    objects: dict[str, bytes] = field(default_factory=dict)  # served as they are, whatever the day
    revisions: dict[str, int] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    interrupted: set[str] = field(default_factory=set)  # the body stops halfway (Content-Length says all)
    gets: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def republish(self, key: str) -> None:
        with self.lock:
            self.revisions[key] = self.revisions.get(key, 0) + 1

    def get_count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for key in self.gets if key.startswith(prefix))


def is_s3_request(path: str, state: FlatFileState) -> bool:
    return path.startswith(f"/{state.bucket}/")


def _body(state: FlatFileState, key: str, now: dt.datetime) -> bytes | None:
    with state.lock:
        if key in state.objects:
            return state.objects[key]
        revision = state.revisions.get(key, 0)
    match = _KEY.match(key)
    if match is None:
        return None
    try:
        day = dt.date.fromisoformat(match["day"])
    except ValueError:
        return None
    if match["year"] != f"{day:%Y}" or match["month"] != f"{day:%m}" or not _is_session(day):
        return None
    if now < published_at(day):
        return None
    return day_file(match["dataset"], day, revision)


def _is_session(day: dt.date) -> bool:
    return cal.FIRST_TRADING_DAY <= day < cal.last_known_day() and cal.is_trading_day(day)


def handle(handler: BaseHTTPRequestHandler, state: FlatFileState, path: str, head: bool, today: dt.date | None) -> None:
    """Answer one path-style S3 GetObject/HeadObject as S3 does (XML errors, ETag, Content-Length)."""
    key = path.removeprefix(f"/{state.bucket}/")
    credential = _CREDENTIAL.match(handler.headers.get("Authorization", ""))
    if credential is None or credential["key_id"] != state.access_key_id or key in state.forbidden:
        return _error(handler, 403, "AccessDenied", "Access Denied", head)
    now = dt.datetime.now(cal.NEW_YORK) if today is None else dt.datetime.combine(today, dt.time(), cal.NEW_YORK)
    body = _body(state, key, now)
    if body is None:
        return _error(handler, 404, "NoSuchKey", "The specified key does not exist.", head)
    if not head:
        with state.lock:
            state.gets.append(key)
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-gzip")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')
    handler.send_header("Last-Modified", "Thu, 09 Jan 2025 16:00:00 GMT")
    handler.end_headers()
    if head:
        return None
    if key in state.interrupted:
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.close_connection = True
        return None
    handler.wfile.write(body)
    return None


def _error(handler: BaseHTTPRequestHandler, status: int, code: str, message: str, head: bool) -> None:
    payload = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    data = b"" if head else payload.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
