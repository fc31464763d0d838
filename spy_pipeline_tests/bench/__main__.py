"""`make bench`: run every benchmark and print its figures."""

from spy_pipeline_tests.bench import (
    backfill,
    consolidation,
    flatfiles,
    greeks,
    lake,
    sandbox,
    streaming,
    targets,
    transport,
)

if __name__ == "__main__":
    for bench in (backfill, transport, sandbox, greeks, targets, consolidation, lake, streaming, flatfiles):
        bench.main()
