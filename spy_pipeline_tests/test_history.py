"""The previous trading day a day depends on: from the lake, else from Polygon (never written), else null.

The defects these reproduce: a range launched from the UI or by automation (no separate warm-up run)
started its first day's indicators cold and its news look-back at the partition's own news.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from spy_pipeline.domain import indicators as ind
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import MINUTE_BARS
from spy_pipeline.io import lake, storage
from spy_pipeline.io.bars import minute_bars_by_day
from spy_pipeline.io.corporate_actions import dividends_frame
from spy_pipeline.io.news import news_frame, news_window
from spy_pipeline.sandbox import catalog
from spy_pipeline.sandbox import news as sandbox_news

DAY = dt.date(2025, 1, 8)  # a Wednesday: the 24 h look-back of its first minutes reaches into 2025-01-07's news
PREVIOUS = cal.previous_trading_day(DAY)


def _bars(day: dt.date) -> pl.DataFrame:
    return minute_bars_by_day("SPY", catalog.minute_bars("SPY", day), [day])[0].frame


def _news(day: dt.date) -> pl.DataFrame:
    """The sandbox's SPY news of a trading day's window, built without the pipeline's readers."""
    start, end = news_window(day)
    days = [start.date() + dt.timedelta(days=n) for n in range((end.date() - start.date()).days + 1)]
    frame = news_frame([a.body for d in days for a in sandbox_news.articles_on(d)], ["SPY"])
    return frame.filter(pl.col("published_utc").is_between(start, end, closed="left"))


class FakeHistory:
    """A HistorySource that records what it was asked and answers from the sandbox (or nothing)."""

    def __init__(self, *, has_bars: bool = True) -> None:
        self.asked: list[tuple[str, dt.date]] = []
        self.has_bars = has_bars

    def spy_bars(self, day: dt.date) -> pl.DataFrame:
        self.asked.append(("spy", day))
        return _bars(day) if self.has_bars else _bars(day).clear()

    def news(self, day: dt.date) -> pl.DataFrame:
        self.asked.append(("news", day))
        return _news(day)


@pytest.fixture
def root(tmp_path: Path) -> storage.DataRoot:
    root = storage.as_data_root(tmp_path / "data")
    root.write_parquet(dividends_frame([]), f"{root.dataset_path('raw', 'corporate_actions')}/dividends.parquet")
    return root


def _inputs(root: storage.DataRoot, day: dt.date, history: FakeHistory | None):
    empty = _bars(day).clear()
    return lake.day_inputs(root, day, 0.045, spy=_bars(day), vix=empty, option_bars=empty,
                           contracts=pl.DataFrame(), news=_news(day), history=history)


def test_the_previous_day_comes_from_the_lake_when_materialized(root) -> None:
    root.write_parquet(_bars(PREVIOUS), root.partition_path(PREVIOUS, *lake.FOLDERS["spy"]))
    root.write_parquet(_news(PREVIOUS), root.partition_path(PREVIOUS, *lake.FOLDERS["news"]))
    history = FakeHistory()
    inputs = _inputs(root, DAY, history)
    assert history.asked == []
    assert inputs.spy_previous.equals(_bars(PREVIOUS))
    assert inputs.history == {"spy": f"lake ({PREVIOUS})", "news": f"lake ({PREVIOUS})"}
    assert inputs.news_since == news_window(PREVIOUS)[0]


def test_else_from_polygon_for_the_computation_only_never_written(root) -> None:
    history = FakeHistory()
    inputs = _inputs(root, DAY, history)
    assert history.asked == [("spy", PREVIOUS), ("news", PREVIOUS)]
    assert inputs.spy_previous.equals(MINUTE_BARS.conform(_bars(PREVIOUS)))
    assert inputs.news.height == _news(PREVIOUS).height + _news(DAY).height > 0
    assert inputs.news_since == news_window(PREVIOUS)[0]
    assert all(source.startswith(f"Polygon ({PREVIOUS}") for source in inputs.history.values())
    for dataset in ("spy", "news"):  # not a partition Dagster materialized: not in the lake
        assert not root.exists(root.partition_path(PREVIOUS, *lake.FOLDERS[dataset]))


def test_where_history_cannot_be_had_it_is_missing_and_says_why(root) -> None:
    inputs = _inputs(root, DAY, FakeHistory(has_bars=False))
    assert inputs.spy_previous is None and inputs.history["spy"] == f"none: Polygon has no spy data for {PREVIOUS}"
    without = _inputs(root, DAY, None)  # e.g. the streaming path, which does not fetch
    assert without.spy_previous is None and without.history["spy"] == f"none: {PREVIOUS} is not in the lake"
    assert without.news_since == news_window(DAY)[0] and without.news.equals(_news(DAY))

    first = cal.FIRST_TRADING_DAY
    history = FakeHistory()
    inputs = _inputs(root, first, history)
    assert history.asked == [] and inputs.spy_previous is None
    assert inputs.history["spy"] == f"none: {first} is the first trading day of the calendar"


