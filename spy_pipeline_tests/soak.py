"""Fault soak: the fault matrix of test_fault_tolerance.py repeated with seeded random fault plans, and a
SIGKILL crash-safety check; prints a Markdown table. Loopback only (a SandboxServer on 127.0.0.1).

    .venv/bin/python -m spy_pipeline_tests.soak --runs 3 --kills 10 --max-minutes 20     (make soak)

Every backfill materializes all raw assets (raw_spy_bars, raw_vix_bars, options_contracts,
raw_options_bars, raw_news and their checks) over DAYS, and is classified against a fault-free run:
"equal" (every Parquet file frame-equal), "failed clearly" (the run failed, or a blocking/ERROR check
failed, with a reason), or "silent problem" (a successful run whose files differ: a gap nobody flagged).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from spy_pipeline.sandbox.faults import DRIFT_KINDS, FaultPlan
from spy_pipeline.sandbox.server import SandboxServer

SOAK_KEY = "soak-key-0d3b7c51"
DAYS = ("2025-01-07", "2025-01-08")
RAW_ASSETS = ("raw_spy_bars", "raw_vix_bars", "options_contracts", "raw_options_bars", "raw_news")
# Pages short enough that every list the backfill reads spans several pages (so paging faults bite).
PAGE_CAPS = {"/v2/aggs/": 400, "/v2/aggs/ticker/O:": 60, "/v3/reference/options/contracts": 10,
             "/v2/reference/news": 8}
ENDPOINTS = {
    "spy_bars": "/v2/aggs/ticker/SPY/",
    "vix_bars": "/v2/aggs/ticker/I:VIX/",
    "option_bars": "/v2/aggs/ticker/O:",
    "contracts": "/v3/reference/options/contracts",
    "news": "/v2/reference/news",
}
REPO_ROOT = Path(__file__).resolve().parent.parent
# Contracts a day (options_contracts' max_contracts; 100 by default): each one's bars still span several pages,
# and the faults are about requests, not volume — more contracts only multiply the requests every test makes.
CONTRACTS_PER_DAY = 16
READ_TIMEOUT_S = 1.0  # a "slow" fault sleeps longer than this
SLOW_S = 1.5


@dataclass
class Outcome:
    success: bool
    failures: list[str] = field(default_factory=list)  # step failure messages
    failed_checks: list[str] = field(default_factory=list)  # "check_name (severity)" of checks that did not pass
    step_retries: list[str] = field(default_factory=list)  # errors after which Dagster re-ran a step
    seconds: float = 0.0

    @property
    def reason(self) -> str:
        return "; ".join(self.failures + self.failed_checks)


def new_server() -> SandboxServer:
    server = SandboxServer(api_key=SOAK_KEY).start()
    cap_pages(server.faults)
    return server


def cap_pages(plan: FaultPlan) -> FaultPlan:
    for prefix, size in PAGE_CAPS.items():
        plan.cap_page(prefix, size)
    return plan


def pipeline_env(server: SandboxServer, data_dir: Path) -> dict[str, str]:
    """The environment that points the pipeline at `server` and `data_dir` (nothing else from outside)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "SPY_PIPELINE_"))}
    env.update({
        "POLYGON_API_KEY": SOAK_KEY,
        "POLYGON_BASE_URL": server.url,
        "SPY_PIPELINE_REQUESTS_PER_MINUTE": "100000",
        "SPY_PIPELINE_DATA_DIR": str(data_dir),
        "SPY_PIPELINE_HTTP_READ_TIMEOUT": str(READ_TIMEOUT_S),
        "SPY_PIPELINE_LOG_LEVEL": "ERROR",
    })
    return env


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def backfill(start: str = DAYS[0], end: str = DAYS[-1], fast_step_retries: bool = True) -> Outcome:
    """Materialize every raw asset (and its checks) for [start, end] in one run, in this process.

    fast_step_retries: Dagster's step retries (POLYGON_RETRY_POLICY, the second layer after the client's
    own retries) happen at once instead of 30 s, 90 s, 210 s later; how often they happen is unchanged.
    """
    from unittest import mock

    from dagster import AssetSelection, DagsterInstance, materialize
    from dagster import RetryPolicy as StepRetryPolicy
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from spy_pipeline.definitions import DAILY_ASSETS, defs
    from spy_pipeline.defs.raw.checks import RAW_CHECKS

    began = time.monotonic()
    tags = {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}
    no_delay = mock.patch.object(StepRetryPolicy, "calculate_delay", lambda _self, _attempt: 0)
    with DagsterInstance.ephemeral() as instance, no_delay if fast_step_retries else contextlib.nullcontext():
        result = materialize(
            [*DAILY_ASSETS, *RAW_CHECKS], resources=defs.resources, instance=instance, tags=tags,
            selection=AssetSelection.assets(*RAW_ASSETS), raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}},
                        "ops": {"options_contracts": {"config": {"max_contracts": CONTRACTS_PER_DAY}}}},
        )
        failures = [
            _chain(event.step_failure_data.error)
            for event in result.all_events
            if event.is_step_failure and event.step_failure_data.error is not None
        ]
        step_retries = [
            event.event_specific_data.error.message.strip().splitlines()[0]
            for event in result.all_events
            if event.event_type_value == "STEP_UP_FOR_RETRY" and event.event_specific_data.error is not None
        ]
        failed_checks = [
            f"{evaluation.check_name} ({evaluation.severity.value})"
            for evaluation in result.get_asset_check_evaluations()
            if not evaluation.passed
        ]
    return Outcome(result.success, failures, failed_checks, step_retries, time.monotonic() - began)


