"""Consolidation of one day (read raw files, join, indicators, IV + greeks, write): ours against a pandas script.

Inputs come from the sandbox for one day: the 50, 500 and 2,000 listed contracts nearest the open (all
expirations; their sparse minute bars as the sandbox makes them), SPY (and the previous trading day's, the
indicator warm-up), I:VIX, the news of both days and the dividends, written as the raw layer the asset reads
(spy_pipeline.io.storage layout and schemas). Preparing them is not timed.

Ours is what the `consolidated` asset does for a day: `lake.consolidation_inputs` + `consolidate_day` + the
atomic Parquet write, in a fresh subprocess per size so that its peak RSS (ru_maxrss) is its own (Linux keeps
ru_maxrss across fork + exec, so the parent holds no data and imports nothing heavy meanwhile; VmHWM, which
exec resets, is recorded as a cross-check); the RSS right after the imports is reported separately. The
first call in that process (numba loading the cached kernels, or compiling them after an edit, the exchange
calendar being built) is reported apart; the figure is the median of the REPEATS calls after it.
After them the write is split (`_write_split`): the columns of one value per minute, and the per-option ones,
each written alone.

The baseline is a straightforward pandas script: pandas reads, merges with the contracts and the SPY minute
frame, `merge_asof` for VIX and news, pandas-ta indicators, and vollib (what `py_vollib` installs) per row for
IV + 5 greeks in a plain loop (the faster of the usual two ways; the analytics note measured `df.apply(axis=1)`
≈ 3x slower). It
runs in a fresh subprocess too. On 50 contracts it runs fully; on the larger sizes its reads, merges and
write run fully and the per-row loop on a random sample of rows, extrapolated to all rows. The sample's IVs
are checked against ours. Figures are merged into bench/results.json under "consolidation".
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from spy_pipeline_tests.bench.results import cpu_seconds, merge_results

if TYPE_CHECKING:  # the parent imports nothing heavy: see _peak_rss_mib
    import polars as pl

    from spy_pipeline.domain.consolidate import DayInputs

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2025, 1, 8)
SIZES = (50, 500, 2_000)
FULL_BASELINE_MAX_CONTRACTS = 50
BASELINE_SAMPLE_ROWS = 20_000
REPEATS = 3
RISK_FREE_RATE = 0.045
GOAL_CONTRACTS, GOAL_SECONDS, GOAL_PEAK_MIB = 2_000, 0.35, 1024.0  # #16: read + consolidate + write
MIB = 1024 * 1024


def _peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM, which exec starts afresh, unlike ru_maxrss, which Linux carries over
    from the parent through fork + exec (under `make bench` the parent has run the other benchmarks)."""
    return _vm_hwm_mib()


