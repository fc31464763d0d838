"""The commands a user types: `spy-pipeline run`, `spy-pipeline sandbox serve`, `dagster asset materialize`."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from polygon import RESTClient

from spy_pipeline.app.runner import RunSummary, closing_lines
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
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "succeeded" in result.stdout and "3 partitions (2025-01-07 to 2025-01-10)" in result.stdout
    files = sorted((tmp_path / "data" / "raw" / "spy").glob("*.parquet"))
    # 2025-01-09: market closed. 2025-01-06, the first day's indicator warm-up, is read by consolidated
    # from Polygon and not landed: no separate warm-up run, no file Dagster did not materialize.
    assert [f.stem for f in files] == ["2025-01-07", "2025-01-08", "2025-01-10"]
    consolidated = sorted((tmp_path / "data" / "processed" / "consolidated").glob("*.parquet"))
    assert [f.stem for f in consolidated] == ["2025-01-07", "2025-01-08", "2025-01-10"]
    first = pl.read_parquet(consolidated[0])
    assert first.select(pl.col("rsi_14", "macd_signal").null_count()).row(0) == (0, 0)  # warm from the open
    assert "asset checks:" in result.stdout and " 0 failed" in result.stdout
    for file in files:
        assert str(file) in result.stdout and f"{pl.read_parquet(file).height:,} rows" in result.stdout
    assert "embedded_sandbox" in result.stderr  # said once, in the log
    assert result.stderr.count("embedded_sandbox") == 1
    [line] = [json.loads(line) for line in result.stderr.splitlines() if '"embedded_sandbox"' in line]
    assert line["run_id"] and line["level"] == "info"  # structured logs carry the Dagster run id
    assert any((tmp_path / "home").rglob("*.db")), "runs are recorded in the Dagster instance"
    # run from outside the checkout, the instance still gets the project's settings, not Dagster's defaults
    assert (tmp_path / "home" / "dagster.yaml").read_text() == (REPO_ROOT / "dagster.yaml").read_text()
    assert "Telemetry" not in result.stdout + result.stderr and "No dagster instance" not in result.stderr
    _assert_progress_and_closing_summary(result.stdout, tmp_path, days=3)


def _assert_progress_and_closing_summary(stdout: str, tmp_path: Path, days: int) -> None:
    """A line per phase and per finished asset step while the runs go; a short, actionable closing summary."""
    from spy_pipeline.definitions import DAILY_ASSETS

    lines = stdout.splitlines()
    phases = [i for i, line in enumerate(lines) if re.match(r"\[\d/4\] ", line)]
    assert len(phases) == 4
    # the data assets in one run, then the charts in a run of their own (never holding up the data)
    data_steps, chart_steps = lines[phases[1] + 1:phases[2]], lines[phases[2] + 1:phases[3]]
    chart_steps = [line for line in chart_steps if line.startswith("    ")]
    assert sorted(re.match(r"    (\w+): done", line)[1] for line in data_steps + chart_steps) == sorted(
        a.key.to_user_string() for a in DAILY_ASSETS)
    assert [re.match(r"    (\w+): done", line)[1] for line in chart_steps] == ["daily_charts"]
    assert all(re.fullmatch(rf"    \w+: done \({days} partitions, \d+\.\d s\)", line)
               for line in data_steps + chart_steps)
    assert [line.split(":")[0].strip() for line in lines[phases[3] + 1:phases[3] + 3]] == [
        "options_movement_summary", "range_charts"]
    [start] = [i for i, line in enumerate(lines) if line.startswith("Summary: succeeded")]
    summary = lines[start:]
    assert len(summary) <= 9 and phases[-1] < start
    assert summary[-1] == "Browse them: make dev (http://127.0.0.1:3000)"
    assert f"  materialized {days} partitions \N{MULTIPLICATION SIGN} {len(DAILY_ASSETS)} assets" in summary[1]
    per_run = "\n".join(lines[:start])  # each run's own "asset checks: N passed, M failed" line
    passed = sum(int(n) for n in re.findall(r"^  asset checks: (\d+) passed, 0 failed", per_run, re.MULTILINE))
    assert passed > 20 and f"  asset checks: {passed} passed, 0 failed" in summary
    data = tmp_path / "data"
    assert f"  data:   {data}" in summary and data.is_absolute()
    [charts] = [line for line in summary if line.startswith("  charts: ")]
    folder = Path(charts.split()[1])
    assert folder == data / "reports" / "charts" and folder.is_absolute()
    assert sorted(p.name for p in (folder / "range").iterdir()) == ["events_by_hour.png", "volatility.png"]
    assert len([p for p in folder.iterdir() if re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.name)]) == days


def test_closing_summary_says_what_is_missing_after_a_failure(tmp_path: Path) -> None:
    summary = RunSummary(
        ["r1", "r2", "r3"], False, ["2025-01-07", "2025-01-08"], 12.5, [],
        expected_daily_assets=["consolidated", "raw_spy_bars", "raw_vix_bars"],
        daily_materialized={"raw_spy_bars": {"2025-01-07", "2025-01-08"}, "raw_vix_bars": {"2025-01-07"}},
        other_assets=["corporate_actions"], checks_passed=5, checks_failed=1,
    )
    lines = closing_lines(summary, tmp_path / "data", tmp_path / "home")
    assert lines[0].startswith("Summary: FAILED")
    assert lines[1] == ("  materialized 3 of 6 asset partitions (2 partitions \N{MULTIPLICATION SIGN} 3 assets) "
                        "(2025-01-07 to 2025-01-08)")
    assert "  asset checks: 5 passed, 1 failed" in lines
    assert f"  charts: {tmp_path / 'data' / 'reports' / 'charts'}" in lines[-3]
    assert lines[-1] == "Browse them: make dev (http://127.0.0.1:3000)"


def test_run_with_a_bad_date_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "spy-pipeline"), "run", "--end", "2025-02-30"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "spy-pipeline: malformed date '2025-02-30': expected YYYY-MM-DD"


def test_run_with_bad_configuration_names_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "spy-pipeline"), "run"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
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
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert sorted(p.stem for p in (tmp_path / "data" / "raw" / "spy").glob("*.parquet")) == [
            "2025-01-07", "2025-01-08"]
        assert "cli-key" not in result.stderr + result.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)
