"""The live movement scanner: incremental events equal the daily scanner's, floors, and alerts sent from a
streaming session without slowing it (loopback receiver slow or down)."""

from __future__ import annotations

import datetime as dt
import random
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from spy_pipeline.domain.live_scanner import IncrementalScanner
from spy_pipeline.domain.scanner import DEFAULT_MIN_PRICE, DEFAULT_MIN_VOLUME, movement_events
from spy_pipeline.domain.trading_calendar import session_bounds
from spy_pipeline.io.alerts import AlertLedger, NotifierOptions
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline.sandbox.websocket import SandboxStream
from spy_pipeline.streaming.compact import compact_day
from spy_pipeline.streaming.live_scanner import LiveScanConfig, LiveScanner
from spy_pipeline.streaming.session import StreamConfig, StreamResult, run_stream_session
from spy_pipeline_tests.alert_receiver import AlertReceiver, closed_port
from spy_pipeline_tests.conftest import sandbox_lake
from spy_pipeline_tests.sandbox_replay import SANDBOX_KEY, STREAM_DAY, busiest_contracts

DAY = dt.date(2025, 1, 15)
OPEN = session_bounds(DAY).open


def _at(minute: int) -> dt.datetime:
    return OPEN + dt.timedelta(minutes=minute)


def _random_day(rng: random.Random, tickers: str = "ABCD") -> pl.DataFrame:
    """Sparse random walks, with penny prices and thin minutes now and then (so the floors matter)."""
    rows = []
    for ticker in tickers[: rng.randint(1, len(tickers))]:
        price, density = rng.uniform(0.02, 4), rng.choice([0.3, 0.8, 1.0])
        for minute in range(rng.randrange(-300, 200), 390 + rng.randrange(0, 240)):
            price = max(0.01, round(price * rng.uniform(0.82, 1.22), 2))
            if rng.random() < density:
                rows.append((ticker, _at(minute), price, float(rng.choice([0, 1, 5, 20, 300]))))
    return pl.DataFrame(rows, schema={"ticker": pl.String, "timestamp": pl.Datetime("us", "UTC"),
                                      "close": pl.Float64, "volume": pl.Float64}, orient="row")


def _in_batches(bars: pl.DataFrame, rng: random.Random, shuffle_within: bool = True) -> list[pl.DataFrame]:
    """The day in landing order (by time), cut into random-sized batches, each in any row order."""
    ordered = bars.sort("timestamp")
    cuts = sorted(rng.sample(range(1, max(ordered.height, 2)), min(rng.randint(0, 40), max(ordered.height - 1, 0))))
    batches, first = [], 0
    for cut in [*cuts, ordered.height]:
        batch = ordered[first:cut]
        batches.append(batch.sample(fraction=1.0, shuffle=True, seed=rng.randrange(2**31)) if shuffle_within
                       else batch)
        first = cut
    return batches


FLOORS = st.sampled_from([(0.0, 0.0), (0.10, 10.0), (0.05, 1.0)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), window=st.sampled_from([1, 7, 30, 120]),
       trigger=st.sampled_from([5.0, 20.0]), sustain=st.sampled_from([0.0, 10.0, 30.0]), floors=FLOORS)
def test_random_sized_batches_equal_the_daily_scan(seed: int, window: int, trigger: float, sustain: float,
                                                   floors: tuple[float, float]) -> None:
    rng = random.Random(seed)
    bars = _random_day(rng)
    min_price, min_volume = floors
    daily = movement_events(bars, window, trigger, sustain, min_price=min_price, min_volume=min_volume)
    live = IncrementalScanner(window, trigger, sustain, min_price=min_price, min_volume=min_volume)
    started = [event for batch in _in_batches(bars, rng) for event in live.update(batch)]
    assert_frame_equal(live.events(), daily)
    assert live.replays == 0  # in time order: no contract was ever replayed
    # every event was reported once, when its trigger bar landed
    assert sorted((e.ticker, e.start) for e in started) == list(daily.select("ticker", "start").iter_rows())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), floors=FLOORS)
def test_late_bars_and_revisions_replay_the_contract(seed: int, floors: tuple[float, float]) -> None:
    """A gap fill delivers the past after the present; a revision replaces a landed bar (or makes it unscannable)."""
    rng = random.Random(seed)
    bars = _random_day(rng).with_row_index("row")
    min_price, min_volume = floors
    late = bars.sample(fraction=0.3, seed=seed % 2**31)
    revised = bars.sample(fraction=0.05, seed=(seed + 1) % 2**31).with_columns(
        close=(pl.col("close") * 1.5).round(2), volume=pl.col("volume").reverse())
    final = pl.concat([bars.filter(~pl.col("row").is_in(revised["row"].implode())), revised]).drop("row")
    live = IncrementalScanner(min_price=min_price, min_volume=min_volume)
    on_time = bars.filter(~pl.col("row").is_in(late["row"].implode())).drop("row")
    reported = set()
    for batch in [*_in_batches(on_time, rng), late.drop("row"), revised.drop("row")]:
        reported |= {(e.ticker, e.start_ms) for e in live.update(batch)}
    daily = movement_events(final, min_price=min_price, min_volume=min_volume)
    assert_frame_equal(live.events(), daily)
    # reported once each: the final events, plus those that late bars undid after their report
    final_starts = {(t, int(s.timestamp() * 1000)) for t, s in daily.select("ticker", "start").iter_rows()}
    assert reported == final_starts | live.withdrawn and not final_starts & live.withdrawn