def _vm_hwm_mib() -> float:
    """Peak RSS of this process's own address space (VmHWM), which exec starts afresh."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


# --- inputs (not timed) ---------------------------------------------------------------------------------


def _prepare(root: Path, sizes: tuple[int, ...] = SIZES) -> dict[int, Path]:
    """One data dir per size under `root`, each with the raw layer of DAY; returns {contracts: data dir}."""
    import polars as pl

    from spy_pipeline.domain import trading_calendar as cal
    from spy_pipeline.io import lake, storage
    from spy_pipeline.io.bars import minute_bars_by_day
    from spy_pipeline.io.corporate_actions import dividends_frame
    from spy_pipeline.io.ingest import contracts_dataset
    from spy_pipeline.io.news import news_frame
    from spy_pipeline.sandbox import catalog, corporate_actions, options
    from spy_pipeline.sandbox import news as sandbox_news

    def bars(ticker: str, day: dt.date) -> pl.DataFrame:
        return minute_bars_by_day(ticker, catalog.minute_bars(ticker, day), [day])[0].frame

    previous = cal.previous_trading_day(DAY)
    spy = bars("SPY", DAY)
    open_price = float(spy.filter(pl.col("session") == "regular")["open"][0])
    listing = options.listed_contracts(DAY)
    nearest = (
        listing.with_columns(distance=(pl.col("strike_price") - open_price).abs())
        .sort("distance", "ticker")
        .head(max(sizes))
    )
    frames = [bars(ticker, DAY) for ticker in nearest["ticker"]]
    shared = {
        ("spy", DAY): spy,
        ("spy", previous): bars("SPY", previous),
        ("vix", DAY): bars("I:VIX", DAY),
        **{("news", d): news_frame([a.body for a in sandbox_news.articles_on(d)], ["SPY"]) for d in (previous, DAY)},
    }
    declared = [r for r in corporate_actions.all_dividends() if r["declaration_date"] <= DAY.isoformat()]
    dividends = dividends_frame(declared)
    dirs = {}
    for size in sizes:
        data_dir = root / f"contracts_{size}"
        for (dataset, day), frame in shared.items():
            storage.write_parquet_atomic(frame, lake.day_file(data_dir, dataset, day))
        storage.write_parquet_atomic(
            dividends, storage.dataset_dir(data_dir, "raw", "corporate_actions") / "dividends.parquet"
        )
        storage.write_parquet_atomic(contracts_dataset(nearest.head(size)), lake.day_file(data_dir, "contracts", DAY))
        option_bars = pl.concat([f for f in frames[:size] if f.height]).sort("ticker", "timestamp")
        storage.write_parquet_atomic(option_bars, lake.day_file(data_dir, "options", DAY))
        dirs[size] = data_dir
    return dirs


# --- ours (child process) -------------------------------------------------------------------------------


def _child_ours(data_dir: Path) -> dict[str, object]:
    """lake.consolidation_inputs + consolidate_day + write, 1 + REPEATS times in this fresh process."""
    from spy_pipeline.domain.consolidate import consolidate_day
    from spy_pipeline.io import lake, storage

    imports_mib = _peak_rss_mib()
    imports_hwm_mib = _vm_hwm_mib()
    root = storage.as_data_root(data_dir)
    out = lake.day_file(root, "consolidated", DAY)
    runs = []
    rows = 0
    for _ in range(1 + REPEATS):
        started, cpu_started = time.perf_counter(), cpu_seconds()
        inputs = lake.consolidation_inputs(data_dir, DAY, RISK_FREE_RATE)
        read_done = time.perf_counter()
        frame = consolidate_day(inputs)
        consolidated = time.perf_counter()
        root.write_parquet(frame, out)  # as the asset does: the sort-order check, then the atomic write
        written = time.perf_counter()
        runs.append({"read": read_done - started, "consolidate": consolidated - read_done,
                     "write": written - consolidated, "total": written - started,
                     "cpu": cpu_seconds() - cpu_started})
        rows, option_bars = frame.height, inputs.option_bars.height
        del inputs, frame  # freed before the next run, as between two partitions
    peak_rss_mib, peak_vm_hwm_mib = _peak_rss_mib(), _vm_hwm_mib()  # the timed runs' peak, before the split
    inputs = lake.consolidation_inputs(data_dir, DAY, RISK_FREE_RATE)
    split = _write_split(consolidate_day(inputs), inputs, data_dir)
    warm = runs[1:]
    return {
        "rows": rows,
        "option_bars_read": option_bars,
        "first_call_seconds": runs[0]["total"],
        "seconds": statistics.median(r["total"] for r in warm),
        "cpu_seconds": statistics.median(r["cpu"] for r in warm),
        "read_seconds": statistics.median(r["read"] for r in warm),
        "consolidate_seconds": statistics.median(r["consolidate"] for r in warm),
        "write_seconds": statistics.median(r["write"] for r in warm),
        "all_seconds": [round(r["total"], 4) for r in runs],
        "imports_rss_mib": imports_mib,
        "peak_rss_mib": peak_rss_mib,
        "imports_vm_hwm_mib": imports_hwm_mib,
        "peak_vm_hwm_mib": peak_vm_hwm_mib,
        "output_bytes": Path(out).stat().st_size,
        "write_split": split,
    }


def _write_split(frame: pl.DataFrame, inputs: DayInputs, data_dir: Path) -> dict[str, object]:
    """Where the write's time goes: the columns that hold one value per minute (SPY, VIX, indicators, news: the
    same value on every contract's row of that minute; rate and yield: one per day) written alone, and the
    per-option columns written alone, each atomically as the day is, median of REPEATS. What the write would
    cost if the minute's values were stored once per minute rather than on every option row."""
    from spy_pipeline.domain.consolidate import spy_minutes
    from spy_pipeline.io import storage

    minute_or_day = (set(spy_minutes(inputs).columns) - {"timestamp"}) | {"risk_free_rate", "dividend_yield"}
    of_minute = [c for c in frame.columns if c in minute_or_day]
    of_option = [c for c in frame.columns if c not in of_minute]
    figures: dict[str, object] = {"minute_columns": len(of_minute), "option_columns": len(of_option)}
    for name, columns in (("minute", of_minute), ("option", of_option)):
        part, path, seconds = frame.select(columns), data_dir / f"split_{name}.parquet", []
        for _ in range(REPEATS):
            started = time.perf_counter()
            storage.write_parquet_atomic(part, path)
            seconds.append(time.perf_counter() - started)
        figures[f"{name}_write_seconds"] = statistics.median(seconds)
        figures[f"{name}_bytes"] = path.stat().st_size
    return figures


