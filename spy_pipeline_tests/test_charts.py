"""The daily and range charts: PNGs of the right size with titles, axis labels and ET times; their figures
against independent computations; daily_charts and range_charts in Dagster."""

import base64
import collections
import datetime as dt
import io
import itertools
import math
import os
import pickle
import re
import statistics
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib.image as mpimg
import numpy as np
import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from spy_pipeline.definitions import defs
from spy_pipeline.defs.processed.assets import consolidated
from spy_pipeline.defs.processed.scanner_assets import options_movement
from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.options_assets import options_contracts, raw_options_bars
from spy_pipeline.defs.raw.reference_assets import raw_news
from spy_pipeline.defs.reports import REPORT_CHART_ASSETS, daily_charts
from spy_pipeline.defs.reports import range_charts as range_charts_asset
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import chart_rendering, charts, range_charts
from spy_pipeline.domain.consolidate import consolidate_day
from spy_pipeline.domain.scanner import movement_events
from spy_pipeline_tests.conftest import REPO_ROOT, sandbox_lake
from spy_pipeline_tests.test_consolidate import _inputs

DAY = dt.date(2025, 1, 8)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def day_frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    inputs = _inputs(DAY)
    return consolidate_day(inputs), movement_events(inputs.option_bars)


@pytest.fixture(scope="module")
def figures(day_frames):
    frame, events = day_frames
    return charts.daily_figures(frame, events, DAY)


def _decoded(data: bytes):
    assert data.startswith(PNG_SIGNATURE)
    return mpimg.imread(io.BytesIO(data), format="png")


def test_every_chart_is_a_1600_by_900_png(day_frames) -> None:
    frame, events = day_frames
    images = {
        "price": charts.price_chart(frame), "vix": charts.vix_chart(frame), "smile": charts.smile_chart(frame),
        "greeks": charts.greeks_chart(frame), "events": charts.events_chart(events, DAY),
    }
    for name, data in images.items():
        pixels = _decoded(data)
        assert pixels.shape[:2] == (900, 1600), name
        assert pixels.std() > 0.05, f"{name} is blank"


def test_a_chart_drawn_once_has_the_pixels_matplotlib_saves(figures) -> None:
    # the oracle: matplotlib's own savefig at the same DPI; the price chart (filled band, bar collection, three
    # panels) and the events timeline (bars with edges, a colour bar with log-scale labels)
    for name in ("spy_price_indicators", "scanner_events"):
        saved = io.BytesIO()
        figures[name].savefig(saved, format="png", dpi=charts.DPI)
        expected = _decoded(saved.getvalue())
        drawn = _decoded(charts.render(figures[name])[0])
        assert (expected[..., 3] == 1).all(), f"{name}: not opaque, so RGB would lose something"
        assert drawn.shape == (900, 1600, 3), name
        assert np.array_equal(drawn, expected[..., :3]), f"{name}: other pixels than savefig's"


def test_a_thumbnail_is_the_chart_downscaled_and_small(figures) -> None:
    image = charts.pixels(figures["spy_price_indicators"])
    picture, data = charts.encode(image), charts.thumbnail(image)
    assert _decoded(data).shape[:2] == (360, 640)
    assert len(data) <= charts.MAX_THUMBNAIL_BYTES
    # the same picture, smaller: the brightness of 36 horizontal bands (25 rows of the chart, 10 of the
    # thumbnail) follows the full chart's
    full, small = (_decoded(image)[..., :3].mean(axis=(1, 2)) for image in (picture, data))
    bands = full.reshape(36, 25).mean(axis=1), small.reshape(36, 10).mean(axis=1)
    assert np.corrcoef(*bands)[0, 1] > 0.99
    assert np.abs(bands[0] - bands[1]).max() < 0.02
    tight = charts.thumbnail(image, max_bytes=len(data) - 1)
    assert _decoded(tight).shape[1] < 640 and len(tight) < len(data)


def _texts(figure) -> dict[str, list[str]]:
    axes = figure.get_axes()
    return {
        "titles": [figure.get_suptitle()] + [a.get_title() for a in axes],
        "xlabels": [a.get_xlabel() for a in axes],
        "ylabels": [a.get_ylabel() for a in axes],
    }


