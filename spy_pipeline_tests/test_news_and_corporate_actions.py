"""News windows and sentiment, dividends and splits: pure logic, with Polygon's fixtures as input."""

import datetime as dt
import itertools
import json

import polars as pl
import pytest

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import DIVIDENDS, NEWS, SPLITS
from spy_pipeline.io.corporate_actions import dividends_frame, splits_frame, trailing_dividend_yield
from spy_pipeline.io.news import news_frame, news_window
from spy_pipeline_tests.conftest import FIXTURES_DIR


def test_news_windows_tile_time_without_gaps_or_overlaps() -> None:
    days = cal.trading_days("2024-11-20", "2025-01-15")  # Thanksgiving, Christmas, New Year, 2025-01-09
    for previous, day in itertools.pairwise(days):
        assert news_window(previous)[1] == news_window(day)[0]
    monday = news_window("2025-01-13")
    assert monday[0] == dt.datetime(2025, 1, 11, 1, 0, tzinfo=dt.UTC)  # Friday 20:00 ET: weekend news is Monday's
    assert monday[1] == dt.datetime(2025, 1, 14, 1, 0, tzinfo=dt.UTC)
    early = news_window("2024-11-29")
    assert early[1] == dt.datetime(2024, 11, 29, 22, 0, tzinfo=dt.UTC)  # after-hours end 17:00 ET on an early close


def _article(article_id: str, published: str, insights: list[dict]) -> dict:
    return {"id": article_id, "published_utc": published, "title": f"t{article_id}", "publisher": {"name": "P"},
            "tickers": [i["ticker"] for i in insights], "keywords": ["k"], "insights": insights}


def test_sentiment_is_mapped_for_the_first_configured_ticker_with_an_insight() -> None:
    articles = [
        _article("a", "2025-01-08T15:00:00Z", [{"ticker": "AAPL", "sentiment": "negative"},
                                               {"ticker": "SPY", "sentiment": "positive", "sentiment_reasoning": "r"}]),
        _article("b", "2025-01-08T14:00:00Z", [{"ticker": "QQQ", "sentiment": "negative"}]),
        _article("c", "2025-01-08T16:00:00Z", [{"ticker": "SPY", "sentiment": "neutral"}]),
        _article("d", "2025-01-08T17:00:00Z", [{"ticker": "AAPL", "sentiment": "positive"}]),
    ]
    frame = news_frame(articles, ["SPY", "QQQ"])
    assert frame["article_id"].to_list() == ["b", "a", "c", "d"]  # by publication time
    assert frame["sentiment"].to_list() == [-1, 1, 0, None]
    assert frame["sentiment_ticker"].to_list() == ["QQQ", "SPY", "SPY", None]
    assert frame["sentiment_reasoning"][1] == "r"
    assert frame.schema == NEWS.polars_schema


def test_an_article_fetched_for_two_tickers_appears_once() -> None:
    article = _article("x", "2025-01-08T15:00:00Z", [{"ticker": "SPY", "sentiment": "positive"},
                                                     {"ticker": "QQQ", "sentiment": "negative"}])
    frame = news_frame([article, article], ["SPY", "QQQ"])
    assert frame.height == 1 and frame["sentiment"][0] == 1


def test_polygon_news_fixture_without_insights_parses() -> None:
    articles = json.loads((FIXTURES_DIR / "news_NFLX.json").read_text())["results"]
    frame = news_frame(articles, ["NFLX"])
    assert frame.height == len(articles) and frame["sentiment"].null_count() == frame.height
    assert frame["published_utc"].dtype == pl.Datetime("us", "UTC")
    assert frame["publisher"].null_count() == 0 and frame["tickers"].list.len().min() >= 1


def test_no_articles_give_an_empty_frame_with_the_schema() -> None:
    assert news_frame([], ["SPY"]).schema == NEWS.polars_schema


def test_polygon_dividend_and_split_fixtures_parse() -> None:
    dividends = dividends_frame(json.loads((FIXTURES_DIR / "dividends.json").read_text())["results"])
    splits = splits_frame(json.loads((FIXTURES_DIR / "splits.json").read_text())["results"])
    assert dividends.schema == DIVIDENDS.polars_schema and dividends.height > 0
    assert splits.schema == SPLITS.polars_schema and splits.height > 0
    assert dividends.equals(dividends.sort("ticker", "ex_dividend_date")) and (dividends["cash_amount"] > 0).all()


def test_trailing_dividend_yield_sums_the_last_365_days() -> None:
    dividends = dividends_frame([
        {"ticker": "SPY", "ex_dividend_date": d, "cash_amount": 1.75, "dividend_type": "CD", "frequency": 4}
        for d in ["2023-12-15", "2024-03-15", "2024-06-21", "2024-09-20", "2024-12-20"]
    ])
    assert trailing_dividend_yield(dividends, "SPY", dt.date(2024, 12, 20), 600.0) == pytest.approx(4 * 1.75 / 600)
    # 2024-12-13 still counts 2023-12-15 (within 365 days); 2024-12-14 no longer does, nor 2024-12-20 yet
    assert trailing_dividend_yield(dividends, "SPY", dt.date(2024, 12, 13), 600.0) == pytest.approx(4 * 1.75 / 600)
    assert trailing_dividend_yield(dividends, "SPY", dt.date(2024, 12, 14), 600.0) == pytest.approx(3 * 1.75 / 600)
    assert trailing_dividend_yield(dividends, "SPY", dt.date(2024, 12, 19), 600.0) == pytest.approx(3 * 1.75 / 600)
    assert trailing_dividend_yield(dividends, "QQQ", dt.date(2024, 12, 20), 500.0) == 0.0
    with pytest.raises(ValueError, match="price must be positive"):
        trailing_dividend_yield(dividends, "SPY", dt.date(2024, 12, 20), 0.0)
