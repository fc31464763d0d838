"""Drawing many days' charts: in worker processes side by side, yielded in day order.

A range backfill draws five charts a day, each a few CPU-seconds of matplotlib that one Python process cannot
spread over cores. Here each day is a task for a process pool; the caller reads the days lazily and at most two
days per process are in flight, so a month of a full chain is never held in memory at once.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

import polars as pl

from spy_pipeline.domain import charts

DayInputs = tuple[pl.DataFrame, pl.DataFrame, dt.date]  # consolidated, options_movement events, the day
Rendered = dict[str, tuple[bytes, bytes]]  # chart name -> (PNG, thumbnail PNG)
IN_FLIGHT_PER_PROCESS = 2
# Starting a worker (a fresh interpreter importing polars and matplotlib) costs about as much CPU as drawing a
# day's five charts, so by default a worker is started only for at least this many days.
DAYS_PER_WORKER = 2


def process_count(configured: int, days: int) -> int:
    """Processes to draw `days` days with: `configured` (never more than the days), or when 0 one per CPU core
    with at least DAYS_PER_WORKER days each (2 or 3 days: one process, as fast and without the workers' start)."""
    if configured:
        return max(1, min(configured, days))
    return max(1, min(os.cpu_count() or 1, days // DAYS_PER_WORKER))


def render_days(inputs: Iterable[DayInputs], processes: int) -> Iterator[tuple[dt.date, Rendered]]:
    """(day, its charts) for each of `inputs`, in their order. One process draws in the caller's process."""
    if processes <= 1:
        for consolidated, events, day in inputs:
            yield day, charts.render_day(consolidated, events, day)
        return
    # spawn, not fork: the caller runs threads (Dagster's event machinery, a sandbox server) a fork would copy
    # mid-lock; the workers import only this module's dependencies.
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[tuple[dt.date, Future[Rendered]]] = deque()
    try:
        for consolidated, events, day in inputs:
            # only the columns the charts read cross the process boundary, and the session: no calendar there
            pending.append((day, pool.submit(charts.render_day, consolidated.select(charts.CHART_COLUMNS),
                                             events, day, charts.session_et(day))))
            if len(pending) >= IN_FLIGHT_PER_PROCESS * processes:
                day, future = pending.popleft()
                yield day, future.result()
        while pending:
            day, future = pending.popleft()
            yield day, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