# --- baseline: the pandas script (child process) ---------------------------------------------------------


def _child_baseline(data_dir: Path, sample_rows: int) -> dict[str, object]:
    """A typical pandas consolidation; the per-row vollib loop on `sample_rows` random rows (0: all)."""
    import numpy as np
    import pandas as pd
    import pandas_ta as ta
    from vollib.black_scholes_merton.greeks.analytical import delta, gamma, rho, theta, vega
    from vollib.black_scholes_merton.implied_volatility import implied_volatility

    from spy_pipeline.domain import trading_calendar as cal

    imports_mib = _peak_rss_mib()
    previous = cal.previous_trading_day(DAY)
    raw = data_dir / "raw"
    started = time.perf_counter()
    spy = pd.read_parquet(raw / "spy" / f"{DAY}.parquet")
    spy_previous = pd.read_parquet(raw / "spy" / f"{previous}.parquet")
    vix = pd.read_parquet(raw / "vix" / f"{DAY}.parquet", columns=["timestamp", "close"])
    bars = pd.read_parquet(raw / "options" / f"{DAY}.parquet")
    contracts = pd.read_parquet(raw / "options" / "contracts" / f"{DAY}.parquet")
    news = pd.concat([pd.read_parquet(raw / "news" / f"{d}.parquet") for d in (previous, DAY)])
    dividends = pd.read_parquet(raw / "corporate_actions" / "dividends.parquet")

    regular = spy[spy["session"] == "regular"]
    ex = pd.to_datetime(dividends["ex_dividend_date"])
    window = (dividends["ticker"] == "SPY") & (ex > pd.Timestamp(DAY) - pd.Timedelta(days=365))
    q = float(dividends.loc[window & (ex <= pd.Timestamp(DAY)), "cash_amount"].sum()) / regular["open"].iloc[0]

    # The SPY minute frame: both days' regular sessions on a full minute grid, closes carried forward.
    def grid(frame: pd.DataFrame, day: dt.date) -> pd.DataFrame:
        bounds = cal.session_bounds(day)
        utc = [pd.Timestamp(moment).tz_convert("UTC") for moment in (bounds.open, bounds.close)]
        minutes = pd.date_range(*utc, freq="min", inclusive="left")
        session = frame[frame["session"] == "regular"].set_index("timestamp")
        out = session[["open", "high", "low", "close", "volume", "vwap"]].reindex(minutes)
        out["has_bar"] = out["close"].notna()
        return out.rename_axis("timestamp")

    minutes = pd.concat([grid(spy_previous, previous), grid(spy, DAY)])
    minutes["close"] = minutes["close"].ffill()
    for column in ("open", "high", "low"):
        minutes[column] = minutes[column].fillna(minutes["close"])
    minutes["volume"] = minutes["volume"].fillna(0.0)
    minutes["rsi_14"] = ta.rsi(minutes["close"], length=14, talib=False)
    macd = ta.macd(minutes["close"], fast=12, slow=26, signal=9, talib=False)
    minutes[["macd", "macd_hist", "macd_signal"]] = macd.to_numpy()
    bands = ta.bbands(minutes["close"], length=20, lower_std=2.0, upper_std=2.0, ddof=0, talib=False)
    minutes[["bb_lower", "bb_middle", "bb_upper"]] = bands.iloc[:, :3].to_numpy()
    for k in (5, 30, 60):
        minutes[f"change_{k}m"] = minutes["close"].diff(k)
        minutes[f"roc_{k}m"] = minutes["close"].pct_change(k) * 100
    minutes = minutes[minutes.index >= cal.session_bounds(DAY).open].add_prefix("spy_").reset_index()

    df = bars.merge(contracts[["ticker", "contract_type", "strike", "expiration"]], on="ticker")
    df = df.merge(minutes, on="timestamp").sort_values("timestamp")
    df = pd.merge_asof(df, vix.rename(columns={"close": "vix"}).sort_values("timestamp"), on="timestamp")
    df["known_at"] = df["timestamp"] + pd.Timedelta(minutes=1)
    scored = news.loc[news["sentiment"].notna(), ["published_utc", "sentiment"]].sort_values("published_utc")
    scored["published_utc"] = scored["published_utc"].astype(df["known_at"].dtype)
    df = pd.merge_asof(df, scored, left_on="known_at", right_on="published_utc", tolerance=pd.Timedelta(hours=24))
    expiry = (pd.to_datetime(df["expiration"]) + pd.Timedelta(hours=16)).dt.tz_localize(cal.NEW_YORK)
    df["t"] = (expiry.dt.tz_convert("UTC") - df["timestamp"]).dt.total_seconds() / (365 * 24 * 3600)
    df = df.sort_values(["ticker", "timestamp"]).reset_index(drop=True)
    setup_s = time.perf_counter() - started

    rows = len(df)
    sample = np.arange(rows) if not sample_rows or sample_rows >= rows else np.sort(
        np.random.default_rng(1).choice(rows, sample_rows, replace=False))
    part = df.iloc[sample]
    flags = np.where(part["contract_type"] == "call", "c", "p")
    columns = zip(part["close"], part["spy_close"], part["strike"], part["t"], flags, strict=True)
    started = time.perf_counter()
    results = []
    for price, S, K, t, flag in columns:
        try:
            sigma = implied_volatility(price, S, K, t, RISK_FREE_RATE, q, flag)
        except Exception:  # vollib raises below intrinsic / above the bound: no IV
            results.append((math.nan,) * 6)
            continue
        results.append((sigma, delta(flag, S, K, t, RISK_FREE_RATE, sigma, q),
                        gamma(flag, S, K, t, RISK_FREE_RATE, sigma, q), theta(flag, S, K, t, RISK_FREE_RATE, sigma, q),
                        vega(flag, S, K, t, RISK_FREE_RATE, sigma, q), rho(flag, S, K, t, RISK_FREE_RATE, sigma, q)))
    loop_s = time.perf_counter() - started

    started = time.perf_counter()
    greeks = pd.DataFrame(results, columns=["iv", "delta", "gamma", "theta", "vega", "rho"], index=part.index)
    df = df.join(greeks)
    df.drop(columns=["known_at", "published_utc"]).to_parquet(data_dir / "baseline.parquet")
    write_s = time.perf_counter() - started
    df.loc[sample, ["ticker", "timestamp", "iv"]].to_parquet(data_dir / "baseline_sample.parquet")
    per_row_s = loop_s / len(sample)
    total_s = setup_s + per_row_s * rows + write_s
    return {
        "rows": rows,
        "loop_rows": len(sample),
        "extrapolated": bool(len(sample) < rows),
        "setup_seconds": setup_s,
        "loop_seconds_measured": loop_s,
        "loop_rows_per_s": len(sample) / loop_s,
        "write_seconds": write_s,
        "seconds": total_s,
        "imports_rss_mib": imports_mib,
        "peak_rss_mib_measured": _peak_rss_mib(),
        "peak_vm_hwm_mib_measured": _vm_hwm_mib(),
    }


