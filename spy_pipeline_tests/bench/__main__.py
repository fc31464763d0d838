"""`make bench`: run every benchmark and print its figures."""

from spy_pipeline.logs import configure_logging
from spy_pipeline_tests.bench import (
    backfill,
    charts,
    consolidation,
    flatfiles,
    greeks,
    lake,
    live_scanner,
    sandbox,
    streaming,
    targets,
    transport,
)
from spy_pipeline_tests.bench.results import machine_line

if __name__ == "__main__":
    # figures only: the pipeline's log lines (the live-scanner bench alone logs ~250, one per alert, event and
    # delivery) go to stderr from ERROR up
    configure_logging(level="ERROR", fmt="json")
    print(machine_line(), flush=True)
    for bench in (backfill, transport, sandbox, greeks, targets, consolidation, lake, streaming, live_scanner,
                  flatfiles, charts):
        bench.main()