@pytest.mark.parametrize(
    ("name", "title", "xlabel", "ylabels"),
    [
        ("spy_price_indicators", "Bollinger", "Time (ET)", ["SPY price (USD)", "RSI (0-100)", "MACD (USD)"]),
        ("spy_vix", "SPY and VIX", "Time (ET)", ["SPY price (USD)", "VIX (index points)"]),
        ("iv_smile", "implied-volatility smile", "Strike (USD)", ["Implied volatility (% per year)"]),
        ("greeks_by_strike", "greeks by strike", "Strike (USD)",
         ["Delta (USD per USD of SPY)", "Gamma (delta per USD of SPY)"]),
        ("scanner_events", "Options scanner events", "Time (ET)", ["Option contract (OCC ticker)"]),
    ],
)
def test_each_chart_has_its_title_and_axis_labels_with_units(figures, name, title, xlabel, ylabels) -> None:
    texts = _texts(figures[name])
    assert any(title in t and str(DAY) in t for t in texts["titles"]), texts["titles"]
    assert xlabel in texts["xlabels"]
    assert set(ylabels) <= set(texts["ylabels"])
    units = [label for label in texts["xlabels"] + texts["ylabels"] if label]
    assert all(re.search(r"\(.+\)", label) for label in units), units


def test_smile_says_which_iv_it_draws_and_has_calls_and_puts_per_expiration(day_frames, figures) -> None:
    frame, _ = day_frames
    axis = figures["iv_smile"].get_axes()[0]
    assert charts.SMILE_NOTE in axis.get_title()
    labels = [line.get_label() for line in axis.get_lines()]
    for expiration in frame.filter(pl.col("iv_reason") == 0)["expiration"].unique():
        assert {f"{expiration} calls", f"{expiration} puts"} <= set(labels)


@pytest.mark.parametrize("name", ["spy_price_indicators", "spy_vix", "scanner_events"])
def test_time_axes_are_in_et_from_the_open(figures, name) -> None:
    figure = figures[name]
    charts.png(figure, dpi=20)  # draw, so tick labels are laid out
    axis = figure.get_axes()[-1] if name == "spy_price_indicators" else figure.get_axes()[0]
    labels = [t.get_text() for t in axis.get_xticklabels() if t.get_text()]
    assert labels[0] == "09:30" and labels[-1] == "16:00", labels


def test_events_chart_without_events_still_renders(day_frames) -> None:
    _, events = day_frames
    figure = charts.events_figure(events.clear(), DAY)
    assert "0 events" in figure.get_axes()[0].get_title()
    assert _decoded(charts.png(figure)).shape[:2] == (900, 1600)


def test_a_chart_changes_when_the_data_changes(day_frames) -> None:
    frame, _ = day_frames
    moved = frame.with_columns(pl.col("vix") + 3.0)
    assert charts.vix_chart(frame) != charts.vix_chart(moved)
    assert charts.vix_chart(frame) == charts.vix_chart(frame)


def test_worker_processes_draw_each_day_as_the_run_itself_would_in_day_order() -> None:
    days = [DAY, dt.date(2025, 1, 7)]  # not sorted: the order given is the order yielded
    inputs = [(consolidate_day(frames := _inputs(day)), movement_events(frames.option_bars), day) for day in days]
    alone = dict(chart_rendering.render_days(inputs, processes=1))
    side_by_side = list(chart_rendering.render_days(inputs, processes=2))
    assert [day for day, _ in side_by_side] == days
    for day, rendered in side_by_side:
        assert sorted(rendered) == sorted(charts.DAILY_CHARTS)
        assert rendered == alone[day], f"{day}: a worker process drew other pictures"
    assert alone[days[0]] != alone[days[1]]


