"""The streaming session as Dagster runs it: the stream_session job end to end on a replayed day, its
compaction against a REST backfill, the intraday consolidation against the daily one, and termination."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, DagsterRunStatus, materialize
from polars.testing import assert_frame_equal

from spy_pipeline.domain.schemas import CONSOLIDATED, MINUTE_BARS
from spy_pipeline.io import lake
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.streaming.batches import SOURCES, batch_files
from spy_pipeline.streaming.intraday import compacted_path
from spy_pipeline.streaming.news_poll import landed_news
from spy_pipeline.streaming.session import read_heartbeat
from spy_pipeline_tests.conftest import sandbox_lake
from spy_pipeline_tests.test_datasets import assert_lake_matches_registry

DAY = dt.date(2025, 1, 8)
RISK_FREE_RATE = 0.0375  # SPY_PIPELINE_RISK_FREE_RATE of the streamed day's runs: not the default 0.045
REPO = Path(__file__).resolve().parents[1]


def session_run_config(**overrides: object) -> dict:
    config = {"date": DAY.isoformat(), "speed": 600, "start_at": "15:00", "flush_seconds": 0.3,
              "heartbeat_seconds": 0.3, **overrides}
    return {"ops": {"stream_market_session": {"config": config}}}


@pytest.fixture(scope="module")
def streamed_day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, DagsterInstance, dict]]:
    """A replayed session of DAY from 15:30 at 120x (15 s of wall time: at 600x a starved process - parallel test
    workers on 2 cores - spent most of the replay reconnecting, so the stream carried almost nothing and REST filled
    it in) whose connections drop every 6 data frames, then intraday_refresh and the daily REST backfill of DAY
    (raw assets and consolidated) in the same data dir."""
    from spy_pipeline.definitions import RAW_DAILY_ASSETS, defs
    from spy_pipeline.defs.processed.assets import consolidated

    with sandbox_lake(tmp_path_factory, DAY) as (data_dir, instance), pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPY_PIPELINE_DATA_DIR", str(data_dir))
        # the stream and its compaction are compared with REST's day (flat files carry no vwap)
        patch.setenv("SPY_PIPELINE_SOURCE", "rest")
        patch.setenv("SPY_PIPELINE_RISK_FREE_RATE", str(RISK_FREE_RATE))
        stream = defs.resolve_job_def("stream_session").execute_in_process(  # connections dropped on purpose
            run_config=session_run_config(drop_every=6, speed=120, start_at="15:30"), instance=instance)
        outputs = {e.step_key: {k: v.value for k, v in (e.event_specific_data.metadata or {}).items()}
                   for e in stream.all_events if e.event_type_value == "STEP_OUTPUT"}
        intraday = defs.resolve_job_def("intraday_refresh").execute_in_process(
            partition_key=DAY.isoformat(), instance=instance)
        assert intraday.success
        daily = materialize([*RAW_DAILY_ASSETS, consolidated], resources=defs.resources, instance=instance,
                            partition_key=DAY.isoformat())
        assert daily.success
        yield data_dir, instance, outputs


@pytest.mark.integration
def test_session_lands_heartbeats_news_and_ends_at_the_close(streamed_day) -> None:
    data_dir, _, outputs = streamed_day
    session = outputs["stream_market_session"]
    assert session["ended"] == "session_close" and session["simulated"] is True
    assert session["invalid"] == 0 and session["messages"] > 500
    assert session["gaps_filled_from_rest"] > 3  # the start (one per market) and the drops
    root = DataRoot.from_location(data_dir)
    beat = read_heartbeat(root, DAY)
    assert beat is not None and beat["state"] == "closed" and beat["buffered"] == 0
    for source in SOURCES:  # every micro-batch reads with the declared schema, no key twice within a file
        for path in batch_files(root, source, DAY):
            frame = root.read_partition(path, MINUTE_BARS)
            assert frame.select("ticker", "timestamp").is_duplicated().sum() == 0
    news = landed_news(root, DAY)
    daily_news = lake.read_day(root, "news", DAY, lake.NEWS)
    late = outputs["compact_stream_day"]["late_news_articles"]
    # polled during the session, plus the compaction's last poll = the daily partition's articles, each once
    assert news["article_id"].is_unique().all() and news.height == session["news_articles"] + late
    assert session["news_articles"] > 0
    assert sorted(news["article_id"].to_list()) == sorted(daily_news["article_id"].to_list())


@pytest.mark.integration
def test_compaction_equals_the_rest_backfill_of_the_day(streamed_day) -> None:
    data_dir, _, outputs = streamed_day
    root = DataRoot.from_location(data_dir)
    for source, dataset in (("spy", "spy"), ("vix", "vix")):
        compacted = root.read_partition(compacted_path(root, source, DAY), MINUTE_BARS)
        backfilled = lake.read_day(root, dataset, DAY, MINUTE_BARS)
        assert_frame_equal(compacted, backfilled)
    table = outputs["compact_stream_day"]["reconciliation"]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[3:8]] for line in table.splitlines()[2:]}
    # the session landed every regular-session row from the pre-market on (REST fill + stream) ...
    spy_regular = lake.read_day(root, "spy", DAY, MINUTE_BARS).filter(pl.col("timestamp") < dt.datetime(
        2025, 1, 8, 21, 0, tzinfo=dt.UTC))
    assert int(rows["spy"][1]) == spy_regular.height
    assert rows["spy"][3] == rows["vix"][3] == rows["options"][3] == "0"  # ... and REST revised nothing
    assert rows["options"][0] == rows["options"][1]  # options stop trading at the close: all landed


@pytest.mark.integration
def test_intraday_consolidation_equals_the_daily_one_on_common_contracts(streamed_day) -> None:
    data_dir, _, _ = streamed_day
    root = DataRoot.from_location(data_dir)
    intraday = lake.read_day(root, "intraday_consolidated", DAY, CONSOLIDATED)
    daily = lake.read_day(root, "consolidated", DAY, CONSOLIDATED)
    # both priced their greeks with the setting (neither run config sets a rate)
    assert intraday["risk_free_rate"].unique().to_list() == daily["risk_free_rate"].unique().to_list() == [
        RISK_FREE_RATE]
    common = set(intraday["ticker"]) & set(daily["ticker"])
    assert len(common) >= 20  # contracts chosen around the previous close vs the open: mostly the same
    key = ["ticker", "timestamp"]
    # AM events carry no trade count: streamed rows have none, everything else must agree
    counts = [c for c in CONSOLIDATED.polars_schema if "transactions" in c]
    left = intraday.filter(pl.col("ticker").is_in(common)).sort(key)
    right = daily.filter(pl.col("ticker").is_in(common)).sort(key)
    assert left[counts].null_count().sum_horizontal().item() > 0
    assert_frame_equal(left.drop(counts), right.drop(counts), check_exact=False, rel_tol=1e-9, abs_tol=1e-12)


@pytest.mark.integration
def test_terminated_run_flushes_and_leaves_only_complete_files(tmp_path: Path, isolated_env: Path) -> None:
    """The signal Dagster's run termination sends to the run's process (SIGINT) mid-session."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    config = tmp_path / "run.yaml"
    config.write_text(
        "ops:\n  stream_market_session:\n    config:\n"
        f"      date: '{DAY}'\n      speed: 30\n      start_at: '10:00'\n      flush_seconds: 0.3\n"
        "      heartbeat_seconds: 0.3\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home), "SPY_PIPELINE_DATA_DIR": str(isolated_env)}
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "spy_pipeline.definitions", "-j", "stream_session",
         "-c", str(config)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    root = DataRoot.from_location(isolated_env)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(batch_files(root, "spy", DAY)) < 3:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.1)
        assert len(batch_files(root, "spy", DAY)) >= 3, "no micro-batch landed within 90 s"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    beat = read_heartbeat(root, DAY)
    assert beat is not None and beat["state"] == "stopped" and beat["buffered"] == 0, output[-3000:]
    assert beat["counts"]["landed_rows"] == beat["counts"]["accepted"]  # the buffer landed
    files = [p for p in (isolated_env / "stream").rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".") or p.suffix not in (".parquet", ".json")]
    landed = sum(root.read_partition(str(p), MINUTE_BARS).height for p in files if p.parent.parent.name in SOURCES)
    assert landed == beat["counts"]["landed_rows"]
    assert not Path(compacted_path(root, "spy", DAY)).exists()  # stopped before the close: no compaction
    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)



