"""`spy-pipeline simulate --from-lake`: a day recorded in the data dir replayed through the sandbox WebSocket and the
real streaming session, with a real-looking POLYGON_API_KEY set and Polygon's addresses pointed at a decoy that
must see no request. The recorded bars are altered first, so what streams can only have come from the lake."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, materialize
from polars.testing import assert_frame_equal

from spy_pipeline.domain.schemas import MINUTE_BARS, NEWS
from spy_pipeline.io import lake
from spy_pipeline.io.bars import minute_bars_by_day
from spy_pipeline.io.lake_replay import RecordedDay
from spy_pipeline.io.news import news_frame, news_window
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.sandbox import catalog
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline.streaming.compact import compact_day
from spy_pipeline.streaming.intraday import compacted_path
from spy_pipeline_tests.conftest import sandbox_lake

DAY = dt.date(2025, 1, 8)
BAR_VALUES = ["open", "high", "low", "close", "volume", "vwap"]
PRICES = ["open", "high", "low", "close", "vwap"]


def _alter(frame: pl.DataFrame, scale: float) -> pl.DataFrame:
    """Other prices (a positive scale keeps high >= open, close >= low) and other volumes than the sandbox's."""
    altered = frame.with_columns([(pl.col(c) * scale).round(2) for c in PRICES])
    return altered.with_columns(pl.col("volume") + 7) if frame["volume"].null_count() < frame.height else altered


@pytest.fixture(scope="module")
def recorded_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """DAY's raw partitions as `make run` writes them (the embedded sandbox, default source), then altered."""
    from spy_pipeline.definitions import RAW_DAILY_ASSETS, defs

    with sandbox_lake(tmp_path_factory, DAY) as (data_dir, instance), pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPY_PIPELINE_DATA_DIR", str(data_dir))
        assert materialize(RAW_DAILY_ASSETS, resources=defs.resources, instance=instance,
                           partition_key=DAY.isoformat()).success
    root = DataRoot.from_location(data_dir)
    for dataset, scale in (("spy", 1.013), ("vix", 1.21), ("options", 1.37)):
        path = lake.day_file(root, dataset, DAY)
        root.write_parquet(_alter(lake.read_day(root, dataset, DAY, MINUTE_BARS), scale), str(path))
    yield data_dir


@pytest.fixture
def decoy() -> Iterator[SandboxServer]:
    """Where Polygon's REST and Flat Files addresses point: a replay must send it nothing."""
    with SandboxServer(api_key="pk_live_looking_key_0123456789", s3_access_key_id="AKIALOOKSREAL0123") as server:
        yield server


def _simulate(data_dir: Path, home: Path, decoy: SandboxServer, *args: str) -> subprocess.CompletedProcess[str]:
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "SPY_PIPELINE_", "DAGSTER_HOME"))}
    env.update({
        "DAGSTER_HOME": str(home), "SPY_PIPELINE_DATA_DIR": str(data_dir),
        "POLYGON_API_KEY": "pk_live_looking_key_0123456789", "POLYGON_BASE_URL": decoy.url,
        "POLYGON_S3_ACCESS_KEY_ID": "AKIALOOKSREAL0123", "POLYGON_S3_SECRET_ACCESS_KEY": "s3-secret-looking-real",
        "POLYGON_FLATFILES_ENDPOINT": decoy.url,
    })
    return subprocess.run([sys.executable, "-m", "spy_pipeline.app.cli", "simulate", "--date", str(DAY), *args],
                          cwd=home.parent, env=env, capture_output=True, text=True, timeout=420)


