"""Cost of our transport (rate limit, timeouts, retries, JSON check) over the bare official client."""

import datetime as dt
import statistics
import time

from polygon import RESTClient

from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.sandbox import market
from spy_pipeline.sandbox.server import SandboxServer

START, END = dt.date(2024, 1, 2), dt.date(2024, 3, 28)
REPEATS = 5


def _bare(client: RESTClient) -> int:
    return sum(1 for _ in client.list_aggs("SPY", 1, "minute", START.isoformat(), END.isoformat(), limit=50_000))


def main() -> None:
    for day in (START, END):
        market.minute_bars("SPY", day)  # warm the market cache outside the timings
    with SandboxServer(api_key="bench-key") as sandbox:
        bare = RESTClient("bench-key", base=sandbox.url)
        ours = PolygonClient("bench-key", sandbox.url, requests_per_minute=None)
        _bare(bare), ours.minute_bars("SPY", START, END)  # warm-up: market generation, connections
        bare_s, ours_s = [], []
        for _ in range(REPEATS):
            started = time.perf_counter()
            rows = _bare(bare)
            bare_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            frame = ours.minute_bars("SPY", START, END)
            ours_s.append(time.perf_counter() - started)
    assert frame.height == rows
    b, o = statistics.median(bare_s), statistics.median(ours_s)
    print(f"minute bars {START}..{END} ({rows:,} bars, median of {REPEATS}):")
    print(f"  official client alone:               {b:6.3f} s  ({rows / b:,.0f} bars/s)")
    print(f"  PolygonClient (transport + polars):  {o:6.3f} s  ({rows / o:,.0f} bars/s)")
    print(f"  ratio ours / bare: {o / b:.2f}x")


if __name__ == "__main__":
    main()