def test_a_worker_given_the_session_draws_the_same_charts_without_the_exchange_calendar(
    day_frames, tmp_path: Path
) -> None:
    frame, events = day_frames
    frame.select(charts.CHART_COLUMNS).write_parquet(tmp_path / "consolidated.parquet")
    events.write_parquet(tmp_path / "events.parquet")
    session = charts.session_et(DAY)
    worker = f"""
import datetime, pickle, sys
import polars as pl
from spy_pipeline.domain import charts
rendered = charts.render_day(pl.read_parquet("consolidated.parquet"), pl.read_parquet("events.parquet"),
                             datetime.date.fromisoformat("{DAY}"), {session!r})
pickle.dump((rendered, sorted(m for m in ("exchange_calendars", "pandas") if m in sys.modules)), sys.stdout.buffer)
"""
    # a fresh interpreter, as a spawned worker is: what it imports is what a worker pays for
    answer = subprocess.run([sys.executable, "-c", worker], cwd=tmp_path, capture_output=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    rendered, heavy_modules = pickle.loads(answer.stdout)
    assert heavy_modules == []
    assert rendered == charts.render_day(frame, events, DAY)  # the calendar's own session: the same pictures


def test_chart_processes_default_to_the_cores_with_two_days_each_and_never_exceed_the_days(monkeypatch) -> None:
    monkeypatch.setattr(chart_rendering.os, "cpu_count", lambda: 4)
    assert [chart_rendering.process_count(0, days) for days in (1, 2, 3, 4, 5, 7, 8, 21)] == [1, 1, 1, 2, 2, 3, 4, 4]
    assert chart_rendering.process_count(2, 21) == 2  # as configured
    assert chart_rendering.process_count(3, 3) == 3
    assert chart_rendering.process_count(8, 1) == 1


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory):
    resources = defs.resources
    with sandbox_lake(tmp_path_factory, str(DAY)) as (data_dir, instance):
        day_assets = [raw_spy_bars, raw_vix_bars, options_contracts, raw_options_bars, raw_news, consolidated,
                      options_movement]
        assert materialize(day_assets, resources=resources, instance=instance, partition_key=str(DAY)).success
        result = materialize(REPORT_CHART_ASSETS, resources=resources, instance=instance, partition_key=str(DAY))
        yield data_dir, result