@pytest.mark.integration
def test_a_recorded_day_replays_from_the_lake_without_calling_polygon(
    recorded_lake: Path, decoy: SandboxServer, tmp_path: Path
) -> None:
    root = DataRoot.from_location(recorded_lake)
    recorded = {name: lake.read_day(root, name, DAY, MINUTE_BARS) for name in ("spy", "vix", "options")}
    assert recorded["options"]["vwap"].null_count() > 0  # Flat Files carry no vwap: streamed without one too

    done = _simulate(recorded_lake, tmp_path / "home", decoy, "--from-lake", "--speed", "600", "--start-at", "15:30")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"the day recorded in {recorded_lake}" in done.stdout and "from the data dir at 600x" in done.stdout
    assert "reconciled with the recording" in done.stdout and "intraday_consolidated:" in done.stdout
    assert decoy.request_count() == 0  # neither REST nor Flat Files was asked anything
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert sorted(run.job_name for run in instance.get_runs()) == ["intraday_refresh", "stream_session"]
        [run] = [r for r in instance.get_runs() if r.job_name == "stream_session"]
        outputs = [e for e in instance.all_logs(run.run_id) if e.dagster_event
                   and e.dagster_event.event_type_value == "STEP_OUTPUT"
                   and e.dagster_event.step_key == "stream_market_session"]
        metadata = {k: v.value for k, v in outputs[0].dagster_event.event_specific_data.metadata.items()}
    assert metadata["feed"].startswith("127.0.0.1:") and metadata["source"] == "the data dir"
    assert metadata["ended"] == "session_close" and metadata["invalid"] == 0

    for source in ("spy", "vix", "options"):
        streamed = compact_day(root, source, DAY)  # the micro-batches: WebSocket bars and gap fills
        assert streamed.height > 0, source
        joined = streamed.join(recorded[source], on=["ticker", "timestamp"], how="left", suffix="_lake")
        for column in BAR_VALUES:  # the lake's values, nulls included (no vwap in, none out)
            assert joined[column].equals(joined[f"{column}_lake"], check_names=False), (source, column)
        # and the compacted day equals the recording of the streamed tickers, as it equals REST's on a live day
        compacted = root.read_partition(compacted_path(root, source, DAY), MINUTE_BARS)
        expected = recorded[source].filter(pl.col("ticker").is_in(streamed["ticker"].unique().to_list()))
        assert_frame_equal(compacted, expected.sort("ticker", "timestamp"))

    # the streamed SPY bars are not the sandbox's own: the alteration is what streamed
    spy = compact_day(root, "spy", DAY)
    synthetic = minute_bars_by_day("SPY", catalog.minute_bars("SPY", DAY), [DAY])[0].frame
    both = spy.join(synthetic, on=["ticker", "timestamp"], suffix="_sandbox")
    assert both.height == spy.height and (both["close"] != both["close_sandbox"]).all()
    assert (recorded_lake / "intraday" / "consolidated" / f"{DAY}.parquet").exists()


def test_a_day_with_missing_raw_partitions_is_refused_in_one_line(
    recorded_lake: Path, decoy: SandboxServer, tmp_path: Path
) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(recorded_lake / "raw", partial / "raw")
    (partial / "raw" / "vix" / f"{DAY}.parquet").unlink()
    (partial / "raw" / "news" / f"{DAY}.parquet").unlink()
    done = _simulate(partial, tmp_path / "home", decoy, "--from-lake")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line == (
        f"spy-pipeline: --from-lake: {DAY} is not in the data dir: missing VIX ({partial}/raw/vix/{DAY}.parquet), "
        f"news ({partial}/raw/news/{DAY}.parquet); backfill it first (spy-pipeline run --end {DAY} --days 1)"
    )
    assert decoy.request_count() == 0
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert instance.get_runs() == []  # refused before any run


def test_the_recorded_news_read_back_as_the_recorded_rows(recorded_lake: Path) -> None:
    root = DataRoot.from_location(recorded_lake)
    since, until = news_window(DAY)
    articles = RecordedDay(root, DAY).news("SPY", since, until)
    recorded = lake.read_day(root, "news", DAY, NEWS)
    assert len(articles) > 0
    # io.news.news_frame is how a session lands what a news poll returned: the same rows come back
    assert_frame_equal(news_frame(articles, ["SPY"]),
                       recorded.filter(pl.col("tickers").list.contains("SPY")).sort("published_utc", "article_id"))


def test_a_recorded_minute_without_vwap_or_trades_streams_without_them() -> None:
    """Flat Files bars have no vwap: the events leave vw, a and z out instead of inventing them, and the A events
    still add up to the recorded minute (o, h, l, c, v)."""
    import json

    from spy_pipeline.domain import trading_calendar as cal
    from spy_pipeline.sandbox.replay_clock import epoch_ms
    from spy_pipeline.sandbox.stream_series import build_series

    open_ms = epoch_ms(cal.session_bounds(DAY).open)
    minute = pl.DataFrame({"t": [open_ms], "o": [2.0], "h": [2.6], "l": [1.9], "c": [2.4], "v": [37.0],
                           "vw": [None], "n": [None]}, schema={"t": pl.Int64, "o": pl.Float64, "h": pl.Float64,
                                                               "l": pl.Float64, "c": pl.Float64, "v": pl.Float64,
                                                               "vw": pl.Float64, "n": pl.Int64})
    series = build_series("O:SPY250108C00590000", DAY, open_ms - 60_000, open_ms + 120_000,
                          bars=lambda _symbol, _day: minute)
    events = [json.loads(text) for e in sorted(series.at) for text in series.at[e].values()]
    quarters = [event for event in events if event["ev"] == "A"]
    [am] = [event for event in events if event["ev"] == "AM"]
    assert {"vw", "a", "z"}.isdisjoint(am) and all({"vw", "a", "z"}.isdisjoint(q) for q in quarters)
    assert (am["o"], am["h"], am["l"], am["c"], am["v"]) == (2.0, 2.6, 1.9, 2.4, 37)
    assert len(quarters) == 4 and sum(q["v"] for q in quarters) == 37
    assert (quarters[0]["o"], max(q["h"] for q in quarters), min(q["l"] for q in quarters), quarters[-1]["c"]) == (
        2.0, 2.6, 1.9, 2.4)
