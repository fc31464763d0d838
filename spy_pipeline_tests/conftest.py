"""Shared fixtures: an isolated environment and a real sandbox server on 127.0.0.1."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polygon
import pytest
import urllib3
from dagster import DagsterInstance, materialize

from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline_tests.sandbox_replay import SANDBOX_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = Path(__file__).resolve().parent / "polygon_fixtures"


# `make test`'s parallel workers: which tests share one (spy_pipeline_tests/parallel.py)
pytest_plugins = ["spy_pipeline_tests.parallel"]
# Charts drawn in the test's own process: under parallel test workers a chart pool per range only adds
# interpreter start-ups. test_charts runs the pool itself; `spy-pipeline run` (test_cli) uses the default.
CHART_PROCESSES = ("SPY_PIPELINE_CHART_PROCESSES", "1")
os.environ.setdefault(*CHART_PROCESSES)  # module-scoped fixtures run outside isolated_env


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No outside configuration leaks in: no Polygon key, data and Dagster home in tmp, no .env."""
    for name in list(os.environ):
        if name.startswith(("POLYGON_", "SPY_PIPELINE_", "DAGSTER_HOME")):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("SPY_PIPELINE_DATA_DIR", str(data_dir))
    monkeypatch.setenv(*CHART_PROCESSES)
    monkeypatch.chdir(tmp_path)
    return data_dir


@pytest.fixture
def data_dir(isolated_env: Path) -> Path:
    return isolated_env


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(api_key=SANDBOX_KEY) as server:
        yield server


@pytest.fixture
def sandbox_env(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """Point the pipeline at a test-owned sandbox (as a user would at any Polygon-compatible server)."""
    monkeypatch.setenv("POLYGON_API_KEY", SANDBOX_KEY)
    monkeypatch.setenv("POLYGON_BASE_URL", sandbox.url)
    monkeypatch.setenv("SPY_PIPELINE_REQUESTS_PER_MINUTE", "100000")
    return sandbox


@pytest.fixture
def client(sandbox: SandboxServer) -> polygon.RESTClient:
    """The unmodified official client, pointed at the test's sandbox."""
    return polygon.RESTClient(SANDBOX_KEY, base=sandbox.url)


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    """A plain pool without retries, so every status the sandbox sends is seen as sent."""
    with urllib3.PoolManager(retries=False) as pool:
        yield pool


def fixture_json(name: str) -> Any:
    """One of Polygon's documented responses, from polygon_fixtures/."""
    return json.loads((FIXTURES_DIR / name).read_text())


@contextmanager
def sandbox_lake(tmp_path_factory: pytest.TempPathFactory, day: str) -> Iterator[tuple[Path, DagsterInstance]]:
    """A data dir and an instance ready for `day`: corporate actions and the previous trading day's SPY bars
    (indicator warm-up) materialized from the embedded sandbox. For module-scoped fixtures."""
    from spy_pipeline.definitions import defs
    from spy_pipeline.defs.raw.assets import raw_spy_bars
    from spy_pipeline.defs.raw.reference_assets import corporate_actions
    from spy_pipeline.domain import trading_calendar as cal

    data_dir = tmp_path_factory.mktemp("lake") / "data"
    with pytest.MonkeyPatch.context() as patch, DagsterInstance.ephemeral() as instance:
        patch.setenv("SPY_PIPELINE_DATA_DIR", str(data_dir))
        for name in ("POLYGON_API_KEY", "POLYGON_BASE_URL"):
            patch.delenv(name, raising=False)
        assert materialize([corporate_actions], resources=defs.resources, instance=instance).success
        previous = cal.previous_trading_day(day).isoformat()
        assert materialize([raw_spy_bars], resources=defs.resources, instance=instance, partition_key=previous).success
        yield data_dir, instance