# --- parent ------------------------------------------------------------------------------------------------


def _run_child(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "spy_pipeline_tests.bench.consolidation", "--child", *args],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    if done.returncode:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_sample(data_dir: Path) -> tuple[int, float]:
    """Rows of the baseline's sample where both have an IV, and the largest IV difference from ours."""
    import polars as pl

    from spy_pipeline.io import lake

    ours = pl.read_parquet(lake.day_file(data_dir, "consolidated", DAY), columns=["ticker", "timestamp", "iv"])
    theirs = pl.read_parquet(data_dir / "baseline_sample.parquet").rename({"iv": "iv_vollib"})
    both = theirs.join(ours, on=["ticker", "timestamp"], how="left")
    assert both["iv"].null_count() == 0, "a baseline row is missing from ours"
    ok = both.filter(pl.col("iv").is_not_nan() & pl.col("iv_vollib").is_not_nan())
    diff = float((ok["iv"] - ok["iv_vollib"]).abs().max() or 0.0)
    return ok.height, diff


def main() -> None:
    # The parent imports nothing heavy and holds no data while the children run: see _peak_rss_mib.
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        dirs = {int(size): Path(path) for size, path in _run_child("prepare", tmp).items()}
        prepare_s = time.perf_counter() - started
        runs = {}
        for size, data_dir in dirs.items():
            sample = 0 if size <= FULL_BASELINE_MAX_CONTRACTS else BASELINE_SAMPLE_ROWS
            runs[size] = (_run_child("ours", str(data_dir)), _run_child("baseline", str(data_dir), str(sample)))
        sizes = []
        for size, (ours, baseline) in runs.items():
            assert baseline["rows"] == ours["rows"], f"{size}: baseline {baseline['rows']} rows, ours {ours['rows']}"
            checked, iv_diff = _check_sample(dirs[size])
            sizes.append({"contracts": size, "ours": ours, "baseline": baseline,
                          "ours_rows_per_s": ours["rows"] / ours["seconds"],
                          "ratio_baseline_over_ours": baseline["seconds"] / ours["seconds"],
                          "iv_checked_rows": checked, "iv_max_abs_diff": iv_diff})

    import numpy as np
    import pandas as pd
    import polars as pl

    print(f"consolidation of {DAY} (read raw Parquet + consolidate_day + write), contracts nearest the open, "
          f"sparse sandbox minute bars; ours: median of {REPEATS} after a first call, fresh process per size:")
    header = (f"  {'contracts':>9s} {'rows':>9s} {'ours s':>8s} {'rows/s':>11s} {'peak RSS MiB':>12s} "
              f"{'imports MiB':>11s} {'1st call s':>10s} {'baseline s':>11s} {'ratio':>7s}")
    print(header)
    for s in sizes:
        ours, base = s["ours"], s["baseline"]
        mark = "*" if base["extrapolated"] else " "
        print(f"  {s['contracts']:9,d} {ours['rows']:9,d} {ours['seconds']:8.3f} {s['ours_rows_per_s']:11,.0f} "
              f"{ours['peak_rss_mib']:12.0f} {ours['imports_rss_mib']:11.0f} {ours['first_call_seconds']:10.3f} "
              f"{base['seconds']:10.1f}{mark} {s['ratio_baseline_over_ours']:6.0f}x")
    for s in sizes:
        ours = s["ours"]
        print(f"  {s['contracts']:,} contracts, ours: read {ours['read_seconds']:.3f} s + consolidate_day "
              f"{ours['consolidate_seconds']:.3f} s + write {ours['write_seconds']:.3f} s "
              f"({ours['cpu_seconds']:.3f} CPU s in all threads), VmHWM "
              f"{ours['peak_vm_hwm_mib']:.0f} MiB; IV vs vollib on {s['iv_checked_rows']:,} baseline rows: "
              f"max |diff| {s['iv_max_abs_diff']:.1e}")
    split = next(s for s in sizes if s["contracts"] == GOAL_CONTRACTS)["ours"]["write_split"]
    print(f"  {GOAL_CONTRACTS:,} contracts, the write split: the {split['minute_columns']} columns of one value per "
          f"minute or day (SPY, VIX, indicators, news, rate, yield; repeated on every contract's row) "
          f"{split['minute_write_seconds']:.3f} s, {split['minute_bytes'] / MIB:.1f} MiB; the "
          f"{split['option_columns']} per-option columns {split['option_write_seconds']:.3f} s, "
          f"{split['option_bytes'] / MIB:.1f} MiB (each written alone, atomically)")
    full = next(s for s in sizes if not s["baseline"]["extrapolated"])
    print(f"  baseline: pandas reads, merges, merge_asof (VIX, news), pandas-ta, per-row vollib IV + 5 greeks in a "
          f"plain loop (≈ {statistics.median(s['baseline']['loop_rows_per_s'] for s in sizes):,.0f} rows/s; "
          f"peak RSS {full['baseline']['peak_rss_mib_measured']:.0f} MiB on {full['contracts']} contracts); "
          f"* = loop timed on {BASELINE_SAMPLE_ROWS:,} random rows and extrapolated to all rows, its reads, merges "
          f"and write timed in full")
    goal = next(s for s in sizes if s["contracts"] == GOAL_CONTRACTS)["ours"]
    met = goal["seconds"] <= GOAL_SECONDS and goal["peak_rss_mib"] <= GOAL_PEAK_MIB
    print(f"  goal: {GOAL_CONTRACTS:,} contracts ({goal['rows']:,} rows) in <= {GOAL_SECONDS:g} s and <= 1 GiB peak: "
          f"{goal['seconds']:.3f} s, {goal['peak_rss_mib']:.0f} MiB ({goal['imports_rss_mib']:.0f} MiB of it "
          f"imports) -> {'met' if met else 'MISSED'}  (inputs prepared in {prepare_s:.0f} s, not timed)")
    merge_results("consolidation", {
        "day": DAY.isoformat(),
        "sizes": sizes,
        "repeats": REPEATS,
        "goal": {"contracts": GOAL_CONTRACTS, "seconds": GOAL_SECONDS, "peak_rss_mib": GOAL_PEAK_MIB, "met": met},
        "note": "ours: lake.consolidation_inputs + consolidate_day + atomic Parquet write, median of repeats after a "
                "first call, fresh process per size, peak RSS = VmHWM including imports; "
                f"baseline: pandas + per-row vollib, loop extrapolated from {BASELINE_SAMPLE_ROWS} random rows above "
                f"{FULL_BASELINE_MAX_CONTRACTS} contracts",
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": {"python": sys.version.split()[0], "polars": pl.__version__, "numpy": np.__version__,
                     "pandas": pd.__version__},
    })


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        if sys.argv[2] == "prepare":
            figures = {str(size): str(path) for size, path in _prepare(Path(sys.argv[3])).items()}
        elif sys.argv[2] == "ours":
            figures = _child_ours(Path(sys.argv[3]))
        else:
            figures = _child_baseline(Path(sys.argv[3]), int(sys.argv[4]))
        print(json.dumps(figures))
    else:
        main()
