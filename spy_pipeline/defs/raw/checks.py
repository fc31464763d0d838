"""Asset checks on every raw dataset: schema (blocking), validity rules (blocking), coverage, and what Polygon
sent against its baseline (source schema, blocking).

Each check reads the files of the partitions the run materialized (or, run alone, the partition
range it was given, else the latest file) and attaches its figures per file as metadata, so a user
sees why a check failed.
"""

from dagster import AssetChecksDefinition, AssetCheckSeverity, build_column_schema_change_checks

from spy_pipeline.defs.checks import Check, DailyFiles, asset_checks, coverage_check, rules_check, schema_check
from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.flat_file_checks import FLAT_FILE_CHECKS
from spy_pipeline.defs.raw.options_assets import options_contracts, raw_options_bars
from spy_pipeline.defs.raw.reference_assets import corporate_actions, raw_news
from spy_pipeline.defs.source_schema import source_schema_check
from spy_pipeline.domain import quality
from spy_pipeline.io.news import news_window


def _bar_checks(files: DailyFiles, minimum: float) -> list[Check]:
    return [
        schema_check(files),
        rules_check(files, quality.minute_bar_violations,
                    "OHLC consistent, prices positive, timestamps in the day's extended session, "
                    "keys (ticker, timestamp) unique and sorted."),
        coverage_check(files, quality.regular_session_coverage, "coverage", minimum, AssetCheckSeverity.ERROR,
                       f"At least {minimum:.0%} of the regular session's minutes have a bar "
                       "(early closes count 210 minutes)."),
    ]


SPY = DailyFiles(raw_spy_bars, "spy")
VIX = DailyFiles(raw_vix_bars, "vix", optional_source="vix")
CONTRACTS = DailyFiles(options_contracts, "contracts")
OPTION_BARS = DailyFiles(raw_options_bars, "options")
NEWS_FILES = DailyFiles(raw_news, "news", optional_source="news")

RAW_CHECKS: list[AssetChecksDefinition] = [
    *asset_checks([
        *_bar_checks(SPY, minimum=0.95),
        *_bar_checks(VIX, minimum=0.99),
        schema_check(CONTRACTS),
        rules_check(CONTRACTS, lambda frame, _day: quality.contract_violations(frame),
                    "Every ticker parses as OCC and agrees with its type, strike, expiration; tickers unique."),
        schema_check(OPTION_BARS),
        rules_check(OPTION_BARS, quality.minute_bar_violations,
                    "OHLC consistent, prices positive, timestamps in the session, keys (ticker, timestamp) unique."),
        coverage_check(OPTION_BARS, quality.per_ticker_coverage, "median_coverage", 0.5, AssetCheckSeverity.WARN,
                       "Option bars are sparse: a warning (not a failure) when the median contract has bars in "
                       "fewer than half of the regular session's minutes."),
        schema_check(NEWS_FILES),
        rules_check(NEWS_FILES, lambda frame, day: quality.news_violations(frame, news_window(day)),
                    "Article ids unique, published inside the partition's news window, sentiment in {-1, 0, 1}."),
        *FLAT_FILE_CHECKS,
        source_schema_check(raw_spy_bars, "spy", "stock aggregates"),
        source_schema_check(raw_vix_bars, "vix", "index aggregates"),
        source_schema_check(options_contracts, "contracts", "options contracts"),
        source_schema_check(raw_options_bars, "options", "option aggregates"),
        source_schema_check(raw_news, "news", "news"),
        source_schema_check(corporate_actions, "corporate_actions", "dividends, splits"),
    ]),
    *build_column_schema_change_checks(assets=[raw_spy_bars, raw_vix_bars, options_contracts, raw_options_bars,
                                               raw_news]),
]
