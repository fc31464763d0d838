"""The commands a user types: `spy-pipeline run`, `spy-pipeline sandbox serve`, `dagster asset materialize`."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from polygon import RESTClient

from spy_pipeline_tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    (tmp_path / "home").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "SPY_PIPELINE_", "DAGSTER_HOME"))}
    env.update({"SPY_PIPELINE_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home"),
                "SPY_PIPELINE_LOG_FORMAT": "json"}, **extra)
    return env


def test_run_backfills_the_last_trading_days_and_prints_a_summary(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "spy-pipeline"), "run", "--end", "2025-01-10", "--days", "3"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "succeeded" in result.stdout and "3 partitions (2025-01-07 to 2025-01-10)" in result.stdout
    files = sorted((tmp_path / "data" / "raw" / "spy").glob("*.parquet"))
    # 2025-01-06: the indicators' warm-up day; 2025-01-09: market closed
    assert [f.stem for f in files] == ["2025-01-06", "2025-01-07", "2025-01-08", "2025-01-10"]
    consolidated = sorted((tmp_path / "data" / "processed" / "consolidated").glob("*.parquet"))
    assert [f.stem for f in consolidated] == ["2025-01-07", "2025-01-08", "2025-01-10"]
    assert "asset checks:" in result.stdout and " 0 failed" in result.stdout
    for file in files:
        assert str(file) in result.stdout and f"{pl.read_parquet(file).height:,} rows" in result.stdout
    assert "embedded_sandbox" in result.stderr  # said once, in the log
    assert result.stderr.count("embedded_sandbox") == 1
    [line] = [json.loads(line) for line in result.stderr.splitlines() if '"embedded_sandbox"' in line]
    assert line["run_id"] and line["level"] == "info"  # structured logs carry the Dagster run id
    assert any((tmp_path / "home").rglob("*.db")), "runs are recorded in the Dagster instance"


def test_run_with_a_bad_date_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "spy-pipeline"), "run", "--end", "2025-02-30"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "spy-pipeline: malformed date '2025-02-30': expected YYYY-MM-DD"


def test_run_with_bad_configuration_names_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "spy-pipeline"), "run"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env=_env(tmp_path, SPY_PIPELINE_REQUESTS_PER_MINUTE="0"),
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "SPY_PIPELINE_REQUESTS_PER_MINUTE" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sandbox_serve_answers_the_official_client_and_feeds_dagster_cli(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "spy-pipeline"), "sandbox", "serve", "--port", str(port), "--api-key", "cli-key"],
        cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        client = RESTClient("cli-key", base=f"http://127.0.0.1:{port}")
        for _ in range(300):  # up to 30 s: a loaded machine starts Python slowly
            try:
                bars = client.get_aggs("SPY", 1, "day", "2025-01-06", "2025-01-10")
                break
            except Exception:
                time.sleep(0.1)
        assert [b.timestamp for b in bars][:1] and len(bars) == 4
        # The standard Dagster CLI against that server, writing where SPY_PIPELINE_DATA_DIR says.
        env = _env(tmp_path, POLYGON_API_KEY="cli-key", POLYGON_BASE_URL=f"http://127.0.0.1:{port}")
        result = subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "spy_pipeline.definitions",
             "--select", "raw_spy_bars", "--partition-range", "2025-01-07...2025-01-08"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert sorted(p.stem for p in (tmp_path / "data" / "raw" / "spy").glob("*.parquet")) == [
            "2025-01-07", "2025-01-08"]
        assert "cli-key" not in result.stderr + result.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)
