"""The production instance profile (spy_pipeline/deploy/postgres/dagster.yaml) on a real PostgreSQL server.

The module starts its own server from Debian's binaries (initdb, pg_ctl) in a temporary folder, on 127.0.0.1
and a free port, with a database and a password-protected role for Dagster, and stops it at the end. Without
the binaries the tests fail (they do not skip): `.ci/run`, and `make test` run as root, install Debian's
`postgresql` package; elsewhere `sudo apt-get install postgresql`.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import psycopg2
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, QueuedRunCoordinator, materialize
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from spy_pipeline.definitions import defs
from spy_pipeline.defs.raw.assets import POLYGON_POOL, raw_spy_bars
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource

pytestmark = pytest.mark.integration

PROFILE = files("spy_pipeline") / "deploy" / "postgres" / "dagster.yaml"
SERVER_USER = "postgres"  # the system user Debian's postgresql package creates
SUPERUSER = "postgres"
DAGSTER_ROLE = "spy_dagster"
DAGSTER_DB = "spy_dagster"
DAYS = ("2025-01-07", "2025-01-08")
MISSING_BINARIES = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found in /usr/lib/postgresql/*/bin or on PATH: "
    "install Debian's postgresql package (`sudo apt-get install postgresql`; .ci/run and `make test` run as root "
    "install it)"
)


def server_bin_dir() -> Path:
    """The newest Debian PostgreSQL bin folder, else initdb's folder on PATH; fails the test without one."""
    def version(initdb: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", Path(initdb).parent.parent.name))

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if on_path := shutil.which("initdb"):
        candidates.append(on_path)
    for initdb in reversed(candidates):
        folder = Path(initdb).parent
        if os.access(initdb, os.X_OK) and os.access(folder / "pg_ctl", os.X_OK):
            return folder
    pytest.fail(MISSING_BINARIES, pytrace=False)


def as_server_user() -> list[str] | None:
    """The prefix that runs a command as the server's user: PostgreSQL refuses to run as root.

    [] when we are not root; None when only `su` is there (see `run_server_command`).
    """
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:  # binaries without Debian's package: make the system user it would have made
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
                       check=True)
    if shutil.which("runuser"):
        return ["runuser", "-u", SERVER_USER, "--"]
    return None


