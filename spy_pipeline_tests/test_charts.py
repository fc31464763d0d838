"""The daily charts: PNGs of the right size with titles, axis labels and ET times; daily_charts in Dagster."""

import base64
import datetime as dt
import io
import re
from pathlib import Path

import matplotlib.image as mpimg
import polars as pl
import pytest
from dagster import materialize

from spy_pipeline import charts
from spy_pipeline.consolidate import consolidate_day
from spy_pipeline.definitions import defs
from spy_pipeline.defs.processed.assets import consolidated
from spy_pipeline.defs.processed.scanner_assets import options_movement
from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.options_assets import options_contracts, raw_options_bars
from spy_pipeline.defs.raw.reference_assets import raw_news
from spy_pipeline.defs.reports import REPORT_CHART_ASSETS, daily_charts
from spy_pipeline.scanner import movement_events
from spy_pipeline_tests.conftest import sandbox_lake
from spy_pipeline_tests.test_consolidate import _inputs

DAY = dt.date(2025, 1, 8)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def test_a_thumbnail_is_smaller_and_small(figures) -> None:
    data = charts.png(figures["spy_price_indicators"], dpi=charts.THUMBNAIL_DPI)
    assert _decoded(data).shape[:2] == (360, 640)
    assert len(data) <= 150_000


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
