"""Support for the browser test of the Dagster UI (test_ui_browser.py): an instance with history, `dagster dev`
as a subprocess, the GraphQL endpoint and Debian's Chromium driven by Playwright.

No pytest in here, so the same pieces serve to look at the UI by hand (from the repo root):

    from pathlib import Path
    from spy_pipeline_tests.ui_support import dagster_dev, prepare_instance
    root = Path("/tmp/ui")
    prepare_instance(root / "home", root / "data", end="2025-01-08", days=2)
    with dagster_dev(root / "home", root / "data", root / "dev.log") as server:
        input(f"{server.url} (Enter stops it) ")
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's console scripts: spy-pipeline, dagster
CHROMIUM = Path("/usr/bin/chromium")
MISSING_CHROMIUM = f"{CHROMIUM} not found: run `make browser-binaries` (as root it installs Debian's chromium)"
# Headless, and nothing that reaches out: the machine (and CI) has no internet.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
    "--no-default-browser-check",
]
SERVER_START_TIMEOUT_S = 300.0
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(dagster_home: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of every child process: this instance and data dir, the embedded sandbox (no Polygon
    key or URL, no other project settings leaking in)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("POLYGON_", "SPY_PIPELINE_", "DAGSTER_"))
    }
    env.update(DAGSTER_HOME=str(dagster_home), SPY_PIPELINE_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", **extra)
    return env


def _run(command: list[str], env: Mapping[str, str], what: str, timeout: float) -> str:
    done = subprocess.run(command, cwd=REPO_ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{output[-4000:]}")
    return output


def prepare_instance(dagster_home: Path, data_dir: Path, *, end: str, days: int) -> str:
    """A fresh DAGSTER_HOME (the repo's dagster.yaml) with `days` trading days up to `end` materialized by
    `spy-pipeline run` from the embedded sandbox, and the self-starting automation stopped. Returns the run's
    output."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = child_env(dagster_home, data_dir, SPY_PIPELINE_RUN_END_DATE=end, SPY_PIPELINE_RUN_DAYS=str(days))
    output = _run([str(BIN / "spy-pipeline"), "run"], env, "spy-pipeline run", timeout=900)
    output += _run([sys.executable, "-m", "spy_pipeline_tests.ui_support", "stop-automation"], env,
                   "stopping the schedules and sensors", timeout=600)
    return output


def stop_automation() -> list[str]:
    """Stop every schedule and every sensor but the run-status ones in the instance of DAGSTER_HOME, for the code
    location `dagster dev` loads from the working directory ([tool.dagster] in pyproject.toml, workspace.yaml).

    They start RUNNING by default and would start runs of their own while the UI is looked at: the automation
    condition sensor backfills the trading days of the two weeks before *today* (a 90 s run on two cores) and
    the day that ended at every midnight, the streaming sensors during market hours. Run-status sensors only
    react to runs. This is what `dagster sensor stop NAME` does, for all of them with one code server instead
    of one each."""
    from dagster import __version__
    from dagster._cli.workspace.cli_target import RepositoryOpts, WorkspaceOpts, get_repository_from_cli_opts
    from dagster._core.definitions.sensor_definition import SensorType
    from dagster._core.instance import DagsterInstance

    stopped = []
    with (
        DagsterInstance.get() as instance,
        get_repository_from_cli_opts(instance, __version__, WorkspaceOpts(), RepositoryOpts()) as repository,
    ):
        for schedule in repository.get_schedules():
            instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)
            stopped.append(f"schedule {schedule.name}")
        for sensor in repository.get_sensors():
            if sensor.sensor_type != SensorType.RUN_STATUS:
                instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)
                stopped.append(f"sensor {sensor.name}")
    return stopped


@dataclass
class DagsterDev:
    """`dagster dev` (webserver, daemon, code server) in its own process group."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def wait_until_ready(self, timeout: float = SERVER_START_TIMEOUT_S) -> None:
        """The webserver answers and the code location is loaded (the UI has the asset graph to show)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dagster dev exited with {self.process.returncode} before answering:\n"
                                     f"{self.output()}")
            try:
                entries = self.graphql(LOCATIONS_QUERY, timeout=5)["workspaceOrError"]["locationEntries"]
                states = {entry["name"]: entry["loadStatus"] for entry in entries}
                errors = [entry for entry in entries if (entry.get("locationOrLoadError") or {}).get("message")]
                if errors:
                    raise AssertionError(f"code location failed to load: {errors}\n{self.output()}")
                if states and all(state == "LOADED" for state in states.values()):
                    return
                last = f"code locations {states}"
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        raise AssertionError(f"dagster dev did not answer on {self.url} within {timeout:.0f} s ({last}); its output:\n"
                             f"{self.output()}")

    def stop(self, grace: float = 20.0) -> None:
        """Ctrl-C for `dagster dev` (it then stops the webserver and daemon itself), then SIGKILL for whatever
        of the group is left: code server, run workers."""
        try:
            pgid = os.getpgid(self.process.pid)
        except ProcessLookupError:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait(timeout=30)


def _default_signals() -> None:
    # A child of a non-interactive shell's background job inherits SIGINT ignored, and dagster dev maps SIGTERM
    # to SIGINT's handler: both would be ignored and only SIGKILL would stop it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def dagster_dev(dagster_home: Path, data_dir: Path, log: Path) -> Iterator[DagsterDev]:
    """`dagster dev -h 127.0.0.1 -p <free port>` in the repo root (workspace.yaml, [tool.dagster]), ready to use;
    stopped with its process group at the end in all cases."""
    port = free_port()
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT, env=child_env(dagster_home, data_dir), stdin=subprocess.DEVNULL, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_signals,
        )
    server = DagsterDev(process, port, log)
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()


LOCATIONS_QUERY = """
query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

RUNS_QUERY = """
query ($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId status jobName tags { key value } } } } }
"""


def runs(server: DagsterDev, run_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The instance's runs (or those of `run_ids`), newest first, from the webserver's GraphQL API."""
    variables = {"filter": {"runIds": run_ids} if run_ids else {}}
    return server.graphql(RUNS_QUERY, variables)["runsOrError"]["results"]


def wait_for_run(server: DagsterDev, run_id: str, timeout: float) -> str:
    """The run's final status (SUCCESS, FAILURE, CANCELED)."""
    def finished() -> str | None:
        status = runs(server, [run_id])[0]["status"]
        return status if status in TERMINAL_RUN_STATUSES else None

    return wait_for(finished, timeout, f"run {run_id} to finish")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """Poll until `predicate()` is truthy; its last value otherwise goes into the failure message."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last seen: {value!r})")


if __name__ == "__main__":
    if sys.argv[1:] != ["stop-automation"]:
        sys.exit("usage: python -m spy_pipeline_tests.ui_support stop-automation")
    print("stopped:", ", ".join(stop_automation()))
