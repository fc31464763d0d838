"""`make bench`: run every benchmark and print its figures."""

import logging

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
    # delivery) go to stderr from ERROR up. On the package's logger, not the root's: the resources a bench sets
    # up configure logging again, at the settings' level, and that sets the root's.
    configure_logging(fmt="json")
    logging.getLogger("spy_pipeline").setLevel(logging.ERROR)
    print(machine_line(), flush=True)
    for bench in (backfill, transport, sandbox, greeks, targets, consolidation, lake, streaming, live_scanner,
                  flatfiles, charts):
        bench.main()
