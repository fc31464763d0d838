"""Flat Files at OPRA scale: GET → landed SPY option partition, against `gzip -dc FILE > /dev/null`.

An OPRA-sized synthetic options day (OPRA_ROWS rows over UNDERLYINGS roots, SPY ~SPY_ROWS rows, look-alike roots
such as SPYG among them, ≥ 100 MB gzipped) is generated once, vectorized, and cached in ~/.cache/spy_pipeline/.
The sandbox serves it over S3; a fresh subprocess GETs it with the pipeline's boto3 client, parses and filters it
(io/flatfiles.read_day) and writes raw/options/{day}.parquet, and reports its time and peak RSS (ru_maxrss of a
process: VmHWM, which exec resets). `gzip -dc` on the same file in the same run is the floor: the
ratio is the figure (goal ≤ 1.5, bar ≤ 2.0). Also printed: the requests for a month of the full chain by source.
Figures are merged into bench/results.json under "flatfiles".
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from spy_pipeline_tests.bench.results import merge_results

DAY = dt.date(2025, 1, 8)
OPRA_ROWS, UNDERLYINGS, SPY_ROWS = 10_500_000, 3_200, 1_000_000
CACHE = Path.home() / ".cache" / "spy_pipeline" / f"opra-synthetic-{DAY}-{OPRA_ROWS}.csv.gz"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _roots(rng: np.random.Generator) -> list[str]:
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    roots = {"SPY", "SPYG", "SPYV", "SPYD", "SPX", "SPXW", "SP"}
    while len(roots) < UNDERLYINGS:
        roots.add("".join(rng.choice(letters, rng.integers(1, 6))))
    return sorted(roots)


def generate(path: Path = CACHE) -> Path:
    """The synthetic OPRA day (cached): every root's contracts, each with bars at random regular-session minutes."""
    if path.exists():
        return path
    rng = np.random.default_rng(13)
    roots = _roots(rng)
    weights = rng.pareto(1.2, len(roots)) + 0.05
    spy = roots.index("SPY")
    weights[spy] = 0
    rows = np.maximum(1, (weights / weights.sum() * (OPRA_ROWS - SPY_ROWS)).astype(np.int64))
    rows[spy] = SPY_ROWS
    bars_per_contract = 200
    contracts = np.maximum(1, rows // bars_per_contract)
    root = np.repeat(np.array(roots, dtype=object), contracts)
    n = root.size
    expiry = rng.choice(np.array(["250108", "250109", "250110", "250117", "250221", "250321"]), n)
    kind = rng.choice(np.array(["C", "P"]), n)
    strike = (rng.integers(100, 1200, n) * 1000).astype(np.int64)
    tickers = pl.Series([f"O:{r}{e}{k}{s:08d}" for r, e, k, s in zip(root, expiry, kind, strike, strict=True)])
    frame = pl.DataFrame({"ticker": tickers}).unique(maintain_order=True)
    per = min(OPRA_ROWS // frame.height + 1, 390)
    open_ns = int(dt.datetime(2025, 1, 8, 14, 30, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    total = frame.height * per
    minute = np.tile(np.arange(per) * 390 // per, frame.height)  # distinct minutes within each contract
    price = np.round(rng.uniform(0.05, 40.0, total), 2)
    day = frame.select(pl.col("ticker").repeat_by(per).explode()).with_columns(pl.DataFrame({
        "volume": rng.integers(1, 500, total),
        "open": price, "close": np.round(price * rng.uniform(0.97, 1.03, total), 2),
        "high": np.round(price * 1.04, 2), "low": np.round(price * 0.96, 2),
        "window_start": open_ns + minute * 60_000_000_000,
        "transactions": rng.integers(1, 40, total),
    }))
    path.parent.mkdir(parents=True, exist_ok=True)
    csv = path.with_suffix(".tmp.csv")
    day.write_csv(csv)
    with open(path.with_suffix(".tmp"), "wb") as out:
        subprocess.run(["gzip", "-6", "-c", str(csv)], stdout=out, check=True)
    csv.unlink()
    os.replace(path.with_suffix(".tmp"), path)
    return path


_CHILD = """
import json, sys, time, datetime as dt
from pathlib import Path
from spy_pipeline.io.flatfiles import read_day
from spy_pipeline.io import storage
from spy_pipeline.polygon.flatfiles import FlatFilesClient
url, key_id, data_dir = sys.argv[1:4]
client = FlatFilesClient(url, "flatfiles", key_id, "secret")
def hwm_mib():  # VmHWM is reset by exec, unlike ru_maxrss (which keeps the parent's peak across fork + exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
baseline = hwm_mib()
started = time.perf_counter()
day = read_day(client, dt.date(2025, 1, 8), option_underlying="SPY")
root = storage.as_data_root(Path(data_dir))
size = root.write_parquet(day.bars, root.partition_path(dt.date(2025, 1, 8), "raw", "options"))
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rows_read": day.rows_read, "spy_rows": day.bars.height,
                  "contracts": day.bars["ticker"].n_unique(), "parquet_bytes": size,
                  "peak_rss_mib": hwm_mib(), "rss_after_imports_mib": baseline}))
"""


def measure() -> dict:
    from spy_pipeline.polygon.flatfiles import OPTIONS_DATASET, object_key
    from spy_pipeline.sandbox.server import SandboxServer

    path = generate()
    started = time.perf_counter()
    subprocess.run(f"gzip -dc {path} > /dev/null", shell=True, check=True)
    gzip_s = time.perf_counter() - started
    with SandboxServer("bench", s3_access_key_id="AKIDBENCH") as server, \
            __import__("tempfile").TemporaryDirectory() as data_dir:
        assert server.state.flat_files is not None
        server.state.flat_files.objects[object_key(OPTIONS_DATASET, DAY)] = path.read_bytes()
        child = subprocess.run([sys.executable, "-c", _CHILD, server.url, "AKIDBENCH", data_dir], check=True,
                               capture_output=True, text=True, cwd=REPO_ROOT,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    landed = json.loads(child.stdout.strip().splitlines()[-1])
    chain_contracts = landed["contracts"]
    return {
        "file_mb": round(path.stat().st_size / 1e6, 1), "gzip_dc_s": round(gzip_s, 2),
        "get_to_landed_s": round(landed["seconds"], 2), "ratio": round(landed["seconds"] / gzip_s, 2),
        "rows_read": landed["rows_read"], "spy_rows": landed["spy_rows"], "spy_contracts": chain_contracts,
        "peak_rss_mib": round(landed["peak_rss_mib"]), "rss_after_imports_mib": round(landed["rss_after_imports_mib"]),
        # a month: 21 days; REST needs the listing (1,000 per page) plus one aggregates request per contract
        "month_requests_flat_files": 21 * 3,
        "month_requests_rest": 21 * (chain_contracts + -(-chain_contracts // 1000)),
    }


def main() -> None:
    figures = measure()
    print("flat files (OPRA-scale synthetic day, sandbox S3):")
    for name, value in figures.items():
        print(f"  {name}: {value}")
    merge_results("flatfiles", figures)


if __name__ == "__main__":
    main()
