"""A planted API key never reaches logs, exceptions, Dagster's event log, metadata, run config or data files."""

import io
import logging
import os
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource
from spy_pipeline.sandbox.server import SandboxServer

PLANTED = "PLANTED-SECRET-7c41e9d2aa"
WRONG = "WRONG-SECRET-55b0f3e1cc"
RESOURCES = {"polygon": PolygonResource(requests_per_minute=100_000), "store": ParquetStoreResource()}


def _bytes_under(folder: Path) -> list[tuple[Path, bytes]]:
    return [(path, path.read_bytes()) for path in folder.rglob("*") if path.is_file()]


def _capture_project_logs(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO) -> None:
    """Point the project's log handler (configured once per process, perhaps by an earlier test) at `stream`."""
    from spy_pipeline.defs.resources import settings_with_logging

    settings_with_logging()  # configures logging if no earlier test did
    [handler] = [h for h in logging.getLogger().handlers if h.get_name() == "spy_pipeline"]
    monkeypatch.setattr(handler, "stream", stream)


def test_a_planted_key_appears_nowhere_after_a_backfill_with_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SPY_PIPELINE_LOG_FORMAT", "json")
    monkeypatch.setenv("SPY_PIPELINE_LOG_LEVEL", "DEBUG")
    log_output = io.StringIO()
    with SandboxServer(api_key=PLANTED) as sandbox, DagsterInstance.get() as instance:
        monkeypatch.setenv("POLYGON_BASE_URL", sandbox.url)
        monkeypatch.setenv("POLYGON_API_KEY", PLANTED)
        sandbox.faults.burst("/v2/aggs", 429, 2, retry_after_s=0)
        sandbox.faults.burst("/v2/aggs", 503, 1)
        _capture_project_logs(monkeypatch, log_output)
        good = materialize([raw_spy_bars, raw_vix_bars], resources=RESOURCES, instance=instance,
                           partition_key="2025-01-08")
        assert good.success
        monkeypatch.setenv("POLYGON_API_KEY", WRONG)  # a 401: the failure's text must not echo the key either
        bad = materialize([raw_spy_bars], resources=RESOURCES, instance=instance, partition_key="2025-01-07",
                          raise_on_error=False)
        assert not bad.success
        records = [str(entry) for run in (good, bad) for entry in instance.all_logs(run.run_id)]
        runs = [str(instance.get_run_by_id(run.run_id)) for run in (good, bad)]
    captured = capfd.readouterr()
    logs = log_output.getvalue()
    assert "polygon_retry" in logs  # the retries were logged, so the logs were really exercised
    assert any("401" in record for record in records)  # and the failure was recorded
    texts = {"stdout": captured.out, "stderr": captured.err, "project logs": logs, "event log": "\n".join(records),
             "runs and their config": "\n".join(runs)}
    for secret in (PLANTED, WRONG):
        for where, text in texts.items():
            assert secret not in text, f"{where} contains the API key"
        for path, content in _bytes_under(home) + _bytes_under(data_dir):
            assert secret.encode() not in content, f"{path} contains the API key"
    assert os.environ["POLYGON_API_KEY"] == WRONG  # the test planted what it scanned for


ALERT_TOKEN = "PLANTED-ALERT-TOKEN-3f2e9a"
ALERT_PASSWORD = "PLANTED-ALERT-PASS-91ab7c"


