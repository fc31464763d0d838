"""Charts of one trading day, as PNG: pure functions from polars frames to images (no Dagster).

Each chart has a `*_figure` function returning the matplotlib Figure (to inspect titles and labels) and a
`*_chart` function returning PNG bytes. Figures are built on `matplotlib.figure.Figure` with the Agg canvas:
no pyplot, no global figure registry, safe to call from several threads. Times on the x axis are
America/New_York wall-clock times of the regular session.

Speed (a range backfill draws five charts a day): a day's many bars are one PolyCollection each (one artist,
not hundreds of Rectangles); each chart is drawn once, its PNG and its thumbnail (that picture downscaled) both
encoded from the canvas's pixels, with fast zlib compression. `render_day` is picklable work for a process pool.

Inputs: `consolidated` frames (schemas.CONSOLIDATED: one row per option contract per minute, the SPY and VIX
columns repeated on every row of a minute) and options_movement events (scanner.EVENT_COLUMNS).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # no display: charts are files

import matplotlib.dates as mdates
import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from spy_pipeline.domain import trading_calendar as cal

WIDTH_IN, HEIGHT_IN, DPI = 16, 9, 100  # 1600 x 900 pixels
SMILE_NOTE = "median IV per strike over the day's bars with a valid IV (iv_reason 0)"
GREEKS_NOTE = "median per strike over the day's bars with a valid IV (iv_reason 0)"
MAX_TIMELINE_CONTRACTS = 40
# Fixed margins of the daily charts (fractions of the figure), sized for their titles, labels and legends.
ONE_PANEL = {"left": 0.055, "right": 0.98, "top": 0.93, "bottom": 0.07}
PRICE_PANELS = {**ONE_PANEL, "top": 0.92, "hspace": 0.3}
TWIN_AXES = {**ONE_PANEL, "right": 0.94}
SIDE_BY_SIDE = {**ONE_PANEL, "top": 0.9, "wspace": 0.16}
TIMELINE = {**ONE_PANEL, "left": 0.125, "right": 0.95}
MAX_THUMBNAIL_BYTES = 150_000  # a Markdown data-URI image in a run's event log: keep it a thumbnail
THUMBNAIL_WIDTHS = (640, 480, 320)  # tried in turn until the PNG fits MAX_THUMBNAIL_BYTES
PNG_OPTIONS = {"compress_level": 1}  # zlib's fastest: ~3x faster to encode than the default 6, ~10 % larger files
# The columns of `consolidated` the charts read: what render_day's callers need to pass (and to pickle).
CHART_COLUMNS = [
    "timestamp", "spy_close", "bb_lower", "bb_middle", "bb_upper", "rsi_14", "macd", "macd_signal", "macd_hist",
    "vix", "expiration", "contract_type", "strike", "iv", "iv_reason", "delta", "gamma",
]


def pixels(figure: Figure) -> Image.Image:
    """The figure drawn once on its Agg canvas at its own DPI, as RGB: the same pixels `savefig` writes at that
    DPI, without its second drawing. The charts are opaque (white figure background), so alpha carries nothing."""
    canvas = figure.canvas
    canvas.draw()
    return Image.frombuffer("RGBA", canvas.get_width_height(physical=True), canvas.buffer_rgba(),
                            "raw", "RGBA", 0, 1).convert("RGB")


def encode(image: Image.Image, dpi: float = DPI) -> bytes:
    """An image as PNG bytes (fast zlib), with the DPI and software matplotlib's own PNGs carry."""
    info = PngInfo()
    info.add_text("Software", f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/")
    buffer = io.BytesIO()
    image.save(buffer, format="png", dpi=(dpi, dpi), pnginfo=info, **PNG_OPTIONS)
    return buffer.getvalue()


def png(figure: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes, WIDTH_IN x HEIGHT_IN inches at `dpi` (1600 x 900 at the default)."""
    if dpi == figure.dpi:
        return encode(pixels(figure), dpi)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, pil_kwargs=PNG_OPTIONS)
    return buffer.getvalue()


def render(figure: Figure) -> tuple[bytes, bytes]:
    """The figure drawn once at its DPI: (its PNG, its thumbnail), both from the same pixels."""
    image = pixels(figure)
    return encode(image, figure.dpi), thumbnail(image)


def thumbnail(image: Image.Image, max_bytes: int = MAX_THUMBNAIL_BYTES) -> bytes:
    """A chart's picture (`pixels`) downscaled (same aspect) to the widest of THUMBNAIL_WIDTHS whose PNG fits
    `max_bytes`: cheaper than drawing the figure again at a lower DPI, and the same picture."""
    for width in THUMBNAIL_WIDTHS:
        height = round(image.height * width / image.width)
        buffer = io.BytesIO()
        image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=2.0).save(
            buffer, format="png", optimize=False, **PNG_OPTIONS)
        if buffer.tell() <= max_bytes:
            break
    return buffer.getvalue()


def _rectangles(left: np.ndarray, right: np.ndarray, bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Axis-aligned rectangles as PolyCollection vertices, shape (n, 4, 2): a bar chart in one artist."""
    corners = [(left, bottom), (left, top), (right, top), (right, bottom)]
    return np.stack([np.column_stack(np.broadcast_arrays(x, y)) for x, y in corners], axis=1)


def new_figure(margins: dict[str, float] | None = None) -> Figure:
    """An empty WIDTH_IN x HEIGHT_IN figure on its own Agg canvas (no pyplot). With `margins`
    (`Figure.subplots_adjust` arguments) the layout is fixed; without, constrained layout places everything,
    which costs about as much as drawing the chart again: the daily charts, drawn for every day, fix theirs."""
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout=None if margins else "constrained")
    if margins:
        figure.subplots_adjust(**margins)
    FigureCanvasAgg(figure)
    return figure


def _day(frame: pl.DataFrame, column: str = "timestamp") -> dt.date:
    first = frame[column].dt.convert_time_zone(str(cal.NEW_YORK)).min()
    if first is None:
        raise ValueError("an empty frame has no trading day: pass `day`")
    return first.date()


def _et(series: pl.Series) -> np.ndarray:
    """UTC timestamps as naive America/New_York datetimes (matplotlib draws them as they are)."""
    return series.dt.convert_time_zone(str(cal.NEW_YORK)).dt.replace_time_zone(None).to_numpy()


Session = tuple[dt.datetime, dt.datetime]  # a day's regular session: open and close, naive ET (as drawn)


def session_et(day: dt.date) -> Session:
    """The regular session of `day` from the exchange calendar. A chart worker is given it (render_day's
    `session`) so that it never builds the calendar."""
    bounds = cal.session_bounds(day)
    return tuple(moment.astimezone(cal.NEW_YORK).replace(tzinfo=None) for moment in (bounds.open, bounds.close))


def _session_axis(axis, session: Session) -> None:
    """x axis: the regular session in ET, a tick every 30 minutes from the open (09:30)."""
    axis.set_xlim(*session)
    axis.xaxis.set_major_locator(mdates.MinuteLocator(byminute=[0, 30]))
    axis.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    axis.grid(True, alpha=0.3)


def _spy_minutes(consolidated: pl.DataFrame) -> pl.DataFrame:
    """One row per minute: SPY's columns, its indicators and VIX (the same on every row of a minute)."""
    columns = ["spy_close", "bb_lower", "bb_middle", "bb_upper", "rsi_14", "macd", "macd_signal", "macd_hist", "vix"]
    return consolidated.group_by("timestamp").agg(pl.col(columns).first()).sort("timestamp")


def price_figure(consolidated: pl.DataFrame, day: dt.date | None = None, session: Session | None = None) -> Figure:
    """SPY minute close with its 20-minute Bollinger bands, and RSI(14) and MACD(12, 26, 9) panels below."""
    day = day or _day(consolidated)
    session = session or session_et(day)
    minutes = _spy_minutes(consolidated)
    times = _et(minutes["timestamp"])
    figure = new_figure(PRICE_PANELS)
    price, rsi, macd = figure.subplots(3, 1, sharex=True, height_ratios=[3, 1, 1.2])
    figure.suptitle(f"SPY {day}: minute close, Bollinger bands, RSI and MACD", fontsize=16)
    price.fill_between(times, minutes["bb_lower"], minutes["bb_upper"], color="tab:blue", alpha=0.12,
                       label="Bollinger band (20 min, 2 sd)")
    price.plot(times, minutes["bb_middle"], color="tab:blue", lw=0.9, ls="--", label="20-minute mean")
    price.plot(times, minutes["spy_close"], color="black", lw=1.2, label="SPY close")
    price.set_title("Price")
    price.set_ylabel("SPY price (USD)")
    price.legend(loc="upper left")
    rsi.plot(times, minutes["rsi_14"], color="tab:purple", lw=1)
    for level in (30, 70):
        rsi.axhline(level, color="grey", lw=0.8, ls=":")
    rsi.set_ylim(0, 100)
    rsi.set_title("RSI (14 minutes)")
    rsi.set_ylabel("RSI (0-100)")
    minute = 1 / (24 * 60)  # in days, matplotlib's date unit
    hist = np.nan_to_num(minutes["macd_hist"].to_numpy(), nan=0.0)
    macd.add_collection(PolyCollection(  # one artist for the day's 390 bars
        _rectangles(mdates.date2num(times) - minute / 2, mdates.date2num(times) + minute / 2, 0.0, hist),
        facecolors=np.where(hist >= 0, "tab:green", "tab:red"), edgecolors="none", alpha=0.6, label="histogram",
    ))
    macd.plot(times, minutes["macd"], color="tab:blue", lw=1, label="MACD (12, 26)")
    macd.plot(times, minutes["macd_signal"], color="tab:orange", lw=1, label="signal (9)")
    macd.axhline(0, color="grey", lw=0.6)
    macd.set_title("MACD")
    macd.set_ylabel("MACD (USD)")
    macd.legend(loc="upper left")
    for axis in (price, rsi, macd):
        _session_axis(axis, session)
    macd.set_xlabel("Time (ET)")
    return figure


def vix_figure(consolidated: pl.DataFrame, day: dt.date | None = None, session: Session | None = None) -> Figure:
    """SPY minute close (left axis) and VIX (right axis) on the same time axis."""
    day = day or _day(consolidated)
    session = session or session_et(day)
    minutes = _spy_minutes(consolidated)
    times = _et(minutes["timestamp"])
    figure = new_figure(TWIN_AXES)
    spy = figure.subplots()
    vix = spy.twinx()
    spy_line, = spy.plot(times, minutes["spy_close"], color="black", lw=1.2, label="SPY close")
    vix_line, = vix.plot(times, minutes["vix"], color="tab:red", lw=1.2, label="VIX")
    spy.set_title(f"SPY and VIX {day}", fontsize=16)
    spy.set_ylabel("SPY price (USD)")
    vix.set_ylabel("VIX (index points)", color="tab:red")
    vix.tick_params(axis="y", colors="tab:red")
    spy.set_xlabel("Time (ET)")
    spy.legend(handles=[spy_line, vix_line], loc="upper left")
    _session_axis(spy, session)
    return figure


def _per_strike(consolidated: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The day's median of `columns` per (expiration, contract_type, strike), over bars with a valid IV."""
    valid = consolidated.filter((pl.col("iv_reason") == 0) & pl.col("iv").is_not_nan())
    return (
        valid.group_by("expiration", "contract_type", "strike")
        .agg(pl.col(columns).median())
        .sort("expiration", "contract_type", "strike")
    )


def _by_expiration(frame: pl.DataFrame, draw: Callable, axes: list) -> None:
    colours = matplotlib.colormaps["viridis"]
    expirations = sorted(frame["expiration"].unique().to_list())
    for index, expiration in enumerate(expirations):
        colour = colours(index / max(len(expirations) - 1, 1) * 0.9)
        for kind, style, marker in (("call", "-", "o"), ("put", "--", "s")):
            part = frame.filter((pl.col("expiration") == expiration) & (pl.col("contract_type") == kind))
            if part.height:
                draw(part, dict(color=colour, ls=style, marker=marker, ms=4, lw=1.2, label=f"{expiration} {kind}s"))
    for axis in axes:
        if not expirations:
            axis.text(0.5, 0.5, "no bars with a valid implied volatility", ha="center", transform=axis.transAxes)
        axis.grid(True, alpha=0.3)


def _spot_line(axes: list, consolidated: pl.DataFrame) -> None:
    spot = consolidated["spy_close"].median()
    if spot is not None:
        for axis in axes:
            axis.axvline(spot, color="grey", ls=":", lw=1, label=f"SPY median close {spot:.2f}")


def smile_figure(consolidated: pl.DataFrame, day: dt.date | None = None) -> Figure:
    """Implied volatility against strike, one line per expiration and contract type (calls solid, puts
    dashed), each point the day's median IV of that strike (SMILE_NOTE)."""
    day = day or _day(consolidated)
    per_strike = _per_strike(consolidated, ["iv"]).with_columns(iv_pct=pl.col("iv") * 100)
    figure = new_figure(ONE_PANEL)
    axis = figure.subplots()
    _by_expiration(per_strike, lambda part, style: axis.plot(part["strike"], part["iv_pct"], **style), [axis])
    _spot_line([axis], consolidated)
    axis.set_title(f"SPY implied-volatility smile {day} ({SMILE_NOTE})", fontsize=14)
    axis.set_xlabel("Strike (USD)")
    axis.set_ylabel("Implied volatility (% per year)")
    axis.legend(loc="upper right", ncols=2, fontsize=9)
    return figure


def greeks_figure(consolidated: pl.DataFrame, day: dt.date | None = None) -> Figure:
    """Delta and gamma against strike, per expiration and contract type (GREEKS_NOTE)."""
    day = day or _day(consolidated)
    per_strike = _per_strike(consolidated, ["delta", "gamma"])
    figure = new_figure(SIDE_BY_SIDE)
    delta, gamma = figure.subplots(1, 2)
    figure.suptitle(f"SPY option greeks by strike {day} ({GREEKS_NOTE})", fontsize=14)

    def draw(part: pl.DataFrame, style: dict) -> None:
        delta.plot(part["strike"], part["delta"], **style)
        gamma.plot(part["strike"], part["gamma"], **style)

    _by_expiration(per_strike, draw, [delta, gamma])
    _spot_line([delta, gamma], consolidated)
    delta.set_title("Delta")
    delta.set_xlabel("Strike (USD)")
    delta.set_ylabel("Delta (USD per USD of SPY)")
    gamma.set_title("Gamma")
    gamma.set_xlabel("Strike (USD)")
    gamma.set_ylabel("Gamma (delta per USD of SPY)")
    delta.legend(loc="best", ncols=2, fontsize=8)
    return figure


def events_figure(events: pl.DataFrame, day: dt.date, session: Session | None = None) -> Figure:
    """The options scanner's events of `day` on a timeline: one row per contract, a bar from start to end
    (ET), coloured by peak gain; the MAX_TIMELINE_CONTRACTS contracts with the largest peak gains."""
    figure = new_figure(TIMELINE)
    axis = figure.subplots()
    contracts = events["ticker"].n_unique()
    shown = (
        events.group_by("ticker").agg(pl.col("peak_gain_pct").max().alias("best"))
        .sort("best", "ticker", descending=[True, False]).head(MAX_TIMELINE_CONTRACTS)["ticker"].to_list()
    )
    subset = f"top {len(shown)} of {contracts} contracts by peak gain" if contracts > len(shown) else (
        f"{contracts} contracts")
    axis.set_title(f"Options scanner events {day}: {events.height} events, {subset}", fontsize=14)
    if events.height:
        rows = {ticker: index for index, ticker in enumerate(sorted(shown))}
        drawn = events.filter(pl.col("ticker").is_in(shown))
        starts, ends = _et(drawn["start"]), _et(drawn["end"])
        minute = np.timedelta64(1, "m")
        left = mdates.date2num(starts)
        right = left + (ends - starts + minute) / np.timedelta64(1, "D")
        gains = drawn["peak_gain_pct"].to_numpy()
        low = max(float(gains.min()), 1.0)  # gains are >= the trigger (20 %) and heavy-tailed: a log scale
        norm = matplotlib.colors.LogNorm(vmin=low, vmax=max(float(gains.max()), low * 2))
        colours = matplotlib.colormaps["plasma"](norm(gains))
        y = drawn["ticker"].replace_strict(rows, return_dtype=pl.Float64).to_numpy()
        axis.add_collection(PolyCollection(  # one artist for every event's bar
            _rectangles(left, right, y - 0.3, y + 0.3), facecolors=colours,
            edgecolors="black", linewidths=0.4,
        ))
        axis.scatter(left, y, marker="|", color="black", s=60, zorder=3)
        axis.set_yticks(list(rows.values()), list(rows.keys()), fontsize=8)
        axis.set_ylim(-1, len(rows))
        bar = figure.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="plasma"), ax=axis, fraction=0.03, pad=0.015)
        bar.set_label("Peak gain over the window minimum (%, log scale)")
    else:
        axis.text(0.5, 0.5, "no events this day", ha="center", va="center", transform=axis.transAxes, fontsize=14)
        axis.set_yticks([])
    axis.set_ylabel("Option contract (OCC ticker)")
    axis.set_xlabel("Time (ET)")
    _session_axis(axis, session or session_et(day))
    return figure