def test_an_event_is_reported_when_its_trigger_bar_lands_and_grows_afterwards() -> None:
    def bar(minute: int, price: float) -> pl.DataFrame:
        return pl.DataFrame({"ticker": ["X"], "timestamp": [_at(minute)], "close": [price], "volume": [100.0]})

    live = IncrementalScanner(min_price=0.10, min_volume=10)
    assert live.update(bar(0, 1.00)) == [] and live.update(bar(1, 1.05)) == []
    [event] = live.update(bar(2, 1.30))
    assert (event.ticker, event.start, event.reference, event.trigger_price) == ("X", _at(2), 1.00, 1.30)
    assert live.update(bar(3, 1.60)) == []  # during the event: it grows, no new report
    [row] = live.events().to_dicts()
    assert (row["end"], row["peak_price"], row["minutes_above_trigger"], row["duration_minutes"]) == (
        _at(3), 1.60, 2, 2)


def test_the_floors_drop_penny_prints_and_thin_minutes_in_both_scanners() -> None:
    """0.01 -> 1.00 is +9,900% without floors; with them the 0.01 bar and the 3-lot bar do not exist."""
    bars = pl.DataFrame({
        "ticker": ["X"] * 5,
        "timestamp": [_at(m) for m in range(5)],
        "close": [0.80, 0.01, 1.00, 0.50, 0.90],
        "volume": [50.0, 500.0, 40.0, 3.0, 60.0],
    })
    unfloored = movement_events(bars)
    assert unfloored["peak_gain_pct"].max() == pytest.approx(9_900.0)
    floored = movement_events(bars, min_price=0.10, min_volume=10)
    live = IncrementalScanner(min_price=0.10, min_volume=10)
    live.update(bars)
    assert_frame_equal(live.events(), floored)
    # 0.80 -> 1.00 is +25% off the floored minimum; 0.90 is 12.5% above 0.80: still in the event
    assert floored.select("start", "reference_price", "peak_price", "duration_minutes").rows() == [
        (_at(2), 0.80, 1.00, 3)]
    with pytest.raises(ValueError, match="volume"):
        movement_events(bars.drop("volume"), min_volume=1)


# --- during a replayed streaming session ---------------------------------------------------------------------

FLOORS_OF_THE_PIPELINE = {"min_price": DEFAULT_MIN_PRICE, "min_volume": DEFAULT_MIN_VOLUME}


@pytest.fixture(scope="module")
def busy_contracts() -> tuple[str, ...]:
    return busiest_contracts()


def _replay(root: DataRoot, contracts: tuple[str, ...], live: LiveScanner, speed: float = 600) -> StreamResult:
    """The real streaming session on the sandbox's replay of STREAM_DAY from 15:00, the live scanner hooked in."""
    with SandboxServer(api_key=SANDBOX_KEY) as server, SandboxStream(
        SANDBOX_KEY, STREAM_DAY, speed=speed, start_at="15:00"
    ) as stream:
        rest = PolygonClient(SANDBOX_KEY, server.url, None)
        config = StreamConfig(day=STREAM_DAY, api_key=SANDBOX_KEY, feed=stream.feed, secure=False,
                              options=contracts, flush_seconds=0.2, heartbeat_seconds=0.5)
        try:
            return run_stream_session(config, root, clock=stream.clock, rest=rest, on_landed=live.on_landed)
        finally:
            rest.close()


def _live(tmp_path: Path, url: str, **options: Any) -> LiveScanner:
    config = LiveScanConfig(**FLOORS_OF_THE_PIPELINE, run_id="run-1", ui_url="http://ui.test")
    notifier_options = NotifierOptions(**{"digest_window_s": 0.05, "max_attempts": 2, "backoff_s": 0.2,
                                          "timeout_s": 2.0, **options})
    return LiveScanner(config, [url], AlertLedger(tmp_path / "alerts.sqlite"), notifier_options)


def _keys(events: pl.DataFrame) -> set[str]:
    return {f"scanner:{t}:{s.isoformat()}" for t, s in events.select("ticker", "start").iter_rows()}


