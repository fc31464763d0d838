"""The sandbox's reference endpoints over real HTTP: options contracts, news, dividends and splits.

The unmodified official client does the paging (it sends only the `cursor` of each absolute
`next_url`); raw urllib3 checks response bodies against the Polygon fixtures.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import polygon
import pytest
import urllib3
from polygon.exceptions import BadResponse
from polygon.rest.models import Insight, OptionsContract, Publisher, TickerNews

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import market, options
from spy_pipeline.sandbox import news as sandbox_news
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline_tests.conftest import SANDBOX_KEY, fixture_json

pytestmark = pytest.mark.integration

NEW_YORK = ZoneInfo("America/New_York")
AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}
CONTRACTS = "/v3/reference/options/contracts"
NEWS = "/v2/reference/news"
DAY = dt.date(2025, 1, 8)






def get_json(http: urllib3.PoolManager, url: str, status: int = 200) -> Any:
    response = http.request("GET", url, headers=AUTH)
    assert response.status == status, response.data[:300]
    return response.json()


def spot_before(day: dt.date) -> float:
    return market.regular_close("SPY", cal.previous_trading_day(day))


# --- options contracts: shapes and paging ---------------------------------------------------------


def test_contracts_pages_match_the_polygon_fixtures(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    page1, page2 = fixture_json("options_contracts_page1.json"), fixture_json("options_contracts_page2.json")
    query = "underlying_ticker=SPY&as_of=2025-01-08&expiration_date=2025-01-17&contract_type=call&strike_price.gte=590"
    first = get_json(http, f"{sandbox.url}{CONTRACTS}?{query}&strike_price.lte=609")
    assert set(first) == set(page1)
    assert len(first["results"]) == 10
    assert first["status"] == "OK" and first["request_id"]
    for item in first["results"]:
        assert set(item) == set(page1["results"][0])
        assert isinstance(item["strike_price"], int)
        assert (item["cfi"], item["exercise_style"], item["shares_per_contract"]) == ("OCASPS", "american", 100)
    next_url = urlsplit(first["next_url"])
    assert first["next_url"].startswith(sandbox.url + CONTRACTS + "?")
    assert list(parse_qs(next_url.query)) == ["cursor"]
    second = get_json(http, first["next_url"])
    assert set(second) == set(page2), "the last page has no next_url"
    strikes = [item["strike_price"] for item in first["results"] + second["results"]]
    assert strikes == list(range(590, 610))


def test_client_pages_through_contracts_with_filters(sandbox: SandboxServer, client: polygon.RESTClient) -> None:
    kwargs = {"underlying_ticker": "SPY", "as_of": "2025-01-08", "expiration_date_lte": "2025-01-17"}
    before = sandbox.request_count(CONTRACTS)
    paged = list(client.list_options_contracts(**kwargs, strike_price_gte=575, strike_price_lte=590, limit=40))
    pages = sandbox.request_count(CONTRACTS) - before
    single = list(client.list_options_contracts(**kwargs, strike_price_gte=575, strike_price_lte=590, limit=1000))
    assert all(isinstance(c, OptionsContract) for c in paged)
    assert len(paged) == len(single) == 7 * 16 * 2
    assert pages == math.ceil(len(single) / 40)
    assert sandbox.request_count(CONTRACTS) - before == pages + 1
    assert [c.ticker for c in paged] == [c.ticker for c in single] == sorted(c.ticker for c in single)
    # Every session from the 8th to the 17th expires; 2025-01-09 was a market closure.
    assert sorted({c.expiration_date for c in single}) == [
        "2025-01-08",
        "2025-01-10",
        "2025-01-13",
        "2025-01-14",
        "2025-01-15",
        "2025-01-16",
        "2025-01-17",
    ]
    assert all(575 <= c.strike_price <= 590 for c in single)


def test_contracts_listing_equals_the_options_module(client: polygon.RESTClient) -> None:
    listed = options.listed_contracts(DAY)
    served = list(client.list_options_contracts(underlying_ticker="SPY", as_of=DAY.isoformat(), limit=1000))
    assert [c.ticker for c in served] == listed["ticker"].to_list()
    assert 4_000 < len(served) < 15_000


def test_zero_dte_contract_exists_on_a_weekday_and_not_after_expiry(client: polygon.RESTClient) -> None:
    strike = float(round(spot_before(DAY)))
    today = list(
        client.list_options_contracts(
            underlying_ticker="SPY", as_of="2025-01-08", expiration_date="2025-01-08", strike_price=strike, limit=10
        )
    )
    assert sorted(c.contract_type for c in today) == ["call", "put"]
    assert today[0].ticker == f"O:SPY250108C{int(strike * 1000):08d}"
    next_day = dict(underlying_ticker="SPY", as_of="2025-01-10", expiration_date="2025-01-08", strike_price=strike)
    assert list(client.list_options_contracts(**next_day)) == []
    expired = list(client.list_options_contracts(**next_day, expired=True))
    assert [c.ticker for c in expired] == [c.ticker for c in today]


def test_as_of_defaults_to_the_sandbox_today(http: urllib3.PoolManager) -> None:
    with SandboxServer(api_key=SANDBOX_KEY, today=DAY) as server:
        body = get_json(http, f"{server.url}{CONTRACTS}?underlying_ticker=SPY&limit=1000&expiration_date.lt=2025-01-11")
        explicit = get_json(
            http,
            f"{server.url}{CONTRACTS}?underlying_ticker=SPY&limit=1000&as_of=2025-01-08&expiration_date.lt=2025-01-11",
        )
    assert body["results"] == explicit["results"]
    assert {item["expiration_date"] for item in body["results"]} == {"2025-01-08", "2025-01-10"}


def test_holiday_expirations_move_to_the_previous_trading_day(client: polygon.RESTClient) -> None:
    def expirations(as_of: str, start: str, end: str) -> set[str]:
        found = client.list_options_contracts(
            underlying_ticker="SPY",
            as_of=as_of,
            expiration_date_gte=start,
            expiration_date_lte=end,
            contract_type="put",
            limit=1000,
        )
        return {c.expiration_date for c in found}

    # Good Friday 2025 was the April third Friday: the monthly, listed a year ahead, expires Thursday.
    assert expirations("2024-06-03", "2025-04-01", "2025-04-30") == {"2025-04-17"}
    assert expirations("2025-04-14", "2025-04-14", "2025-04-21") == {
        "2025-04-14",
        "2025-04-15",
        "2025-04-16",
        "2025-04-17",
        "2025-04-21",
    }
    # Juneteenth 2026 falls on the June third Friday.
    assert expirations("2025-09-02", "2026-06-01", "2026-06-30") == {"2026-06-18"}


def test_contract_type_strike_and_sort_filters(client: polygon.RESTClient) -> None:
    base = {
        "underlying_ticker": "SPY",
        "as_of": "2025-01-08",
        "expiration_date_gte": "2025-01-13",
        "expiration_date_lt": "2025-01-15",
        "limit": 1000,
    }
    puts = list(client.list_options_contracts(**base, contract_type="put", strike_price=580))
    assert [(c.contract_type, c.strike_price, c.expiration_date) for c in puts] == [
        ("put", 580, "2025-01-13"),
        ("put", 580, "2025-01-14"),
    ]
    by_strike = list(
        client.list_options_contracts(
            **base, strike_price_gt=570, strike_price_lt=575, sort="strike_price", order="desc"
        )
    )
    assert [c.strike_price for c in by_strike] == [574] * 4 + [573] * 4 + [572] * 4 + [571] * 4
    by_date = list(
        client.list_options_contracts(
            **{**base, "limit": 15}, strike_price_gte=600, strike_price_lte=610, sort="expiration_date", order="desc"
        )
    )
    assert len(by_date) == 2 * 2 * 11
    assert [c.expiration_date for c in by_date] == ["2025-01-14"] * 22 + ["2025-01-13"] * 22
    assert [c.ticker for c in by_date] == sorted((c.ticker for c in by_date), reverse=True)
    assert list(client.list_options_contracts(underlying_ticker="QQQ", as_of="2025-01-08")) == []


BAD_CONTRACT_QUERIES = (
    "limit=1001",
    "limit=0",
    "limit=ten",
    "as_of=2025-13-01",
    "sort=volume",
    "order=up",
    "expired=maybe",
    "strike_price.gte=abc",
    "expiration_date.lte=soon",
    "contract_type=straddle",
    "cursor=%21%21not-a-cursor",
)


def test_bad_contract_queries_are_400(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    for query in BAD_CONTRACT_QUERIES:
        body = get_json(http, f"{sandbox.url}{CONTRACTS}?{query}", status=400)
        assert set(body) == {"status", "request_id", "error"} and body["status"] == "ERROR", query


def test_bad_query_makes_the_client_raise(client: polygon.RESTClient) -> None:
    with pytest.raises(BadResponse):
        list(client.list_options_contracts(underlying_ticker="SPY", limit=5000))


# --- news ------------------------------------------------------------------------------------------


def test_news_keys_match_the_polygon_fixture_plus_keywords_and_insights(
    sandbox: SandboxServer, http: urllib3.PoolManager
) -> None:
    expected = fixture_json("news_NFLX.json")
    body = get_json(http, f"{sandbox.url}{NEWS}?ticker=SPY&published_utc.gte=2025-01-06&limit=5")
    assert set(body) == set(expected) | {"next_url"}
    assert body["count"] == len(body["results"]) == 5
    assert list(parse_qs(urlsplit(body["next_url"]).query)) == ["cursor"]
    for article in body["results"]:
        assert set(article) == set(expected["results"][0]) | {"keywords", "insights"}
        assert set(article["publisher"]) == set(expected["results"][0]["publisher"])
        assert dt.datetime.strptime(article["published_utc"], "%Y-%m-%dT%H:%M:%SZ")
        assert len(article["id"]) == len(expected["results"][0]["id"])
        assert [i["ticker"] for i in article["insights"]] == article["tickers"]
        assert all(set(i) == {"ticker", "sentiment", "sentiment_reasoning"} for i in article["insights"])


def test_client_pages_through_news_within_bounds(sandbox: SandboxServer, client: polygon.RESTClient) -> None:
    bounds = {"ticker": "SPY", "published_utc_gte": "2025-01-06", "published_utc_lte": "2025-01-11T12:00:00Z"}
    before = sandbox.request_count(NEWS)
    paged = list(client.list_ticker_news(**bounds, limit=9))
    pages = sandbox.request_count(NEWS) - before
    single = list(client.list_ticker_news(**bounds, limit=1000))
    assert [a.id for a in paged] == [a.id for a in single]
    assert len(single) > 5 * 10
    assert pages == math.ceil(len(single) / 9)
    stamps = [a.published_utc for a in single]
    assert stamps == sorted(stamps, reverse=True), "newest first by default"
    assert stamps[-1] >= "2025-01-06T00:00:00Z" and stamps[0] <= "2025-01-11T12:00:00Z"
    for article in single:
        assert isinstance(article, TickerNews) and isinstance(article.publisher, Publisher)
        assert "SPY" in article.tickers
        assert article.insights and all(isinstance(i, Insight) for i in article.insights)
        assert {i.sentiment for i in article.insights} <= {"positive", "neutral", "negative"}
        assert len(article.insights) == len(article.tickers)
    ascending = list(client.list_ticker_news(**bounds, order="asc", limit=25))
    assert [a.id for a in ascending] == [a.id for a in single][::-1]


def test_news_volume_and_timing_look_like_a_newswire() -> None:
    per_day: Counter[dt.date] = Counter()
    hours: Counter[str] = Counter()
    start = dt.date(2024, 3, 1)
    for offset in range(120):
        day = start + dt.timedelta(days=offset)
        for article in sandbox_news.articles_on(day):
            published = dt.datetime.fromtimestamp(article.published, NEW_YORK)
            assert published.date() == day
            if "SPY" in article.tickers:
                per_day[day] += 1
            if not cal.is_trading_day(day):
                hours["closed day"] += 1
            elif dt.time(9, 30) <= published.time() < dt.time(16, 0):
                hours["market"] += 1
            else:
                hours["outside"] += 1
    trading = [n for d, n in per_day.items() if cal.is_trading_day(d)]
    assert min(trading) >= 10 and max(trading) <= 40
    per_hour_in_market, per_hour_outside = hours["market"] / 6.5, hours["outside"] / 17.5
    assert per_hour_in_market > 2.5 * per_hour_outside > 0
    assert hours["closed day"] > 0
    assert sandbox_news.articles_on(start) == sandbox_news.articles_on(start)
    other_day = sandbox_news.articles_on(dt.date(2024, 3, 4))
    assert [a.id for a in sandbox_news.articles_on(start)] != [a.id for a in other_day]


def test_news_sentiment_follows_the_spy_move() -> None:
    tally: dict[str, Counter[str]] = {"up": Counter(), "down": Counter()}
    for day in cal.trading_days("2023-01-03", "2023-12-29"):
        move = market.regular_close("SPY", day) / spot_before(day) - 1
        if abs(move) < 0.005:
            continue
        for article in sandbox_news.articles_on(day):
            for insight in article.body["insights"]:
                if insight["ticker"] == "SPY":
                    tally["up" if move > 0 else "down"][insight["sentiment"]] += 1
    assert tally["up"]["positive"] > 2 * tally["up"]["negative"]
    assert tally["down"]["negative"] > 2 * tally["down"]["positive"]
    assert tally["up"]["neutral"] > 0 and tally["down"]["neutral"] > 0 and tally["up"]["negative"] > 0


def test_news_stops_at_today_and_ignores_unknown_tickers(http: urllib3.PoolManager) -> None:
    with SandboxServer(api_key=SANDBOX_KEY, today=DAY) as server:
        latest = get_json(http, f"{server.url}{NEWS}?ticker=SPY&limit=1")["results"][0]
        unknown = get_json(http, f"{server.url}{NEWS}?ticker=ZZZZ&limit=1000")
    assert dt.datetime.strptime(latest["published_utc"], "%Y-%m-%dT%H:%M:%SZ").date() <= DAY + dt.timedelta(days=1)
    assert unknown["results"] == [] and "next_url" not in unknown


# --- dividends and splits -------------------------------------------------------------------------


def test_spy_pays_quarterly_around_third_fridays(sandbox: SandboxServer, client: polygon.RESTClient) -> None:
    paid = list(
        client.list_dividends(
            ticker="SPY", ex_dividend_date_gte="2022-01-01", ex_dividend_date_lte="2024-12-31", limit=5
        )
    )
    assert len(paid) == 12
    assert [d.ex_dividend_date for d in paid] == sorted((d.ex_dividend_date for d in paid), reverse=True)
    for dividend in paid:
        ex = dt.date.fromisoformat(dividend.ex_dividend_date)
        assert ex.month in (3, 6, 9, 12) and 14 <= ex.day <= 21 and cal.is_trading_day(ex)
        assert (dividend.ticker, dividend.frequency, dividend.dividend_type) == ("SPY", 4, "CD")
        assert dividend.declaration_date < dividend.ex_dividend_date <= dividend.record_date < dividend.pay_date
        assert dividend.cash_amount == pytest.approx(market.regular_close("SPY", ex) * 0.013 / 4, rel=0.15)
    (exact,) = client.list_dividends(ticker="SPY", ex_dividend_date="2024-06-21")
    assert exact.ex_dividend_date == "2024-06-21" and exact.cash_amount > 0


def test_dividends_and_splits_match_the_polygon_fixtures(sandbox: SandboxServer, http: urllib3.PoolManager) -> None:
    for name, path in (("dividends.json", "/v3/reference/dividends"), ("splits.json", "/v3/reference/splits")):
        expected = fixture_json(name)
        body = get_json(http, f"{sandbox.url}{path}?limit=1000")
        assert set(body) == set(expected)
        assert body["results"]
        # the fixtures (the client's 2022 mocks) predate `id`, which Polygon's spec now requires on both
        assert all(set(item) == set(expected["results"][0]) | {"id"} for item in body["results"])
        assert len({item["id"] for item in body["results"]}) == len(body["results"])
    dividends = get_json(http, f"{sandbox.url}/v3/reference/dividends?limit=1000")["results"]
    assert {d["ticker"] for d in dividends} == {"SPY", "QQQ", "IWM"}


def test_no_dividend_is_declared_after_today(http: urllib3.PoolManager) -> None:
    with SandboxServer(api_key=SANDBOX_KEY, today=DAY) as server:
        body = get_json(http, f"{server.url}/v3/reference/dividends?ticker=SPY&limit=1")
    assert body["results"][0]["ex_dividend_date"] == "2024-12-20"
    assert body["results"][0]["declaration_date"] <= DAY.isoformat()


def test_spy_qqq_and_iwm_have_no_splits(
    sandbox: SandboxServer, http: urllib3.PoolManager, client: polygon.RESTClient
) -> None:
    for ticker in ("SPY", "QQQ", "IWM"):
        assert list(client.list_splits(ticker=ticker)) == []
    body = get_json(http, f"{sandbox.url}/v3/reference/splits?ticker=SPY")
    assert body["results"] == [] and body["status"] == "OK" and "next_url" not in body
    every = list(client.list_splits(execution_date_gte="2015-01-01", limit=1))
    assert len(every) >= 2 and all(s.split_from != s.split_to for s in every)
    reverse = list(client.list_splits(reverse_split=True))
    assert reverse and all(s.split_from > s.split_to for s in reverse)