@pytest.mark.integration
def test_every_file_a_streamed_day_leaves_is_a_registered_dataset_with_its_schema(streamed_day) -> None:
    data_dir, _, _ = streamed_day
    found = assert_lake_matches_registry(data_dir)
    assert {"stream_bars", "stream_contracts", "intraday_consolidated", "spy", "consolidated"} <= set(found)
    assert found["stream_bars"] > 10

def _cli(args: list[str], tmp_path: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "SPY_PIPELINE_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "spy_pipeline.app.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_simulate_command_replays_a_day_as_dagster_runs(tmp_path: Path, isolated_env: Path) -> None:
    done = _cli(["simulate", "--date", str(DAY), "--speed", "600", "--start-at", "15:40"], tmp_path, isolated_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert f"replaying {DAY} from 15:40 ET at 600x" in out and "succeeded" in out
    assert "ended: session_close" in out and "| spy | stream/spy/2025-01-08.parquet |" in out
    assert "intraday_consolidated:" in out
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        jobs = [run.job_name for run in instance.get_runs()]
    assert sorted(jobs) == ["intraday_refresh", "reference_data", "stream_session"]
    assert (isolated_env / "intraday" / "consolidated" / f"{DAY}.parquet").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2025-01-09"], "2025-01-09 is not an NYSE trading day"),
        (["--date", "2025-13-01"], "2025-13-01"),
        (["--date", str(DAY), "--speed", "0"], "--speed must be between 1 and 600"),
        (["--date", str(DAY), "--start-at", "25:00"], "--start-at must be a time of day HH:MM (ET), got '25:00'"),
        (["--date", str(DAY), "--start-at", "21:00"], "--start-at 21:00 is outside 2025-01-08's streaming hours"),
        (["--date", str(DAY), "--drop-every", "0"], "--drop-every must be at least 1, got 0"),
    ],
)
def test_simulate_refuses_bad_input_in_one_line(
    tmp_path: Path, isolated_env: Path, args: list[str], message: str
) -> None:
    done = _cli(["simulate", *args], tmp_path, isolated_env)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
