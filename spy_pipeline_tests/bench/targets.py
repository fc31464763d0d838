"""Forward targets for a full-chain day: our minute-grid build against the obvious per-row Python loop.

Synthetic day: 2,000 contracts, sparse minute bars (liquid contracts trade in ≈ 93% of minutes, far strikes in
85% down to 15%), ≈ 690k rows, horizon 120. Ours runs in fresh subprocesses, so its peak RSS is its own (the
process's imports and input included, reported separately). The loop is far too slow to run on every row: it is
timed on a random sample of rows and extrapolated (its O(n) setup, the rows-to-tuples conversion and the price
dictionary, is timed in full); its memory is extrapolated from tracemalloc on a smaller sample. The sample's
targets are checked against ours. Figures are merged into bench/results.json under "targets".
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl

from spy_pipeline.domain.targets import forward_targets, target_columns
from spy_pipeline.domain.trading_calendar import session_bounds
from spy_pipeline_tests.bench.results import merge_results

DAY = dt.date(2025, 1, 15)
CONTRACTS = 2_000
HORIZON = 120
REPEATS = 5
LOOP_SAMPLE = 20_000
MEMORY_SAMPLE = 2_000
REPO_ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


def synthetic_day(contracts: int = CONTRACTS, seed: int = 0) -> pl.DataFrame:
    """One day of sparse option minute bars, (ticker, timestamp, close, volume), sorted by ticker and time."""
    rng = np.random.default_rng(seed)
    bounds = session_bounds(DAY)
    minutes = bounds.regular_minutes
    liquid = int(contracts * 0.9)
    traded_share = np.concatenate([np.full(liquid, 0.93), np.linspace(0.85, 0.15, contracts - liquid)])
    present = rng.random((contracts, minutes)) < traded_share[:, None]
    level = rng.uniform(0.05, 30.0, contracts)[:, None]
    walk = np.exp(np.cumsum(rng.normal(0.0, 0.01, (contracts, minutes)), axis=1)) * level
    contract, minute = np.nonzero(present)
    tickers = np.array([f"O:SPY{DAY:%y%m%d}{'CP'[i % 2]}{(450 + i // 2) * 1000:08d}" for i in range(contracts)])
    return pl.DataFrame({
        "ticker": tickers[contract],
        "timestamp": pl.Series(minute.astype(np.int64) * 60_000_000).cast(pl.Duration("us")) + bounds.open,
        "close": np.maximum(np.round(walk[contract, minute], 2), 0.01),
        "volume": rng.integers(1, 500, contract.size).astype(np.float64),
    })


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def _child(path: str, dtype_name: str) -> None:
    """Run ours REPEATS times in this fresh process and print its figures as JSON."""
    frame = pl.read_parquet(path)
    dtype = getattr(pl, dtype_name)
    forward_targets(frame.head(1000), DAY, horizon=HORIZON, dtype=dtype)  # warm-up: calendar, polars kernels
    before = _rss_now_mb()
    seconds, out = [], None
    for _ in range(REPEATS):
        out = None
        started = time.perf_counter()
        out = forward_targets(frame, DAY, horizon=HORIZON, dtype=dtype)
        seconds.append(time.perf_counter() - started)
    assert out is not None
    print(json.dumps({
        "seconds": statistics.median(seconds),
        "rss_before_mb": before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "input_mb": frame.estimated_size() / MB,
        "output_mb": out.estimated_size() / MB,
        "targets_mb": out.select(target_columns(HORIZON)).estimated_size() / MB,
        "rows_out": out.height,
    }))


def _ours(path: Path, dtype_name: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "spy_pipeline_tests.bench.targets", "--child", str(path), dtype_name],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _loop_rows(
    price: dict[tuple[str, dt.datetime], float | None], sample: list[tuple[str, dt.datetime]], close: dt.datetime
) -> list[tuple[str, dt.datetime, list[float | None]]]:
    """What a straightforward implementation does: for each row, look each minute ahead up in a dict."""
    minute = dt.timedelta(minutes=1)
    kept = []
    for ticker, timestamp in sample:
        targets = []
        for k in range(1, HORIZON + 1):
            ahead = timestamp + k * minute
            targets.append(price.get((ticker, ahead)) if ahead < close else None)
        inside = min(HORIZON, (close - timestamp) // minute - 1)
        if inside > 0 and sum(v is not None for v in targets) >= 0.5 * inside:
            kept.append((ticker, timestamp, targets))
    return kept


def _loop(frame: pl.DataFrame) -> tuple[dict[str, float], list[tuple[str, dt.datetime, list[float | None]]]]:
    close = session_bounds(DAY).close
    started = time.perf_counter()
    rows = frame.select("ticker", "timestamp", "close").rows()
    price = {(ticker, timestamp): value for ticker, timestamp, value in rows}
    setup_s = time.perf_counter() - started
    sample = [(ticker, timestamp) for ticker, timestamp, _ in random.Random(1).sample(rows, LOOP_SAMPLE)]
    started = time.perf_counter()
    kept = _loop_rows(price, sample, close)
    per_row_s = (time.perf_counter() - started) / LOOP_SAMPLE
    tracemalloc.start()
    held = _loop_rows(price, sample[:MEMORY_SAMPLE], close)
    per_row_bytes = tracemalloc.get_traced_memory()[0] / MEMORY_SAMPLE
    tracemalloc.stop()
    del held
    total_s = setup_s + per_row_s * frame.height
    return {
        "setup_seconds": setup_s,
        "seconds_extrapolated": total_s,
        "rows_per_s": frame.height / total_s,
        "results_mb_extrapolated": per_row_bytes * frame.height / MB,
    }, kept


def _check(ours: pl.DataFrame, kept: list[tuple[str, dt.datetime, list[float | None]]]) -> None:
    """The loop's sample rows and ours agree (ours rounded to float32 as it stores them)."""
    expected = pl.DataFrame(
        {"ticker": [t for t, _, _ in kept], "timestamp": [ts for _, ts, _ in kept]},
        schema={"ticker": pl.String, "timestamp": pl.Datetime("us", "UTC")},
    )
    got = expected.join(ours, on=["ticker", "timestamp"], how="left", maintain_order="left")
    assert got.height == len(kept)
    for (_, _, targets), row in zip(kept, got.select(target_columns(HORIZON)).iter_rows(), strict=True):
        want = [None if v is None else float(np.float32(v)) for v in targets]
        assert list(row) == want, "loop and forward_targets disagree"