def run_server_command(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    prefix = as_server_user()
    su = ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(command)]
    wrapped = [*prefix, *command] if prefix is not None else su
    return subprocess.run(wrapped, cwd=cwd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class PostgresServer:
    port: int
    socket_dir: Path
    password: str
    host: str = "127.0.0.1"

    def env(self) -> dict[str, str]:
        """The variables the profile reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": DAGSTER_ROLE,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": DAGSTER_DB,
        }

    def connect(self):
        """As Dagster connects: TCP on 127.0.0.1 with the role's password."""
        return psycopg2.connect(host=self.host, port=self.port, user=DAGSTER_ROLE, password=self.password,
                                dbname=DAGSTER_DB, connect_timeout=10)


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = server_bin_dir()
    # Not pytest's tmp_path: as root that lies under /tmp/pytest-of-root (0700), which the server user can't enter.
    home = Path(tempfile.mkdtemp(prefix="spy-pg-"))
    data, sockets, log = home / "data", home / "sockets", home / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        as_server_user()  # creates the system user when it is missing
        account = pwd.getpwnam(SERVER_USER)
        for path in (home, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    started = False
    try:
        init = run_server_command(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth-local=trust",
             "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            cwd=home,
        )
        assert init.returncode == 0, f"initdb failed:\n{init.stdout}\n{init.stderr}"
        for _attempt in range(3):  # another process may take the free port before the server binds it
            port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off")
            start = run_server_command(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", options, "start"],
                cwd=home,
            )
            if start.returncode == 0:
                started = True
                break
        server_log = log.read_text(errors="replace") if log.exists() else ""
        assert started, f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{server_log}"
        server = PostgresServer(port=port, socket_dir=sockets, password=secrets.token_urlsafe(16))
        admin = psycopg2.connect(host=str(sockets), port=port, user=SUPERUSER, dbname="postgres", connect_timeout=10)
        admin.autocommit = True  # CREATE DATABASE can't run in a transaction (`with admin:` would open one)
        try:
            with admin.cursor() as cursor:
                cursor.execute(f"CREATE ROLE {DAGSTER_ROLE} LOGIN PASSWORD %s", (server.password,))
                cursor.execute(f"CREATE DATABASE {DAGSTER_DB} OWNER {DAGSTER_ROLE}")
        finally:
            admin.close()
        yield server
    finally:
        if started or (data / "postmaster.pid").exists():  # also a server that came up after pg_ctl gave up waiting
            run_server_command([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], cwd=home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pg_home(postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME holding the profile as shipped, with its variables set (as `make dev-postgres` does)."""
    for name, value in postgres_server.env().items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home_pg"
    home.mkdir()
    (home / "dagster.yaml").write_text(PROFILE.read_text())
    return home


@pytest.fixture
def pg_instance(pg_home: Path) -> Iterator[DagsterInstance]:
    with DagsterInstance.from_config(str(pg_home)) as instance:
        yield instance


def test_the_profile_is_package_data() -> None:
    assert PROFILE.is_file()
    assert "dagster_postgres" not in PROFILE.read_text()  # `storage: postgres:` picks the classes itself


def test_the_profile_gives_postgres_storage_a_run_queue_and_limits(pg_instance: DagsterInstance) -> None:
    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(pg_instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(pg_instance.run_coordinator, QueuedRunCoordinator)
    concurrency = pg_instance.get_concurrency_config()
    assert concurrency.run_queue_config.max_concurrent_runs == 4
    assert {"key": "dagster/backfill", "limit": 2} in concurrency.run_queue_config.tag_concurrency_limits
    assert concurrency.pool_config.default_pool_limit == 2
    assert pg_instance.run_monitoring_enabled
    assert pg_instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 30
    assert not pg_instance.telemetry_enabled


def test_a_backfill_is_recorded_in_postgres(
    pg_instance: DagsterInstance, pg_home: Path, postgres_server: PostgresServer, data_dir: Path
) -> None:
    """Two trading days of raw_spy_bars in one run (the single-run backfill), against the embedded sandbox."""
    result = materialize(
        [raw_spy_bars],
        instance=pg_instance,
        resources={"polygon": PolygonResource(), "store": ParquetStoreResource()},
        tags={ASSET_PARTITION_RANGE_START_TAG: DAYS[0], ASSET_PARTITION_RANGE_END_TAG: DAYS[-1]},
    )
    assert result.success
    assert sorted(p.name for p in (data_dir / "raw" / "spy").iterdir()) == [f"{day}.parquet" for day in DAYS]

    with postgres_server.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute(
            "SELECT partition FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION' "
            "AND asset_key = %s ORDER BY partition",
            (result.run_id, AssetKey("raw_spy_bars").to_string()),
        )
        assert [row[0] for row in cursor.fetchall()] == list(DAYS)
        # The step took a slot of the Polygon pool: pools live in PostgreSQL too, at the profile's default limit.
        cursor.execute("SELECT COUNT(*) FROM concurrency_slots WHERE concurrency_key = %s", (POLYGON_POOL,))
        assert cursor.fetchone() == (2,)
    connection.close()

    # Another process (a new instance from the same DAGSTER_HOME) sees the run and the partitions.
    with DagsterInstance.from_config(str(pg_home)) as other:
        run = other.get_run_by_id(result.run_id)
        assert run is not None and run.status == DagsterRunStatus.SUCCESS
        assert other.get_materialized_partitions(AssetKey("raw_spy_bars")) == set(DAYS)


def test_a_submitted_run_waits_in_the_postgres_queue(
    pg_instance: DagsterInstance, postgres_server: PostgresServer
) -> None:
    """Submitting a run (as the UI or a sensor does) puts it in the QueuedRunCoordinator's queue in PostgreSQL;
    the daemon would then launch it within the profile's limits."""
    code = LoadableTargetOrigin(module_name="spy_pipeline.definitions")
    with in_process_test_workspace(pg_instance, code) as workspace:
        location = workspace.get_code_location(workspace.code_location_names[0])
        remote_job = location.get_repository(SINGLETON_REPOSITORY_NAME).get_full_job("reference_data")
        run = pg_instance.create_run_for_job(
            job_def=defs.resolve_job_def("reference_data"),
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
        )
        queued = pg_instance.submit_run(run.run_id, workspace)
    assert queued.status == DagsterRunStatus.QUEUED
    with postgres_server.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (run.run_id,))
        assert cursor.fetchall() == [("QUEUED",)]
    connection.close()