# name -> (title, figure builder over (consolidated, events, day, session))
DAILY_CHARTS: dict[str, tuple[str, Callable[[pl.DataFrame, pl.DataFrame, dt.date, Session], Figure]]] = {
    "spy_price_indicators": ("SPY price, Bollinger bands, RSI and MACD", lambda c, e, d, s: price_figure(c, d, s)),
    "spy_vix": ("SPY and VIX", lambda c, e, d, s: vix_figure(c, d, s)),
    "iv_smile": ("Implied-volatility smile by strike", lambda c, e, d, s: smile_figure(c, d)),
    "greeks_by_strike": ("Delta and gamma by strike", lambda c, e, d, s: greeks_figure(c, d)),
    "scanner_events": ("Options scanner events", lambda c, e, d, s: events_figure(e, d, s)),
}


def daily_figures(
    consolidated: pl.DataFrame, events: pl.DataFrame, day: dt.date, session: Session | None = None
) -> dict[str, Figure]:
    """Every chart of `day`, by file name (without .png)."""
    session = session or session_et(day)
    return {name: build(consolidated, events, day, session) for name, (_, build) in DAILY_CHARTS.items()}


def render_day(
    consolidated: pl.DataFrame, events: pl.DataFrame, day: dt.date, session: Session | None = None
) -> dict[str, tuple[bytes, bytes]]:
    """Every chart of `day` by name: (its PNG, its thumbnail). Each figure is drawn once. A module-level
    function of frames, so a process pool can run it (`consolidated` may hold CHART_COLUMNS only; with the
    day's `session` the worker needs no exchange calendar)."""
    return {name: render(figure) for name, figure in daily_figures(consolidated, events, day, session).items()}


def price_chart(consolidated: pl.DataFrame, day: dt.date | None = None) -> bytes:
    return png(price_figure(consolidated, day))


def vix_chart(consolidated: pl.DataFrame, day: dt.date | None = None) -> bytes:
    return png(vix_figure(consolidated, day))


def smile_chart(consolidated: pl.DataFrame, day: dt.date | None = None) -> bytes:
    return png(smile_figure(consolidated, day))


def greeks_chart(consolidated: pl.DataFrame, day: dt.date | None = None) -> bytes:
    return png(greeks_figure(consolidated, day))


def events_chart(events: pl.DataFrame, day: dt.date) -> bytes:
    return png(events_figure(events, day))