def _chain(error: object) -> str:
    """An error's first line and its causes' ("Exceeded max_retries of 3 <- PolygonPayloadError: gave up ...")."""
    lines = []
    while error is not None:
        lines.append(error.message.strip().splitlines()[0])
        error = error.cause
    return " <- ".join(lines)


def run_backfill(server: SandboxServer, data_dir: Path) -> Outcome:
    with environment(pipeline_env(server, data_dir)):
        return backfill()


def snapshot(data_dir: Path) -> dict[str, pl.DataFrame]:
    """Every visible Parquet file under raw/, by path relative to the data dir."""
    return {
        str(path.relative_to(data_dir)): pl.read_parquet(path)
        for path in sorted((data_dir / "raw").rglob("*.parquet"))
        if not path.name.startswith(".")
    }


def differences(expected: dict[str, pl.DataFrame], actual: dict[str, pl.DataFrame]) -> list[str]:
    """What differs between two snapshots, file by file (empty: equal)."""
    found = [f"missing {name}" for name in sorted(expected.keys() - actual.keys())]
    found += [f"unexpected {name}" for name in sorted(actual.keys() - expected.keys())]
    for name in sorted(expected.keys() & actual.keys()):
        want, got = expected[name], actual[name]
        if want.schema != got.schema:
            found.append(f"{name}: schema differs")
        elif want.height != got.height:
            found.append(f"{name}: {got.height} rows instead of {want.height}")
        elif not want.equals(got):
            found.append(f"{name}: same row count, different content")
    return found


def classify(outcome: Outcome, diffs: list[str]) -> str:
    """equal / failed clearly / silent problem (a reason-less failure also counts as a silent problem)."""
    if outcome.success and not outcome.failed_checks:
        return "equal" if not diffs else "silent problem"
    return "failed clearly" if outcome.reason else "silent problem"


# --- the soak -------------------------------------------------------------------------------------

# The drift kinds rename, drop, add or retype a field (the seed picks it) in every item of a faulted answer.
SOAK_KINDS = ("status", "reset", "malformed", "slow", "truncated", "repeat_page", "skip_page", "duplicate_bars",
              "out_of_order_bars", *DRIFT_KINDS)


def soak_faults(runs: int, rate: float, deadline: float, clean: dict[str, pl.DataFrame], root: Path,
                kinds: tuple[str, ...] = SOAK_KINDS) -> list[list]:
    rows = []
    for kind in kinds:
        tally = {"runs": 0, "equal": 0, "failed clearly": 0, "silent problem": 0, "injected": 0}
        examples: list[str] = []
        for run in range(runs):
            if time.monotonic() > deadline:
                break
            seed = 1000 * SOAK_KINDS.index(kind) + run
            server = SandboxServer(api_key=SOAK_KEY).start()
            server.faults = cap_pages(FaultPlan.random(seed, rate, [kind], ENDPOINTS.values(), slow_s=SLOW_S))
            data_dir = Path(tempfile.mkdtemp(dir=root, prefix=f"{kind}-{seed}-"))
            try:
                outcome = run_backfill(server, data_dir)
            finally:
                server.stop()
            diffs = differences(clean, snapshot(data_dir))
            verdict = classify(outcome, diffs)
            tally["runs"] += 1
            tally[verdict] += 1
            tally["injected"] += len(server.faults.injected)
            if verdict != "equal" and len(examples) < 2:
                examples.append(f"seed {seed}: {(outcome.reason or '; '.join(diffs[:2]))[:120]}")
            print(f"  {kind} seed {seed}: {verdict} ({len(server.faults.injected)} faults, {outcome.seconds:.1f} s)",
                  file=sys.stderr, flush=True)
        rows.append([kind, tally["runs"], tally["injected"], tally["equal"], tally["failed clearly"],
                     tally["silent problem"], "<br>".join(examples)])
    return rows


CHILD = """
import sys
from spy_pipeline_tests.soak import backfill
outcome = backfill(sys.argv[1], sys.argv[2])
sys.exit(0 if outcome.success else 1)
"""