def main() -> None:
    frame = synthetic_day()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bars.parquet"
        frame.write_parquet(path)
        ours = _ours(path, "Float32")
        ours64 = _ours(path, "Float64")
    loop, kept = _loop(frame)
    _check(forward_targets(frame, DAY, horizon=HORIZON), kept)

    rows = frame.height
    ratio = loop["seconds_extrapolated"] / ours["seconds"]
    print(f"forward targets, {DAY}: {CONTRACTS:,} contracts, {rows:,} sparse minute bars "
          f"({rows / (CONTRACTS * 390):.0%} of the minute grid), horizon {HORIZON}, "
          f"{ours['rows_out']:,} rows kept (median of {REPEATS}, fresh process each):")
    print(f"  {'':38s} {'seconds':>9s} {'rows/s':>11s} {'peak RSS MB':>12s} {'frame MB':>9s}")
    print(f"  {'forward_targets float32 (grid+gather)':38s} {ours['seconds']:9.3f} {rows / ours['seconds']:11,.0f} "
          f"{ours['peak_rss_mb']:12.0f} {ours['output_mb']:9.0f}")
    print(f"  {'forward_targets float64':38s} {ours64['seconds']:9.3f} {rows / ours64['seconds']:11,.0f} "
          f"{ours64['peak_rss_mb']:12.0f} {ours64['output_mb']:9.0f}")
    print(f"  {'per-row Python loop (extrapolated*)':38s} {loop['seconds_extrapolated']:9.1f} "
          f"{loop['rows_per_s']:11,.0f} {'':>12s} {loop['results_mb_extrapolated']:9.0f}")
    print(f"  ratio loop / ours: {ratio:,.0f}x; ours' process held {ours['rss_before_mb']:.0f} MB before the call "
          f"(imports + {ours['input_mb']:.0f} MB input); targets alone {ours['targets_mb']:.0f} MB float32, "
          f"{ours64['targets_mb']:.0f} MB float64")
    print(f"  * loop timed on {LOOP_SAMPLE:,} random rows and extrapolated to {rows:,} "
          f"(+ {loop['setup_seconds']:.1f} s setup timed in full); its MB = Python lists of its results, "
          f"from tracemalloc on {MEMORY_SAMPLE:,} rows; the sample's targets agree with ours")
    merge_results("targets", {
        "day": DAY.isoformat(),
        "contracts": CONTRACTS,
        "rows": rows,
        "rows_kept": ours["rows_out"],
        "horizon": HORIZON,
        "repeats": REPEATS,
        "ours_float32": ours,
        "ours_float64": ours64,
        "ours_rows_per_s": rows / ours["seconds"],
        "loop": {**loop, "sample_rows": LOOP_SAMPLE, "memory_sample_rows": MEMORY_SAMPLE},
        "ratio_loop_over_ours": ratio,
        "note": "loop timed on a random sample of rows and extrapolated; ours median of repeats in a fresh process; "
                "peak RSS includes imports and the input frame",
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": {"python": sys.version.split()[0], "polars": pl.__version__, "numpy": np.__version__},
    })


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
    else:
        main()
