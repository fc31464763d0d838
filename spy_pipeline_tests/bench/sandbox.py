"""How fast the sandbox synthesizes a day of near-the-money option bars (cold caches): the cost a test or a
backfill against the sandbox pays before the first answer."""

import datetime as dt
import time

import polars as pl

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import market, options
from spy_pipeline_tests.bench.results import merge_results

DAY = dt.date(2025, 1, 8)
BUDGET_SECONDS = 4.0  # what a test run can afford per generated day


def main() -> None:
    spot = market.regular_close("SPY", cal.previous_trading_day(DAY))
    listed = options.listed_contracts(DAY).filter(
        ((pl.col("strike_price") / spot - 1).abs() <= 0.05) & (pl.col("expiration_date") <= DAY + dt.timedelta(days=31))
    )
    for cached in (options._priced_bars, options._day_grid, market.price_path, market.vix_minute_bars):
        cached.cache_clear()
    started = time.perf_counter()
    rows = sum(options.option_minute_bars(ticker, DAY).height for ticker in listed["ticker"])
    seconds = time.perf_counter() - started
    print(f"sandbox option bars for {DAY}: {listed.height:,} near-the-money contracts, {rows:,} bars "
          f"in {seconds:.2f} s ({seconds / BUDGET_SECONDS:.2f}x the {BUDGET_SECONDS:.0f} s budget)")
    merge_results("sandbox_option_day", {"contracts": listed.height, "bars": rows, "seconds": round(seconds, 3)})


if __name__ == "__main__":
    main()