def parquet_problems(data_dir: Path) -> list[str]:
    """Visible *.parquet files that do not read with their schema (temp files are hidden dot-files)."""
    from spy_pipeline.domain.schemas import MINUTE_BARS, NEWS, OPTIONS_CONTRACTS

    problems = []
    for path in sorted(data_dir.rglob("*.parquet")):
        if path.name.startswith("."):
            continue
        parts = path.relative_to(data_dir).parts
        schema = {"contracts": OPTIONS_CONTRACTS, "news": NEWS}.get(parts[-2], MINUTE_BARS)
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # any unreadable file is the finding
            problems.append(f"{path.name}: unreadable ({type(exc).__name__})")
            continue
        if frame.schema != schema.polars_schema:
            problems.append(f"{path}: schema differs")
    return problems


def soak_kills(kills: int, seed: int, deadline: float, root: Path, day: str = DAYS[-1]) -> dict[str, object]:
    """Kill a materialization of `day` with SIGKILL at random moments; check the files after each kill."""
    rng = random.Random(seed)
    server = new_server()
    try:
        clean_dir = root / "kill-clean"
        began = time.monotonic()
        subprocess.run([sys.executable, "-c", CHILD, day, day], env=pipeline_env(server, clean_dir), check=True,
                       cwd=REPO_ROOT)
        full_s = time.monotonic() - began
        clean = snapshot(clean_dir)
        data_dir = root / "kill-target"
        done = {"kills": 0, "killed_before_end": 0, "corrupt_after_kill": 0, "reruns_equal": 0, "full_run_s": full_s}
        for _ in range(kills):
            if time.monotonic() > deadline:
                break
            env = pipeline_env(server, data_dir)
            child = subprocess.Popen([sys.executable, "-c", CHILD, day, day], env=env, cwd=REPO_ROOT)
            time.sleep(rng.uniform(0.2, full_s))
            if child.poll() is None:
                done["killed_before_end"] += 1
            child.send_signal(signal.SIGKILL)
            child.wait()
            done["kills"] += 1
            done["corrupt_after_kill"] += len(parquet_problems(data_dir)) > 0
            rerun = subprocess.run([sys.executable, "-c", CHILD, day, day], env=env, cwd=REPO_ROOT)
            done["reruns_equal"] += rerun.returncode == 0 and not differences(clean, snapshot(data_dir))
        return done
    finally:
        server.stop()


def markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="random fault plans per fault mode (1-50)")
    parser.add_argument("--rate", type=float, default=0.15, help="probability of a fault per request")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs in the crash-safety check (0-100)")
    parser.add_argument("--seed", type=int, default=20250107)
    parser.add_argument("--max-minutes", type=float, default=20.0, help="stop starting new runs after this")
    parser.add_argument("--modes", help=f"comma-separated fault modes (default: all of {', '.join(SOAK_KINDS)})")
    args = parser.parse_args(argv)
    runs, kills = max(1, min(args.runs, 50)), max(0, min(args.kills, 100))
    kinds = tuple(args.modes.split(",")) if args.modes else SOAK_KINDS
    if unknown := [kind for kind in kinds if kind not in SOAK_KINDS]:
        parser.error(f"unknown fault modes {unknown}: one of {', '.join(SOAK_KINDS)}")
    deadline = time.monotonic() + 60 * args.max_minutes
    with tempfile.TemporaryDirectory(prefix="spy-soak-") as tmp:
        root = Path(tmp)
        server = new_server()
        try:
            clean_outcome = run_backfill(server, root / "clean")
        finally:
            server.stop()
        if not clean_outcome.success or clean_outcome.failed_checks:
            print(f"the fault-free run failed: {clean_outcome.reason}", file=sys.stderr)
            return 1
        clean = snapshot(root / "clean")
        rows = soak_faults(runs, args.rate, deadline, clean, root, kinds)
        crash = soak_kills(kills, args.seed, deadline, root / "kills")
    print(f"## Fault soak: all raw assets over {DAYS[0]}..{DAYS[-1]}, fault rate {args.rate} per request\n")
    print(markdown(["fault mode", "runs", "faults injected", "equal to fault-free", "failed clearly",
                    "silent problems", "examples"], rows))
    print(f"\n## Crash safety: SIGKILL during a materialization of {DAYS[-1]}\n")
    print(markdown(["kills", "killed before the end", "corrupt Parquet visible after a kill", "reruns equal to clean",
                    "fault-free run (s)"],
                   [[crash["kills"], crash["killed_before_end"], crash["corrupt_after_kill"], crash["reruns_equal"],
                     f"{crash['full_run_s']:.1f}"]]))
    silent = sum(row[5] for row in rows)
    return 1 if silent or crash["corrupt_after_kill"] or crash["reruns_equal"] != crash["kills"] else 0


if __name__ == "__main__":
    sys.exit(main())