def test_planted_alert_url_secrets_appear_nowhere_after_alerts_are_sent_and_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from dagster import asset, build_run_status_sensor_context

    from spy_pipeline.defs.alerts import ALERT_DELIVERIES, NotifierResource, run_failure_alerts
    from spy_pipeline_tests.alert_receiver import AlertReceiver, closed_port

    @asset
    def doomed() -> None:
        raise RuntimeError("planted failure")

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SPY_PIPELINE_LOG_FORMAT", "json")
    monkeypatch.setenv("SPY_PIPELINE_LOG_LEVEL", "DEBUG")
    log_output = io.StringIO()
    notifier = NotifierResource(digest_window_s=0.0, max_attempts=2, wait_s=10.0)
    with AlertReceiver() as receiver, DagsterInstance.get() as instance:
        down = f"json://alertuser:{ALERT_PASSWORD}@127.0.0.1:{closed_port()}/hook/{ALERT_TOKEN}"
        monkeypatch.setenv("SPY_PIPELINE_ALERT_URLS",
                           f"json://alertuser:{ALERT_PASSWORD}@127.0.0.1:{receiver.port}/hook/{ALERT_TOKEN},{down}")
        _capture_project_logs(monkeypatch, log_output)
        result = materialize([doomed], instance=instance, raise_on_error=False, resources=RESOURCES)
        context = build_run_status_sensor_context(
            sensor_name="run_failure_alerts", dagster_event=result.get_run_failure_event(), dagster_instance=instance,
            dagster_run=result.dagster_run, resources={"notifier": notifier},
        ).for_run_failure()
        run_failure_alerts(context)
        records = [str(entry) for entry in instance.all_logs(result.run_id)]
        observations = [str(r) for r in instance.fetch_observations(ALERT_DELIVERIES, limit=10).records]
        run = str(instance.get_run_by_id(result.run_id))
    captured = capfd.readouterr()
    logs = log_output.getvalue()
    assert receiver.paths == [f"/hook/{ALERT_TOKEN}"]  # the planted URL was really used
    assert "alert_delivery_failed" in logs and "json #2" in logs  # and the down one really failed
    assert observations and "json #1: sent" in observations[0] and "json #2: failed" in observations[0]
    texts = {"stdout": captured.out, "stderr": captured.err, "project logs": logs, "event log": "\n".join(records),
             "alert_deliveries observations": "\n".join(observations), "run and its config": run,
             "sensor log": str(context.log)}
    for secret in (ALERT_TOKEN, ALERT_PASSWORD):
        for where, text in texts.items():
            assert secret not in text, f"{where} contains an alert URL secret"
        for path, content in _bytes_under(home):  # the ledger (alerts.sqlite) included
            assert secret.encode() not in content, f"{path} contains an alert URL secret"
    assert any(path.name.startswith("alerts.sqlite") for path, _ in _bytes_under(home))


def test_planted_s3_keys_appear_nowhere_after_flat_file_runs_with_a_403(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    key_id, secret, wrong_id = "AKIDPLANTED7c41e9d2", "S3-PLANTED-SECRET-1b2c3d4e5f", "AKIDWRONG55b0f3e1cc"
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SPY_PIPELINE_LOG_LEVEL", "DEBUG")
    log_output = io.StringIO()
    with SandboxServer(api_key=PLANTED, s3_access_key_id=key_id) as sandbox, DagsterInstance.get() as instance:
        for name, value in {"POLYGON_BASE_URL": sandbox.url, "POLYGON_API_KEY": PLANTED,
                            "POLYGON_FLATFILES_ENDPOINT": sandbox.url, "POLYGON_S3_ACCESS_KEY_ID": key_id,
                            "POLYGON_S3_SECRET_ACCESS_KEY": secret, "SPY_PIPELINE_SOURCE": "flat_files"}.items():
            monkeypatch.setenv(name, value)
        _capture_project_logs(monkeypatch, log_output)
        good = materialize([raw_spy_bars], resources=RESOURCES, instance=instance, partition_key="2025-01-08")
        assert good.success and sandbox.state.flat_files is not None and sandbox.state.flat_files.gets
        monkeypatch.setenv("POLYGON_S3_ACCESS_KEY_ID", wrong_id)  # a 403: its one line names the key, not the keys
        bad = materialize([raw_spy_bars], resources=RESOURCES, instance=instance, partition_key="2025-01-07",
                          raise_on_error=False)
        assert not bad.success
        records = [str(entry) for run in (good, bad) for entry in instance.all_logs(run.run_id)]
        runs = [str(instance.get_run_by_id(run.run_id)) for run in (good, bad)]
    captured = capfd.readouterr()
    assert any("403 Forbidden" in record for record in records)
    texts = [captured.out, captured.err, log_output.getvalue(), "\n".join(records), "\n".join(runs)]
    for planted in (key_id, secret, wrong_id):
        assert not any(planted in text for text in texts)
        for path, content in _bytes_under(home) + _bytes_under(data_dir):
            assert planted.encode() not in content, f"{path} contains an S3 key"
