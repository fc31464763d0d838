"""Dagster resources: the Polygon client and the Parquet store, both configured from Settings."""


import datetime as dt
from contextlib import ExitStack
from pathlib import Path

import polars as pl
import structlog
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from spy_pipeline.domain import datasets
from spy_pipeline.domain.schemas import DatasetSchema
from spy_pipeline.io import storage
from spy_pipeline.io.flat_ingest import SOURCES, FlatFiles
from spy_pipeline.logs import configure_logging
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.session import open_flat_files, open_polygon
from spy_pipeline.settings import ConfigError, Settings, load_settings


def settings_with_logging() -> Settings:
    settings = load_settings()
    secrets = [value.get_secret_value() if value else None
               for value in (settings.polygon_api_key, settings.s3_access_key_id, settings.s3_secret_access_key)]
    configure_logging(settings.log_level, settings.log_format, secrets=secrets, secret_urls=settings.alert_url_list)
    return settings


def bind_run_to_logs(context: InitResourceContext) -> None:
    """Every structured log line of this process carries the run id and its partition(s)."""
    run = context.run
    if run is None:
        return
    tags = run.tags
    partition = tags.get("dagster/partition") or "...".join(
        key for key in (tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end"))
        if key
    )
    structlog.contextvars.bind_contextvars(run_id=run.run_id, partition=partition or None)


class PolygonResource(ConfigurableResource):
    """Polygon.io through the official client, and its Flat Files through an S3 client; the embedded sandbox
    (both) when no POLYGON_API_KEY is set.

    The keys are read from the environment (POLYGON_API_KEY, POLYGON_S3_*) at run time, never from run config.
    """

    requests_per_minute: int | None = Field(
        default=None, gt=0,
        description="Overrides SPY_PIPELINE_REQUESTS_PER_MINUTE for this run (default: the setting).",
    )
    source: str | None = Field(
        default=None, description="Overrides SPY_PIPELINE_SOURCE for this run: auto, rest or flat_files.",
    )
    _stack: ExitStack | None = PrivateAttr(default=None)
    _client: PolygonClient | None = PrivateAttr(default=None)
    _flat: FlatFiles | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        settings = settings_with_logging()
        bind_run_to_logs(context)
        self._stack = ExitStack()
        self._client = self._stack.enter_context(open_polygon(settings, self.requests_per_minute))
        flat_client = self._stack.enter_context(open_flat_files(settings))
        source = self.source or settings.source
        if source not in SOURCES:
            raise ConfigError(f"source: {source!r} is not one of {', '.join(SOURCES)}")
        self._flat = FlatFiles(flat_client, settings.flatfiles_spool_dir, source)  # type: ignore[arg-type]

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack, self._client, self._flat = None, None, None

    def flat_stats(self) -> dict[str, int]:
        """GETs, HEADs and bytes of the Flat Files client so far (zeros when flat files are not configured)."""
        client = self.flat_files.client
        return client.stats.snapshot() if client is not None else {"heads": 0, "gets": 0, "bytes_received": 0}

    @property
    def flat_files(self) -> FlatFiles:
        if self._flat is None:
            raise RuntimeError("PolygonResource is used outside a run: it was not set up")
        return self._flat

    @property
    def client(self) -> PolygonClient:
        if self._client is None:
            raise RuntimeError("PolygonResource is used outside a run: it was not set up")
        return self._client


class ParquetStoreResource(ConfigurableResource):
    """Daily Parquet files under the data dir (SPY_PIPELINE_DATA_DIR unless `data_dir` is set): a local
    folder or an object-store URI (s3://bucket/prefix). Paths it hands out are paths inside the data
    dir's filesystem, as strings (`storage.DataRoot`); `uri` is the form to show a person."""

    data_dir: str | None = Field(default=None, description="Overrides SPY_PIPELINE_DATA_DIR.")

    @property
    def data_root(self) -> storage.DataRoot:
        if self.data_dir:
            return storage.as_data_root(self.data_dir)
        return storage.as_data_root(load_settings().data_dir)

    def local_root(self, operation: str) -> Path:
        """The data dir as a local folder, for operations that walk a file system; a one-line
        StorageError naming `operation` when the data dir is in an object store."""
        root = self.data_root
        if not root.is_local:
            raise storage.StorageError(
                f"{operation} works on a local data dir only, and the data dir is {root.display_base}"
            )
        return Path(root.base)

    def dataset_path(self, *parts: str) -> str:
        return self.data_root.dataset_path(*parts)

    def partition_path(self, day: dt.date, *parts: str) -> str:
        return self.data_root.partition_path(day, *parts)

    def partition_days(self, *parts: str) -> list[dt.date]:
        """The days that have a file in the dataset folder `parts`, oldest first."""
        root = self.data_root
        names = (path.rsplit("/", 1)[-1] for path in root.list_files(root.dataset_path(*parts), ".parquet"))
        days = (storage.partition_day(name.removesuffix(".parquet")) for name in names)
        return sorted(day for day in days if day is not None)  # a stray file is not a partition

    def exists(self, path: str) -> bool:
        return self.data_root.exists(path)

    def write(self, frame: pl.DataFrame, path: str) -> int:
        return self.data_root.write_parquet(frame, path)

    def read(self, path: str, schema: DatasetSchema) -> pl.DataFrame:
        return self.data_root.read_partition(path, schema)

    def read_frame(self, path: str) -> pl.DataFrame:
        return self.data_root.read_frame(path)

    def relative(self, path: str) -> str:
        return self.data_root.relative(path)

    def write_day(self, frame: pl.DataFrame, day: dt.date, dataset: str) -> dict[str, object]:
        """Write one day of a registered dataset (spy_pipeline.domain.datasets), conformed to its schema;
        returns its `written_files` entry."""
        declared = datasets.get(dataset)
        frame = declared.schema.conform(frame)
        path = self.data_root.file_of(declared, day)
        size = self.write(frame, path)
        return {"path": self.relative(path), "rows": frame.height, "bytes": size}

    def uri(self, path: str) -> str:
        return self.data_root.uri(path)
