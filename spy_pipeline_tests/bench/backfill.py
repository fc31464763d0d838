"""One single-run range backfill against one Dagster run per partition, same days, same sandbox."""

import os
import statistics
import tempfile
import time
from pathlib import Path

from dagster import DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox.server import SandboxServer

DAYS = 20  # January 2025: one month of trading days
BARS = [raw_spy_bars, raw_vix_bars]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
REPEATS = 3


def _resources() -> dict[str, object]:
    return {"polygon": PolygonResource(), "store": ParquetStoreResource()}


def main() -> None:
    keys = [d.isoformat() for d in cal.last_trading_days("2025-01-31", DAYS)]
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(api_key="bench-key") as sandbox:
        os.environ.update({
            "SPY_PIPELINE_DATA_DIR": str(Path(tmp) / "data"), "POLYGON_API_KEY": "bench-key",
            "POLYGON_BASE_URL": sandbox.url, "SPY_PIPELINE_REQUESTS_PER_MINUTE": "1000000",
            "SPY_PIPELINE_LOG_LEVEL": "WARNING",
        })
        range_s, per_partition_s = [], []
        for _ in range(REPEATS):
            with DagsterInstance.ephemeral() as instance:
                before = sandbox.request_count()
                started = time.perf_counter()
                materialize(BARS, resources=_resources(), instance=instance, run_config=QUIET, tags={
                    ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]})
                range_s.append(time.perf_counter() - started)
                range_requests = sandbox.request_count() - before
                before = sandbox.request_count()
                started = time.perf_counter()
                for key in keys:
                    materialize(BARS, resources=_resources(), instance=instance, partition_key=key,
                                run_config=QUIET)
                per_partition_s.append(time.perf_counter() - started)
                per_partition_requests = sandbox.request_count() - before
    one, many = statistics.median(range_s), statistics.median(per_partition_s)
    # In-process runs skip the seconds of process start-up a daemon-launched run costs each time, so
    # the time ratio here is a floor; the request ratio is what a 5-per-minute key pays.
    print(f"backfill of {DAYS} trading days of SPY + VIX minute bars (median of {REPEATS}, in-process runs):")
    print(f"  one range run:         {one:6.2f} s  {range_requests:3d} requests "
          f"({range_requests / DAYS:.2f} per partition)")
    print(f"  one run per partition: {many:6.2f} s  {per_partition_requests:3d} requests "
          f"({per_partition_requests / DAYS:.2f} per partition)")
    print(f"  at the free tier (5 requests/minute) the range run waits {max(0, range_requests - 5) * 12:.0f} s, "
          f"the per-partition runs {max(0, per_partition_requests - 5) * 12:.0f} s")
    request_ratio = per_partition_requests / range_requests
    print(f"  ratio per-partition / range: {many / one:.1f}x time, {request_ratio:.0f}x requests")


if __name__ == "__main__":
    main()