def test_a_monday_needs_no_news_of_the_friday(root) -> None:
    monday = dt.date(2025, 1, 13)
    history = FakeHistory()
    inputs = _inputs(root, monday, history)
    assert history.asked == [("spy", cal.previous_trading_day(monday))]  # Friday 20:00 ET is > 24 h back
    assert inputs.history["news"].startswith("not needed")


# ---- through Dagster: a range launched without any warm-up run ------------------------------

@pytest.fixture(scope="module")
def range_run(tmp_path_factory: pytest.TempPathFactory):
    """DAY materialized as a range is from the UI or by automation: nothing of PREVIOUS in the lake."""
    from spy_pipeline.definitions import DAILY_ASSETS, defs
    from spy_pipeline.defs.raw.reference_assets import corporate_actions

    data_dir = tmp_path_factory.mktemp("lake") / "data"
    with pytest.MonkeyPatch.context() as patch, DagsterInstance.ephemeral() as instance:
        patch.setenv("SPY_PIPELINE_DATA_DIR", str(data_dir))
        for name in ("POLYGON_API_KEY", "POLYGON_BASE_URL", "SPY_PIPELINE_EQUITY_TICKERS"):
            patch.delenv(name, raising=False)
        assert materialize([corporate_actions], resources=defs.resources, instance=instance).success
        tags = {ASSET_PARTITION_RANGE_START_TAG: DAY.isoformat(), ASSET_PARTITION_RANGE_END_TAG: DAY.isoformat()}
        result = materialize(DAILY_ASSETS, resources=defs.resources, instance=instance, tags=tags)
        yield data_dir, result


def test_the_first_day_of_a_range_has_the_warm_up_of_any_other_day(range_run) -> None:
    data_dir, result = range_run
    assert result.success
    frame = pl.read_parquet(data_dir / "processed" / "consolidated" / f"{DAY}.parquet")
    expected = ind.day_indicators(_bars(PREVIOUS), _bars(DAY), DAY)  # independent: the sandbox's bars
    joined = frame.join(expected, on="timestamp", suffix="_expected")
    assert joined.height == frame.height > 1000
    for name in ind.INDICATOR_COLUMNS:
        assert frame[name].null_count() == 0 and not frame[name].is_nan().any(), name
        assert (joined[name] - joined[f"{name}_expected"]).abs().max() < 1e-9, name
    # The history was read for the computation and not landed: no partition Dagster does not know about.
    assert not (data_dir / "raw" / "spy" / f"{PREVIOUS}.parquet").exists()
    assert not (data_dir / "raw" / "news" / f"{PREVIOUS}.parquet").exists()
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "consolidated"]
    meta = event.step_materialization_data.materialization.metadata
    assert f"Polygon ({PREVIOUS}" in meta["previous_day_sources"].value
    assert meta["rows_missing_indicator_history"].value == 0 and meta["rows_missing_news_history"].value == 0
    [written] = meta["written_files"].value
    assert written["rows_missing_history"] == {"indicators": 0, "news_sentiment": 0}


def test_the_first_day_of_a_range_looks_back_24_hours_into_the_previous_days_news(range_run) -> None:
    data_dir, _ = range_run
    frame = pl.read_parquet(data_dir / "processed" / "consolidated" / f"{DAY}.parquet")
    scored = pl.concat([_news(PREVIOUS), _news(DAY)]).filter(pl.col("sentiment").is_not_null())
    articles = sorted(zip(scored["published_utc"].to_list(), scored["sentiment"].to_list(), strict=True))
    minutes = frame.select("timestamp", "news_sentiment").unique().sort("timestamp")
    for minute, got in minutes.iter_rows():
        end = minute + dt.timedelta(minutes=1)
        known = [s for published, s in articles if end - dt.timedelta(hours=24) <= published < end]
        assert got == (float(known[-1]) if known else None), minute
    open_ = cal.session_bounds(DAY).open
    first_hour = minutes.filter(pl.col("timestamp") < open_ + dt.timedelta(hours=1))
    assert first_hour["news_sentiment"].null_count() == 0  # the defect: null although yesterday had articles
    raw_news = pl.read_parquet(data_dir / "raw" / "news" / f"{DAY}.parquet")
    assert raw_news["published_utc"].min() >= news_window(DAY)[0]  # the day's own file alone could not do it

