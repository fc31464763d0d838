"""Charts: seconds per chart as drawn now against the previous way (constrained layout, the thumbnail drawn again
at a lower DPI), one process against a process per core for a range, and the whole-graph backfill of
`spy-pipeline run --end 2025-02-07 --days 21` (the issue's yardstick) with its phases.

Figures are merged into bench/results.json under "charts".
"""

import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from spy_pipeline.domain import chart_rendering, charts
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.consolidate import consolidate_day
from spy_pipeline.domain.scanner import movement_events
from spy_pipeline_tests.bench.results import cpu_seconds, merge_results
from spy_pipeline_tests.test_consolidate import _inputs

DAY = dt.date(2025, 1, 8)
_new_figure = charts.new_figure  # without margins: the constrained layout the charts used before
RANGE_DAYS = 6
REPEATS = 3
PREVIOUS_THUMBNAIL_DPI = 40
WHOLE_GRAPH = ("--end", "2025-02-07", "--days", "21")


def _day(day: dt.date):
    inputs = _inputs(day, contracts_near_money=40)
    return consolidate_day(inputs), movement_events(inputs.option_bars), day


def _per_chart_seconds(frames, previous: bool) -> dict[str, float]:
    """CPU seconds to build, draw and thumbnail each chart of a day (median of REPEATS)."""
    consolidated, events, day = frames
    session = charts.session_et(day)
    constrained = mock.patch.object(charts, "new_figure", lambda margins=None: _new_figure(None))
    seconds: dict[str, list[float]] = {name: [] for name in charts.DAILY_CHARTS}
    for _ in range(REPEATS):
        for name, (_, build) in charts.DAILY_CHARTS.items():
            started = time.process_time()
            if previous:
                with constrained:
                    figure = build(consolidated, events, day, session)
                charts.png(figure)
                charts.png(figure, dpi=PREVIOUS_THUMBNAIL_DPI)
            else:
                charts.render(build(consolidated, events, day, session))
            seconds[name].append(time.process_time() - started)
    return {name: statistics.median(values) for name, values in seconds.items()}


def _range_seconds(days: list, processes: int) -> float:
    started = time.perf_counter()
    for _ in chart_rendering.render_days(days, processes):
        pass
    return time.perf_counter() - started


def _whole_graph() -> dict[str, object]:
    """`spy-pipeline run` for 21 trading days in a fresh data dir and instance, its phases from its output."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SPY_PIPELINE_DATA_DIR": f"{tmp}/data", "DAGSTER_HOME": f"{tmp}/home"}
        for name in ("POLYGON_API_KEY", "POLYGON_BASE_URL", "POLYGON_S3_ACCESS_KEY_ID", "POLYGON_S3_SECRET_ACCESS_KEY"):
            env.pop(name, None)  # the embedded sandbox
        # the default chart processes, whatever the caller's environment sets
        env.pop("SPY_PIPELINE_CHART_PROCESSES", None)
        load_before = os.getloadavg()[0]
        started, cpu_started = time.perf_counter(), cpu_seconds(children=True)
        run = subprocess.run([str(Path(sys.executable).with_name("spy-pipeline")), "run", *WHOLE_GRAPH], cwd=tmp,
                             env=env, capture_output=True, text=True, timeout=1800)
        wall, cpu = time.perf_counter() - started, cpu_seconds(children=True) - cpu_started
    if run.returncode != 0:
        raise RuntimeError(f"spy-pipeline run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    steps = {name: float(s) for name, s in re.findall(r"^    (\w+): done \(.*?([\d.]+) s\)$", run.stdout, re.M)}
    [summary] = re.findall(r"^Summary: succeeded in ([\d.]+) s", run.stdout, re.M)
    [(chart_processes, per_chart)] = re.findall(
        r"charts of \d+ days in [\d.]+ s with (\d+) process\w* \(([\d.]+) s a chart\)", run.stderr)
    return {"runs_seconds": float(summary), "process_seconds": round(wall, 1), "steps_seconds": steps,
            "seconds_per_chart": float(per_chart), "chart_processes": int(chart_processes),
            "cpu_seconds": round(cpu, 1), "load_average_before": round(load_before, 2)}


def main() -> None:
    frames = _day(DAY)
    now, before = _per_chart_seconds(frames, previous=False), _per_chart_seconds(frames, previous=True)
    print(f"daily charts of {DAY} ({frames[0].height:,} consolidated rows), CPU s per chart with its thumbnail "
          f"(median of {REPEATS}):")
    for name in charts.DAILY_CHARTS:
        print(f"  {name:22s} {now[name]:6.3f} s   previous {before[name]:6.3f} s   {before[name] / now[name]:4.1f}x")
    total_now, total_before = sum(now.values()), sum(before.values())
    print(f"  a day's five charts   {total_now:6.3f} s   previous {total_before:6.3f} s   "
          f"{total_before / total_now:4.1f}x")

    days = [_day(day) for day in cal.last_trading_days(DAY + dt.timedelta(days=7), RANGE_DAYS)]
    processes = chart_rendering.process_count(0, len(days))
    one, many = _range_seconds(days, 1), _range_seconds(days, processes)
    print(f"  {RANGE_DAYS} days: one process {one:.1f} s, {processes} processes {many:.1f} s "
          f"({one / many:.2f}x, {many / (RANGE_DAYS * len(charts.DAILY_CHARTS)):.3f} s a chart)")

    whole = _whole_graph()
    steps = whole["steps_seconds"]
    print(f"spy-pipeline run {' '.join(WHOLE_GRAPH)} (embedded sandbox, fresh data dir): {whole['runs_seconds']} s "
          f"of runs ({whole['process_seconds']} s with start-up, {whole['cpu_seconds']} CPU s, load average "
          f"{whole['load_average_before']} before); daily_charts {steps.get('daily_charts')} s "
          f"({whole['seconds_per_chart']} s a chart, {whole['chart_processes']} processes), "
          f"raw_options_bars {steps.get('raw_options_bars')} s, "
          f"the other steps {sum(v for k, v in steps.items() if k not in ('daily_charts', 'raw_options_bars')):.1f} s")
    merge_results("charts", {
        "cpu_seconds_per_chart": now, "previous_cpu_seconds_per_chart": before,
        "range": {"days": RANGE_DAYS, "one_process_s": round(one, 2), "processes": processes,
                  "processes_s": round(many, 2)},
        "whole_graph_21_days": whole,
    })


if __name__ == "__main__":
    main()