def test_daily_charts_writes_every_chart_with_its_path_and_inline_image(materialized) -> None:
    data_dir, result = materialized
    assert result.success
    [event] = result.get_asset_materialization_events()
    assert event.asset_key == daily_charts.key and event.partition == str(DAY)
    meta = event.step_materialization_data.materialization.metadata
    folder = data_dir / "reports" / "charts" / str(DAY)
    assert sorted(p.stem for p in folder.iterdir()) == sorted(charts.DAILY_CHARTS)
    for name in charts.DAILY_CHARTS:
        path = Path(meta[f"{name}_path"].value)
        assert path == folder / f"{name}.png"
        assert _decoded(path.read_bytes()).shape[:2] == (900, 1600)
        markdown = meta[name].value
        match = re.fullmatch(r"!\[(.+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
        assert match and str(DAY) in match.group(1), markdown[:80]
        thumbnail = base64.b64decode(match.group(2))
        assert len(thumbnail) <= 150_000 and _decoded(thumbnail).shape[1] < 1600


# --- range charts ---------------------------------------------------------------------------------------------

def _regular_closes_by_wall_clock(spy: pl.DataFrame, day: dt.date) -> list[float]:
    """SPY closes from 09:30 to 16:00 (`day` is a full session), chosen by ET wall-clock time, not by the
    `session` column."""
    bars = zip(spy["timestamp"].to_list(), spy["close"].to_list(), strict=True)
    rows = sorted((ts.astimezone(NEW_YORK), price) for ts, price in bars)
    return [price for ts, price in rows if ts.date() == day and dt.time(9, 30) <= ts.time() < dt.time(16)]


def _annualized_std_of_log_returns(closes: list[float]) -> float:
    return statistics.stdev(math.log(b / a) for a, b in itertools.pairwise(closes)) * math.sqrt(252 * 390)


def test_realized_volatility_is_the_annualized_std_of_regular_session_minute_log_returns() -> None:
    spy = _inputs(DAY).spy
    closes = _regular_closes_by_wall_clock(spy, DAY)
    expected = _annualized_std_of_log_returns(closes)
    assert len(closes) > 300 and spy.height > len(closes)  # pre- and post-market bars are in the input
    assert range_charts.realized_volatility(spy.sample(fraction=1.0, shuffle=True, seed=7)) == pytest.approx(
        expected, rel=1e-12)
    extended = spy.with_columns(  # a wild pre/post market does not move the regular session's figure
        close=pl.when(pl.col("session") == "regular").then(pl.col("close")).otherwise(pl.col("close") * 3)
    )
    assert range_charts.realized_volatility(extended) == pytest.approx(expected, rel=1e-12)


def test_day_volatility_takes_near_the_money_median_iv_and_vix_close(day_frames) -> None:
    frame, _ = day_frames
    inputs = _inputs(DAY)
    near = [
        iv for strike, spot, iv, reason in frame.select("strike", "spy_close", "iv", "iv_reason").iter_rows()
        if reason == 0 and not math.isnan(iv) and abs(math.log(strike / spot)) <= 0.01
    ]
    last_vix = max(zip(inputs.vix["timestamp"].to_list(), inputs.vix["close"].to_list(), strict=True))[1]
    row = range_charts.day_volatility(DAY, inputs.spy, inputs.vix, frame)
    assert len(near) > 100 and len(near) < frame.height  # the band keeps some rows and drops others
    assert row["implied_vol"] == pytest.approx(statistics.median(near), rel=1e-12)
    assert row["vix_close_fraction"] == pytest.approx(last_vix / 100, rel=1e-12)
    assert 0.05 < row["implied_vol"] < 1.0 and 0.05 < row["realized_vol"] < 1.0


def _volatility_days() -> pl.DataFrame:
    days = [dt.date(2025, 1, 6), dt.date(2025, 1, 7), dt.date(2025, 1, 8)]
    return range_charts.volatility_frame([
        {"day": d, "realized_vol": 0.12 + i / 100, "implied_vol": 0.15, "vix_close_fraction": 0.16 - i / 100}
        for i, d in enumerate(reversed(days))
    ])


def test_volatility_chart_draws_each_series_in_percent_with_titles_and_units() -> None:
    daily = _volatility_days()
    assert daily["day"].is_sorted()
    figure = range_charts.volatility_figure(daily)
    axis = figure.get_axes()[0]
    lines = {line.get_label(): line.get_ydata() for line in axis.get_lines()}
    vix = lines["VIX close (its points are % per year)"]
    assert list(vix) == pytest.approx([14.0, 15.0, 16.0])  # sorted by day, in %
    assert list(lines["Realized (SPY 1-minute log returns)"]) == pytest.approx([14.0, 13.0, 12.0])
    assert "2025-01-06 to 2025-01-08" in figure.get_suptitle() and "sqrt(252 x 390)" in axis.get_title()
    assert axis.get_ylabel() == "Volatility (% per year, annualized)" and axis.get_xlabel() == "Trading day (ET)"


def test_events_by_hour_counts_equal_a_direct_count_of_event_starts_in_et(day_frames) -> None:
    _, events = day_frames
    counted = collections.Counter(ts.astimezone(NEW_YORK).hour for ts in events["start"].to_list())
    by_hour = range_charts.events_by_hour(events)
    assert dict(by_hour.iter_rows()) == {hour: counted.get(hour, 0) for hour in range(9, 16)} | dict(counted)
    assert by_hour["events"].sum() == events.height > 10
    figure = range_charts.events_by_hour_figure(by_hour, [DAY])
    axis = figure.get_axes()[0]
    heights = {round(bar.get_x() + bar.get_width() / 2): bar.get_height() for bar in axis.patches}
    assert heights == {hour: counted.get(hour, 0) for hour in heights}
    assert f"{events.height:,} events" in axis.get_title()
    assert (axis.get_xlabel(), axis.get_ylabel()) == (
        "Hour of day the event started (ET; 09:00 holds 09:30-09:59)", "Events (count)")
    charts.png(figure, dpi=20)
    assert [t.get_text() for t in axis.get_xticklabels()][:2] == ["09:00", "10:00"]


def test_range_charts_are_valid_pngs_that_change_with_the_data(day_frames) -> None:
    _, events = day_frames
    daily = _volatility_days()
    images = {name: charts.png(f) for name, f in range_charts.range_figures(daily, events, [DAY]).items()}
    assert sorted(images) == sorted(range_charts.RANGE_CHARTS)
    for name, data in images.items():
        pixels = _decoded(data)
        assert pixels.shape[:2] == (900, 1600), name
        assert pixels.std() > 0.05, f"{name} is blank"
        assert 20_000 < len(data) < 1_000_000, (name, len(data))
    later = events.with_columns(trigger_hour_et=pl.lit(15, pl.Int32))
    moved = daily.with_columns(pl.col("implied_vol") + 0.05)
    assert charts.png(range_charts.volatility_figure(moved)) != images["volatility"]
    again = range_charts.range_figures(daily, later, [DAY])
    assert charts.png(again["events_by_hour"]) != images["events_by_hour"]
    assert charts.png(again["volatility"]) == images["volatility"]  # same data, same bytes


def test_range_charts_without_days_or_events_still_render() -> None:
    empty_events = pl.DataFrame(schema={"trigger_hour_et": pl.Int32})
    for figure in range_charts.range_figures(range_charts.volatility_frame([]), empty_events, []).values():
        assert _decoded(charts.png(figure)).shape[:2] == (900, 1600)


@pytest.fixture(scope="module")
def range_materialized(materialized):
    data_dir, _ = materialized
    resources = {**defs.resources, "store": ParquetStoreResource(data_dir=str(data_dir))}
    with DagsterInstance.ephemeral() as instance:
        yield data_dir, materialize([range_charts_asset], resources=resources, instance=instance)


def test_range_charts_asset_writes_both_charts_with_paths_thumbnails_and_figures(range_materialized) -> None:
    data_dir, result = range_materialized
    assert result.success
    [event] = result.get_asset_materialization_events()
    meta = event.step_materialization_data.materialization.metadata
    folder = data_dir / "reports" / "charts" / "range"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.png" for n in range_charts.RANGE_CHARTS)
    for name in range_charts.RANGE_CHARTS:
        assert Path(meta[f"{name}_path"].value) == folder / f"{name}.png"
        assert _decoded((folder / f"{name}.png").read_bytes()).shape[:2] == (900, 1600)
        match = re.fullmatch(r"!\[(.+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", meta[name].value)
        assert match and str(DAY) in match.group(1)
        assert _decoded(base64.b64decode(match.group(2))).shape[1] < 1600
    spy = pl.read_parquet(data_dir / "raw" / "spy" / f"{DAY}.parquet")
    closes = _regular_closes_by_wall_clock(spy, DAY)
    realized = _annualized_std_of_log_returns(closes)
    assert f"| {DAY} | {realized * 100:.2f} |" in meta["volatility_pct_per_year"].value
    events = pl.read_parquet(data_dir / "processed" / "options_movement" / f"{DAY}.parquet")
    assert (meta["days"].value, meta["scanned_days"].value, meta["events"].value) == (1, 1, events.height)


def test_range_charts_asset_without_consolidated_days_fails_with_one_clear_line(tmp_path: Path) -> None:
    resources = {**defs.resources, "store": ParquetStoreResource(data_dir=str(tmp_path / "empty"))}
    with DagsterInstance.ephemeral() as instance:
        result = materialize([range_charts_asset], resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "no consolidated days in" in failure.step_failure_data.error.cause.message
    assert "materialize consolidated first" in failure.step_failure_data.error.cause.message


def test_a_failing_chart_leaves_the_data_of_spy_pipeline_run_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The charts are a run of their own after the data: when drawing fails, every data asset of the day is
    materialized, the reports still run, and the run says which step failed."""
    from spy_pipeline.app.runner import ensure_dagster_home, run_backfill
    from spy_pipeline.definitions import DAILY_DATA_ASSETS

    def broken(*args, **kwargs):
        raise RuntimeError("the chart library fell over")

    monkeypatch.setattr(charts, "render_day", broken)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    ensure_dagster_home(REPO_ROOT)
    summary = run_backfill(DAY, 1, tmp_path / "data")
    assert not summary.success
    assert summary.daily_materialized == {
        asset.key.to_user_string(): {str(DAY)} for asset in DAILY_DATA_ASSETS}
    assert summary.other_assets == ["corporate_actions", "options_movement_summary", "range_charts"]
    assert any(line.startswith("  FAILED step daily_charts: ") and "the chart library fell over" in line
               for line in summary.lines), summary.lines
    assert (tmp_path / "data" / "processed" / "training" / f"{DAY}.parquet").exists()