@pytest.mark.integration
def test_a_replayed_day_alerts_each_daily_event_once(tmp_path: Path, busy_contracts: tuple[str, ...]) -> None:
    root = DataRoot.from_location(tmp_path / "data")
    with AlertReceiver() as receiver:
        live = _live(tmp_path, receiver.url())
        result = _replay(root, busy_contracts, live)
        assert live.close(10.0)
        assert result.reason == "session_close"
        # the daily scanner on the same bars (the day's landed batches) finds exactly the live events
        daily = movement_events(compact_day(root, "options", STREAM_DAY), **FLOORS_OF_THE_PIPELINE)
        assert daily.height >= 5
        assert_frame_equal(live.events(), daily)
        # each event delivered once, as one alert or inside a digest; plus those alerted before a gap fill's late
        # bars undid them (the fill of the minutes before the first streamed frame lands after it)
        withdrawn = {f"scanner:{t}:{dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()}"
                     for t, ms in live.scanner.withdrawn}
        delivered = [key for d in live.deliveries if d.status == "sent" for key in d.keys]
        assert sorted(delivered) == sorted(_keys(daily) | withdrawn) and not withdrawn & _keys(daily)
        assert len(live.stats.delivered_after_s) == len(delivered)
        payloads = receiver.wait_for(len(live.deliveries))
        assert len(payloads) == len(live.deliveries)
        text = "\n".join(p["title"] + "\n" + p["message"] for p in payloads)
        first = daily.sort("start").row(0, named=True)
        assert first["ticker"] in text and "http://ui.test/runs/run-1" in text
        alert = live.alerts[0]
        assert set(alert.fields) >= {"contract", "trigger_time_et", "reference_price", "trigger_price", "gain_pct",
                                     "iv", "delta"}
        with_greeks = [a.fields for a in live.alerts if a.fields["iv"] is not None]
        assert with_greeks and all(0 < abs(f["delta"]) < 1 and 0 < f["iv"] < 5 for f in with_greeks)

        # exactly once: another scanner on the same ledger (a restarted session) sends nothing again
        again = _live(tmp_path, receiver.url())
        again.on_landed("options", compact_day(root, "options", STREAM_DAY))
        assert again.close(5.0)
        assert again.stats.events == daily.height and again.stats.alerts == 0 and again.scanner.replays == 0
        assert len(receiver.payloads) == len(payloads)


@pytest.mark.integration
@pytest.mark.parametrize("receiver_state", ["slow", "down"])
def test_a_slow_or_down_receiver_does_not_slow_landing(tmp_path: Path, busy_contracts: tuple[str, ...],
                                                       receiver_state: str) -> None:
    """Each delivery to the slow receiver takes 5 s (the down one refuses, and is retried): had landing waited
    for them, the dozens of alerts would hold the 6 s replay for minutes."""
    root = DataRoot.from_location(tmp_path / "data")
    hook_seconds: list[float] = []
    with AlertReceiver(delay_s=5.0) as slow:
        url = slow.url() if receiver_state == "slow" else f"json://127.0.0.1:{closed_port()}/alerts"
        live = _live(tmp_path, url, timeout_s=10.0, digest_min_alerts=1_000)  # no digests: one POST per alert
        landed = live.on_landed

        def timed(source: str, frame: pl.DataFrame) -> None:
            started = time.perf_counter()
            landed(source, frame)
            hook_seconds.append(time.perf_counter() - started)

        live.on_landed = timed  # type: ignore[method-assign]
        result = _replay(root, busy_contracts, live)
        closing = time.monotonic()
        settled = live.close(0.5)
        if receiver_state == "slow":  # 5 s per POST: still pending, and the session does not wait for them
            assert not settled
        assert time.monotonic() - closing < 2.0  # (a refused POST fails fast: the down one may have settled)
    assert result.reason == "session_close" and live.stats.alerts >= 20
    assert result.wall_seconds < 30  # ~6 s of replay plus the close's grace, on a loaded machine
    assert len(hook_seconds) == result.stats.files and max(hook_seconds) < 0.05  # landing only enqueues
    assert_frame_equal(live.events(), movement_events(compact_day(root, "options", STREAM_DAY),
                                                      **FLOORS_OF_THE_PIPELINE))


@pytest.mark.integration
def test_the_stream_session_job_alerts_each_event_and_logs_it(tmp_path: Path,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    from spy_pipeline.definitions import defs

    with sandbox_lake(tmp_path_factory, STREAM_DAY) as (_, instance), AlertReceiver() as receiver, \
            pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPY_PIPELINE_ALERT_URLS", receiver.url())
        patch.setenv("SPY_PIPELINE_ALERT_STATE", str(tmp_path / "alerts.sqlite"))
        config = {"date": STREAM_DAY.isoformat(), "speed": 600, "start_at": "15:00", "flush_seconds": 0.3,
                  "heartbeat_seconds": 0.3}
        result = defs.resolve_job_def("stream_session").execute_in_process(
            run_config={"ops": {"stream_market_session": {"config": config}}}, instance=instance)
        assert result.success
        output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"
                      and e.step_key == "stream_market_session")
        metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
        logged = [record.user_message for record in instance.all_logs(result.run_id)
                  if record.user_message.startswith("scanner event:")]
        assert metadata["live_alerts"] >= 1 and len(logged) == metadata["live_alerts"]
        assert all(f"http://127.0.0.1:3000/runs/{result.run_id}" in line for line in logged)
        delivered = receiver.wait_for(1)
        assert any(f"/runs/{result.run_id}" in p["message"] for p in delivered)
