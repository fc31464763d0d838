"""Storage operations: retention (plan, dry run, removal, the rules nothing overrides), the storage report,
their Dagster shells, and `spy-pipeline status`."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from dagster import (
    AssetCheckResult,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    asset,
    asset_check,
    build_schedule_context,
    materialize,
)

from spy_pipeline.app.status import collect_status, format_status
from spy_pipeline.defs.operations import OPERATIONS_ASSETS, OPERATIONS_JOBS, OPERATIONS_SCHEDULES, storage_report
from spy_pipeline.defs.operations.retention import RETENTION_OP, build_retention_schedule, retention_job
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.io.retention import (
    DEFAULT_RETENTION_DAYS,
    RetentionError,
    apply_retention,
    plan_retention,
    resolve_retention_days,
)
from spy_pipeline.io.storage_report import build_storage_report

BIN = Path(sys.executable).parent
TODAY = dt.date(2025, 1, 15)  # a Wednesday
NOW = dt.datetime(2025, 1, 15, 12, 0, tzinfo=cal.NEW_YORK)
DAYS = {"raw": 30, "stream": 7, "processed": 10, "reports": 20, "logs": 5}


def _put(root: Path, relative: str, content: bytes = b"data", age_days: float | None = None) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if age_days is not None:
        moment = NOW.timestamp() - age_days * 86_400
        os.utime(path, (moment, moment))
    return path


def _tree(root: Path) -> dict[str, int]:
    """Every entry below root (symlinks as links, not followed) and its size."""
    entries = {}
    for folder, subfolders, names in os.walk(root):
        for name in subfolders + names:
            path = Path(folder) / name
            entries[str(path.relative_to(root))] = path.lstat().st_size if not path.is_dir() else -1
    return entries


EXPECTED_REMOVALS = {
    "raw/spy/2024-11-01.parquet",
    "raw/options/2024-11-01.parquet",
    "raw/options/contracts/2024-11-01.parquet",
    "stream/spy/2025-01-01/batch-0001.parquet",
    "stream/spy/2025-01-01/batch-0002.json",
    "stream/spy/2025-01-01",
    "stream/spy/2024-12-02/batch.parquet",
    "stream/vix/2024-12-01",
    "processed/features/2024-12-01.parquet",
    "reports/old_summary.csv",
    "logs/pipeline.log",
    "logs/2025-01-01.jsonl",
}


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path]:
    data, outside = tmp_path / "data", tmp_path / "outside"
    for relative in ("raw/spy/2024-11-01.parquet", "raw/options/2024-11-01.parquet",
                     "raw/options/contracts/2024-11-01.parquet", "processed/features/2024-12-01.parquet"):
        _put(data, relative, b"old" * 100)
    for relative in ("raw/spy/2025-01-14.parquet", "raw/spy/2025-01-15.parquet", "raw/spy/2025-02-03.parquet",
                     "processed/features/2025-01-06.parquet", "stream/spy/2025-01-10/batch.parquet",
                     "stream/spy/2025-01-15/batch.parquet", "logs/2025-01-14.log"):
        _put(data, relative)  # recent, today, future
    # never: reference data, non-data files, hidden temporaries, undated data, however old
    _put(data, "raw/corporate_actions/dividends.parquet", age_days=4000)
    _put(data, "raw/corporate_actions/2015-01-02.parquet", age_days=4000)
    _put(data, "raw/spy/2024-11-01.txt", age_days=100)
    _put(data, "raw/spy/.2024-11-01.parquet.x1y2.tmp", age_days=100)
    _put(data, "raw/spy/undated.parquet", age_days=100)
    _put(data, "reports/notes.md", age_days=100)
    # stream micro-batches: an old day (folder goes too), an old day holding a non-data file, an empty old day
    _put(data, "stream/spy/2025-01-01/batch-0001.parquet", b"x" * 10)
    _put(data, "stream/spy/2025-01-01/batch-0002.json", b"{}")
    _put(data, "stream/spy/2024-12-02/batch.parquet")
    _put(data, "stream/spy/2024-12-02/README.md")
    (data / "stream/vix/2024-12-01").mkdir(parents=True)
    # undated reports and logs: by mtime
    _put(data, "reports/old_summary.csv", age_days=40)
    _put(data, "reports/new_summary.csv", age_days=2)
    _put(data, "logs/pipeline.log", age_days=10)
    _put(data, "logs/recent.log", age_days=1)
    _put(data, "logs/2025-01-01.jsonl")
    # symlinks pointing outside: an old-dated file link, and a folder link full of old files
    target = _put(outside, "2000-01-03.parquet", age_days=9000)
    _put(outside, "spy/2000-01-03.parquet", age_days=9000)
    (data / "raw/spy/2000-01-04.parquet").symlink_to(target)
    (data / "raw/linked").symlink_to(outside / "spy", target_is_directory=True)
    (data / "stream/ext").symlink_to(outside, target_is_directory=True)
    return data, outside


def test_a_dry_run_lists_the_old_files_of_each_category_and_removes_nothing(planted: tuple[Path, Path]) -> None:
    data, outside = planted
    before, outside_before = _tree(data), _tree(outside)
    plan = plan_retention(data, TODAY, DAYS, now=NOW)
    listed = apply_retention(plan, dry_run=True)
    assert {r.relative for r in listed} == EXPECTED_REMOVALS
    assert {r.category for r in listed} == {"raw", "stream", "processed", "reports", "logs"}
    assert _tree(data) == before and _tree(outside) == outside_before
    spy = next(r for r in listed if r.relative == "raw/spy/2024-11-01.parquet")
    assert (spy.dataset, spy.kind, spy.bytes, spy.day, spy.basis) == ("raw/spy", "file", 300, dt.date(2024, 11, 1),
                                                                      "name")
    report = next(r for r in listed if r.relative == "reports/old_summary.csv")
    assert (report.basis, report.day, report.age_days) == ("mtime", None, 40)
    batch = next(r for r in listed if r.relative == "stream/spy/2025-01-01/batch-0001.parquet")
    assert (batch.dataset, batch.day) == ("stream/spy", dt.date(2025, 1, 1))


def test_a_real_run_removes_exactly_the_old_files_and_keeps_everything_else(planted: tuple[Path, Path]) -> None:
    data, outside = planted
    before, outside_before = _tree(data), _tree(outside)
    removed = apply_retention(plan_retention(data, TODAY, DAYS, now=NOW), dry_run=False)
    assert {r.relative for r in removed} == EXPECTED_REMOVALS
    assert sum(r.bytes for r in removed) == 4 * 300 + 10 + 2 + 4 + 4 + 4 + 4
    after = _tree(data)
    assert set(before) - set(after) == EXPECTED_REMOVALS
    assert all(after[path] == size for path, size in before.items() if path in after)
    for kept in ("raw/spy/2025-01-14.parquet", "raw/spy/2025-01-15.parquet", "raw/spy/2025-02-03.parquet",
                 "raw/corporate_actions/dividends.parquet", "raw/corporate_actions/2015-01-02.parquet",
                 "raw/spy/2024-11-01.txt", "raw/spy/.2024-11-01.parquet.x1y2.tmp", "raw/spy/undated.parquet",
                 "stream/spy/2024-12-02/README.md", "stream/spy/2025-01-10/batch.parquet", "reports/notes.md",
                 "reports/new_summary.csv", "logs/recent.log", "logs/2025-01-14.log"):
        assert (data / kept).is_file(), kept
    # symlinks are neither followed nor removed; what they point to is untouched
    for link in ("raw/spy/2000-01-04.parquet", "raw/linked", "stream/ext"):
        assert (data / link).is_symlink(), link
    assert _tree(outside) == outside_before
    # dataset and category folders stay, even when emptied
    assert (data / "raw/options/contracts").is_dir() and (data / "stream/vix").is_dir()
    # a second run finds nothing
    assert plan_retention(data, TODAY, DAYS, now=NOW) == []


def test_the_current_trading_day_is_kept_on_a_weekend_even_with_one_day_of_retention(tmp_path: Path) -> None:
    sunday = dt.date(2025, 1, 12)  # the current trading day is Friday 2025-01-10 (2025-01-09: market closed)
    for day in ("2025-01-08", "2025-01-10", "2025-01-11", "2025-01-12", "2025-01-13"):
        _put(tmp_path, f"stream/spy/{day}/batch.parquet")
        _put(tmp_path, f"processed/training/{day}.parquet")
    plan = plan_retention(tmp_path, sunday, {"stream": 1, "processed": 1}, now=NOW)
    assert sorted(r.relative for r in plan) == [
        "processed/training/2025-01-08.parquet", "stream/spy/2025-01-08", "stream/spy/2025-01-08/batch.parquet",
    ]
    apply_retention(plan, dry_run=False)
    assert sorted(p.name for p in (tmp_path / "stream/spy").iterdir()) == [
        "2025-01-10", "2025-01-11", "2025-01-12", "2025-01-13"]


def test_a_folder_swapped_for_a_symlink_after_planning_is_not_deleted_through(planted: tuple[Path, Path]) -> None:
    data, outside = planted
    plan = plan_retention(data, TODAY, DAYS, now=NOW)
    moved = outside / "moved_options"
    (data / "raw/options").rename(moved)
    (data / "raw/options").symlink_to(moved, target_is_directory=True)
    removed = {r.relative for r in apply_retention(plan, dry_run=False)}
    assert "raw/options/2024-11-01.parquet" not in removed and "raw/options/contracts/2024-11-01.parquet" not in removed
    assert (moved / "2024-11-01.parquet").is_file() and (moved / "contracts/2024-11-01.parquet").is_file()
    assert "raw/spy/2024-11-01.parquet" in removed


def test_extra_log_roots_are_cleaned_by_mtime_and_must_be_outside_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "repo" / "data"
    data.mkdir(parents=True)
    storage = tmp_path / "repo" / ".dagster_home" / "storage"
    _put(storage, "run-1/compute_logs/step.err", b"e" * 7, age_days=45)
    _put(storage, "run-1/compute_logs/step.complete", b"", age_days=45)
    _put(storage, "run-1/step/result", b"pickle", age_days=45)  # an IO manager output: no log suffix
    _put(storage, "run-2/compute_logs/step.out", age_days=3)
    plan = plan_retention(data, TODAY, now=NOW, extra_log_roots=[storage])
    assert sorted(r.relative for r in plan) == ["run-1/compute_logs/step.complete", "run-1/compute_logs/step.err"]
    assert {(r.category, r.dataset) for r in plan} == {("logs", str(storage.resolve()))}
    for unsafe in (tmp_path / "repo", data, data / "raw", Path("/")):
        (data / "raw").mkdir(exist_ok=True)
        with pytest.raises(RetentionError):
            plan_retention(data, TODAY, now=NOW, extra_log_roots=[unsafe])


def test_retention_days_are_validated() -> None:
    assert resolve_retention_days() == DEFAULT_RETENTION_DAYS == {
        "raw": 3650, "stream": 7, "processed": 730, "reports": 365, "logs": 30}
    assert resolve_retention_days({"stream": 2})["stream"] == 2
    for bad in ({"raw": 0}, {"raw": -1}, {"raw": 1.5}, {"raw": True}, {"archive": 5}):
        with pytest.raises(RetentionError):
            resolve_retention_days(bad)


def _text_frame(rows: int, seed: int) -> pl.DataFrame:
    return pl.DataFrame({
        "id": list(range(seed, seed + rows)),
        "text": [f"contract {seed + i} traded near the money with repeated words words words" for i in range(rows)],
    })


@pytest.fixture
def parquet_tree(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for day in ("2025-01-06", "2025-01-07", "2025-01-08", "2025-01-10"):  # 2025-01-09: market closed
        _text_frame(5_000, int(day[-2:]) * 10_000).write_parquet(_put(data, f"raw/spy/{day}.parquet"))
    _text_frame(100, 1).write_parquet(_put(data, "processed/features/2024-12-31.parquet"))
    _text_frame(50, 2).write_parquet(_put(data, "stream/spy/2025-01-10/batch-1.parquet"))
    _text_frame(60, 3).write_parquet(_put(data, "stream/spy/2025-01-10/batch-2.parquet"))
    _put(data, "reports/options_movement_summary_2025-01-06_2025-01-10.csv", b"figure,value\nevents,3\n")
    _put(data, "raw/vix/2025-01-10.parquet", b"not parquet at all")
    outside = _put(tmp_path, "outside/2025-01-03.parquet", b"o" * 1000)
    (data / "raw/spy/2025-01-03.parquet").symlink_to(outside)  # neither followed nor counted
    return data


def _sizes(data: Path, folder: str) -> int:
    return sum(p.stat().st_size for p in (data / folder).rglob("*") if p.is_file() and not p.is_symlink())


def test_storage_report_counts_bytes_per_dataset_and_month_and_compression(parquet_tree: Path) -> None:
    data = parquet_tree
    report = build_storage_report(data)
    by_dataset = {row["dataset"]: row for row in report.by_dataset.iter_rows(named=True)}
    assert set(by_dataset) == {"raw/spy", "raw/vix", "processed/features", "stream/spy", "reports"}
    for dataset in by_dataset:
        assert by_dataset[dataset]["bytes"] == _sizes(data, dataset), dataset
    assert by_dataset["raw/spy"]["files"] == 4 and by_dataset["raw/spy"]["partitions"] == 4
    assert by_dataset["stream/spy"]["files"] == 2 and by_dataset["stream/spy"]["partitions"] == 1
    assert by_dataset["raw/spy"]["first_day"] == dt.date(2025, 1, 6)
    assert report.totals["bytes"] == _sizes(data, ".") and report.totals["files"] == 9
    months = {row["month"]: row for row in report.by_month.iter_rows(named=True)}
    assert list(months) == ["2024-12", "2025-01", "undated"]
    assert months["2024-12"]["bytes"] == _sizes(data, "processed/features")
    assert months["undated"]["bytes"] == _sizes(data, "reports")
    assert months["2025-01"]["files"] == 7
    compression = {row["dataset"]: row for row in report.compression.iter_rows(named=True)}
    assert "raw/vix" not in compression and report.totals["unreadable_parquet_files"] == 1
    assert compression["raw/spy"]["parquet_bytes"] == _sizes(data, "raw/spy")
    assert compression["raw/spy"]["compression_ratio"] > 1.5
    growth = {row["dataset"]: row for row in report.growth.iter_rows(named=True)}
    assert report.window == cal.last_trading_days(dt.date(2025, 1, 10), 20) and len(report.window) == 20
    assert growth["raw/spy"]["partitions"] == 4
    assert growth["raw/spy"]["avg_bytes_per_partition"] == pytest.approx(_sizes(data, "raw/spy") / 4)
    assert growth["raw/spy"]["bytes_per_trading_day"] == pytest.approx(_sizes(data, "raw/spy") / 20)
    assert growth["stream/spy"]["avg_bytes_per_partition"] == _sizes(data, "stream/spy")
    assert growth["processed/features"]["partitions"] == 1  # 2024-12-31 is inside the 20 trading days
    assert "reports" not in growth


def test_storage_report_of_a_missing_data_dir_is_empty(tmp_path: Path) -> None:
    report = build_storage_report(tmp_path / "nothing")
    assert report.files.is_empty() and report.growth.is_empty() and report.totals["bytes"] == 0


def test_storage_report_asset_puts_the_figures_in_its_metadata(parquet_tree: Path) -> None:
    result = materialize([storage_report], resources={"store": ParquetStoreResource(data_dir=str(parquet_tree))})
    assert result.success
    metadata = result.asset_materializations_for_node("storage_report")[0].metadata
    assert metadata["total_bytes"].value == _sizes(parquet_tree, ".")
    assert "| raw/spy | 4 |" in metadata["by_dataset"].value
    assert "| 2024-12 | 1 |" in metadata["by_month"].value
    assert "raw/spy" in metadata["compression"].value and metadata["compression_ratio"].value > 1
    assert "2025-01-10" in metadata["growth_per_trading_day"].value
    assert storage_report in OPERATIONS_ASSETS
    assert storage_report.group_names_by_key[storage_report.key] == "operations"


def test_the_retention_job_dry_runs_by_default_and_removes_when_told(tmp_path: Path) -> None:
    data = tmp_path / "data"
    today = dt.datetime.now(cal.NEW_YORK).date()
    old_raw = _put(data, f"raw/spy/{today - dt.timedelta(days=4000)}.parquet", b"r" * 50)
    old_stream = _put(data, f"stream/spy/{today - dt.timedelta(days=30)}/batch.parquet", b"s" * 5)
    kept = [_put(data, f"raw/spy/{today}.parquet"), _put(data, f"stream/spy/{today}/batch.parquet"),
            _put(data, f"processed/features/{today - dt.timedelta(days=100)}.parquet")]
    resources = {"store": ParquetStoreResource(data_dir=str(data))}

    def run(config: dict):
        result = retention_job.execute_in_process(run_config={"ops": {RETENTION_OP: {"config": config}}},
                                                  resources=resources)
        assert result.success
        output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
        return result.output_for_node(RETENTION_OP), output.step_output_data.metadata

    summary, metadata = run({})
    assert summary == {"dry_run": True, "files": 2, "folders": 1, "bytes": 55}
    assert metadata["dry_run"].value is True and "| raw | raw/spy | 1 | 0 |" in metadata["by_dataset"].value
    assert old_raw.exists() and old_stream.exists()
    summary, metadata = run({"dry_run": False, "processed_days": 50})
    assert summary == {"dry_run": False, "files": 3, "folders": 1, "bytes": 59}
    assert not old_raw.exists() and not old_stream.parent.exists() and not kept[2].exists()
    assert all(path.exists() for path in kept[:2])
    assert retention_job in OPERATIONS_JOBS


def test_the_operations_objects_load_beside_the_platform_definitions() -> None:
    from spy_pipeline.definitions import defs

    merged = Definitions.merge(
        defs, Definitions(assets=OPERATIONS_ASSETS, jobs=OPERATIONS_JOBS, schedules=OPERATIONS_SCHEDULES)
    )
    Definitions.validate_loadable(merged)
    assert merged.resolve_job_def("retention") is not None
    assert merged.resolve_schedule_def("weekly_retention").job_name == "retention"


def test_the_weekly_schedule_is_a_dry_run_on_sunday_morning_in_new_york() -> None:
    [schedule] = OPERATIONS_SCHEDULES
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 3 * * 0", "America/New_York")
    assert schedule.job_name == "retention"
    [request] = schedule.evaluate_tick(build_schedule_context()).run_requests
    config = request.run_config["ops"][RETENTION_OP]["config"]
    assert config["dry_run"] is True and config["stream_days"] == 7 and config["raw_days"] == 3650
    deleting = build_retention_schedule(dry_run=False, retention_days={"stream": 3})
    [request] = deleting.evaluate_tick(build_schedule_context()).run_requests
    assert request.run_config["ops"][RETENTION_OP]["config"]["dry_run"] is False
    assert request.run_config["ops"][RETENTION_OP]["config"]["stream_days"] == 3


days_partitions = DailyPartitionsDefinition(start_date="2025-01-01")


@asset(partitions_def=days_partitions)
def tiny_daily() -> None:
    return None


@asset_check(asset=tiny_daily)
def tiny_daily_is_never_good() -> AssetCheckResult:
    return AssetCheckResult(passed=False, description="planted failure")


@asset
def tiny_reference() -> None:
    return None


def test_status_shows_partitions_failed_checks_and_runs(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        for day in ("2025-01-03", "2025-01-02"):
            assert materialize([tiny_daily], instance=instance, partition_key=day).success
        materialize([tiny_daily, tiny_daily_is_never_good], instance=instance, partition_key="2025-01-06",
                    raise_on_error=False)
        definitions = Definitions(assets=[tiny_daily, tiny_reference], asset_checks=[tiny_daily_is_never_good],
                                  jobs=[retention_job], resources={"store": ParquetStoreResource()})
        status = collect_status(instance, definitions)
    daily = next(a for a in status.assets if a.asset == "tiny_daily")
    assert (daily.partitions, daily.first, daily.last) == (3, "2025-01-02", "2025-01-06")
    reference = next(a for a in status.assets if a.asset == "tiny_reference")
    assert (reference.partitioned, reference.partitions, reference.last_materialized) == (False, 0, None)
    [failed] = status.failed_checks
    assert (failed.asset, failed.check, failed.description) == ("tiny_daily", "tiny_daily_is_never_good",
                                                                "planted failure")
    runs = {run.job: run for run in status.runs}
    assert runs["retention"].status == "never run" and runs["__ephemeral_asset_job__"].status == "SUCCESS"
    text = format_status(status)
    assert "tiny_daily" in text and "2025-01-02" in text and "tiny_daily_is_never_good" in text
    assert "__ephemeral_asset_job__  SUCCESS" in text


def test_status_command_reads_dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spy_pipeline.definitions import defs
    from spy_pipeline.defs.raw.assets import raw_spy_bars

    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        assert materialize([raw_spy_bars], instance=instance, partition_key="2025-01-08",
                           resources=defs.resources).success
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "SPY_PIPELINE_"))}
    env.update({"DAGSTER_HOME": str(home), "SPY_PIPELINE_DATA_DIR": str(data)})
    result = subprocess.run([str(BIN / "spy-pipeline"), "status"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"Dagster instance: {home.resolve()}" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("raw_spy_bars"))
    assert line.split()[1:4] == ["1", "2025-01-08", "2025-01-08"]
    assert any(line.split()[:2] == ["__ephemeral_asset_job__", "SUCCESS"] for line in out.splitlines())
    assert any(line.split()[:3] == ["daily_backfill", "never", "run"] for line in out.splitlines())
    assert "corporate_actions" in out and "unpartitioned" in out
