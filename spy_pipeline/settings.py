"""All configuration, read once from the environment and an optional `.env` file.

The variable names are a public interface (see the README's "Configuration" table).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from spy_pipeline.domain.rates import DEFAULT_RISK_FREE_RATE, check_risk_free_rate
from spy_pipeline.domain.scanner import DEFAULT_MIN_PRICE, DEFAULT_MIN_VOLUME

POLYGON_URL = "https://api.polygon.io"
FLATFILES_URL = "https://files.massive.com"
FREE_TIER_REQUESTS_PER_MINUTE = 5
TICKER_PATTERN = re.compile(r"^[A-Z][A-Z0-9.]{0,9}\Z")
RATE_LIMIT_STATE_FILE = "polygon_rate_limit.json"
DEFAULT_DAGSTER_HOME_DIR = ".dagster_home"  # as runner.DEFAULT_DAGSTER_HOME and the Makefile
ALERT_STATE_FILE = "alerts.sqlite"
OPTIONAL_SOURCE_NAMES = ("vix", "news")  # the sources consolidated can do without (their columns stay null)


def _split_urls(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


URI_PATTERN = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*)://(?P<rest>.*)\Z", re.DOTALL)
PYARROW_SCHEMES = frozenset({"s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss"})


def _known_filesystem(scheme: str) -> bool:
    """pyarrow's own filesystems, or one fsspec knows (its registry names them without importing them)."""
    from fsspec.registry import known_implementations, registry

    return scheme in PYARROW_SCHEMES or scheme in known_implementations or scheme in registry


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True, frozen=True
    )

    polygon_api_key: SecretStr | None = Field(default=None, validation_alias="POLYGON_API_KEY")
    polygon_base_url: str | None = Field(default=None, validation_alias="POLYGON_BASE_URL")
    data_dir: Path | str = Field(
        default=Path("data"), validation_alias="SPY_PIPELINE_DATA_DIR",
        description=(
            "A local folder (a Path) or an object-store URI such as s3://bucket/prefix (kept as the string); "
            "`data_root` opens either. file:// URIs become local paths."
        ),
    )
    equity_tickers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("SPY",), validation_alias="SPY_PIPELINE_EQUITY_TICKERS"
    )
    requests_per_minute: int | None = Field(
        default=None, gt=0, validation_alias="SPY_PIPELINE_REQUESTS_PER_MINUTE"
    )
    rate_limit_state: Path | None = Field(
        default=None, validation_alias="SPY_PIPELINE_RATE_LIMIT_STATE",
        description=(
            "The file holding the request-rate token bucket that every process of this installation shares "
            "(Dagster runs, multiprocess steps, the CLI), so that together they stay within the rate. Default "
            f"(see `resolved_rate_limit_state`): {RATE_LIMIT_STATE_FILE} in $DAGSTER_HOME when set, which every "
            "process of one Dagster instance has; else in .dagster_home/ beside the data dir, i.e. the repo's "
            ".dagster_home/ with the default data dir, where `make run` and `make dev` keep the instance "
            "(in the working directory's .dagster_home/ when the data dir is an object-store URI)."
        ),
    )
    http_connect_timeout_s: float = Field(
        default=10.0, gt=0, validation_alias="SPY_PIPELINE_HTTP_CONNECT_TIMEOUT"
    )
    http_read_timeout_s: float = Field(default=30.0, gt=0, validation_alias="SPY_PIPELINE_HTTP_READ_TIMEOUT")
    max_retries: int = Field(default=6, ge=0, le=20, validation_alias="SPY_PIPELINE_MAX_RETRIES")
    log_format: Literal["auto", "console", "json"] = Field(
        default="auto", validation_alias="SPY_PIPELINE_LOG_FORMAT"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias="SPY_PIPELINE_LOG_LEVEL"
    )
    risk_free_rate: float = Field(
        default=DEFAULT_RISK_FREE_RATE, validation_alias="SPY_PIPELINE_RISK_FREE_RATE",
        description="Continuously compounded risk-free rate per year of the greeks and IV (a run config may override).",
    )
    optional_sources: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="SPY_PIPELINE_OPTIONAL_SOURCES",
        description=(
            "Comma-separated sources a day can do without (vix, news): one the plan does not include (HTTP 403) "
            "or that has no data leaves its columns null in consolidated, with the reason in metadata and a "
            "warning check, instead of failing the day. A source not listed is required."
        ),
    )
    run_end_date: dt.date = Field(default=dt.date(2025, 1, 10), validation_alias="SPY_PIPELINE_RUN_END_DATE")
    run_days: int = Field(default=5, ge=1, le=500, validation_alias="SPY_PIPELINE_RUN_DAYS")
    # --- Flat Files (issue #13): the bulk source. The S3 key pair is the dashboard's, not the REST API key.
    s3_access_key_id: SecretStr | None = Field(default=None, validation_alias="POLYGON_S3_ACCESS_KEY_ID")
    s3_secret_access_key: SecretStr | None = Field(default=None, validation_alias="POLYGON_S3_SECRET_ACCESS_KEY")
    flatfiles_endpoint: str = Field(default=FLATFILES_URL, validation_alias="POLYGON_FLATFILES_ENDPOINT")
    flatfiles_bucket: str = Field(default="flatfiles", pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$",
                                  validation_alias="POLYGON_FLATFILES_BUCKET")
    source: Literal["auto", "rest", "flat_files"] = Field(default="auto", validation_alias="SPY_PIPELINE_SOURCE")
    contract_selection: Literal["band", "targeted", "chain"] = Field(
        default="band", validation_alias="SPY_PIPELINE_CONTRACT_SELECTION"
    )

    @field_validator("s3_access_key_id", "s3_secret_access_key")
    @classmethod
    def _check_s3_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if any(c.isspace() for c in value.get_secret_value()):
            raise ValueError("must not contain whitespace")
        return value

    @field_validator("flatfiles_endpoint")
    @classmethod
    def _check_flatfiles_endpoint(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s?#]+$", value.rstrip("/")):
            raise ValueError("must be http(s)://host[:port] with no path")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _s3_keys_come_in_pairs(self) -> Settings:
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("POLYGON_S3_ACCESS_KEY_ID and POLYGON_S3_SECRET_ACCESS_KEY are set together or not at all")
        return self

    @property
    def flatfiles_spool_dir(self) -> Path:
        """Where a day's filtered option rows wait between options_contracts and raw_options_bars (by ETag)."""
        return self.resolved_rate_limit_state.parent / "flatfiles"
    # --- end of Flat Files

    # --- Alerts (spy_pipeline/io/alerts, spy_pipeline/defs/alerts) ---
    alert_urls: SecretStr | None = Field(
        default=None, validation_alias="SPY_PIPELINE_ALERT_URLS",
        description="Comma-separated Apprise notification URLs (tgram://, slack://, discord://, mailtos://, json://); "
        "secret: they carry tokens. Unset: alerts only in the Dagster UI and the logs.",
    )
    alert_state: Path | None = Field(
        default=None, validation_alias="SPY_PIPELINE_ALERT_STATE",
        description="The SQLite file of alerts already sent (dedup across processes and daemon restarts). Default: "
        f"{ALERT_STATE_FILE} in $DAGSTER_HOME, else in .dagster_home/ beside the data dir.",
    )
    ui_url: str = Field(
        default="http://127.0.0.1:3000", validation_alias="SPY_PIPELINE_UI_URL",
        description="The Dagster UI's address, for the run links in alerts.",
    )

    @field_validator("alert_urls")
    @classmethod
    def _check_alert_urls(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        for position, url in enumerate(_split_urls(value.get_secret_value()), start=1):
            if not URI_PATTERN.match(url) or any(c.isspace() for c in url):
                # never echo the URL: it carries secrets
                raise ValueError(f"URL {position} is not scheme://... (e.g. tgram://BOT_TOKEN/CHAT_ID)")
        return value

    @field_validator("ui_url")
    @classmethod
    def _check_ui_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s?#]+$", value):
            raise ValueError("must be http(s)://host[:port][/path]")
        return value.rstrip("/")

    @property
    def alert_url_list(self) -> list[str]:
        return _split_urls(self.alert_urls.get_secret_value()) if self.alert_urls else []

    @property
    def resolved_alert_state(self) -> Path:
        if self.alert_state is not None:
            return self.alert_state.expanduser().resolve()
        dagster_home = os.environ.get("DAGSTER_HOME", "").strip()
        if dagster_home:
            return (Path(dagster_home).expanduser() / ALERT_STATE_FILE).resolve()
        beside = self.resolved_data_dir.parent if self.data_dir_is_local else Path.cwd().resolve()
        return beside / DEFAULT_DAGSTER_HOME_DIR / ALERT_STATE_FILE
    # --- end of alerts ---

    # --- Movement scanner floors (issue #15): options_movement and the live scanner of the streaming session ---
    scanner_min_price: float = Field(
        default=DEFAULT_MIN_PRICE, ge=0, validation_alias="SPY_PIPELINE_SCANNER_MIN_PRICE",
        description="Option bars priced below this (USD) are left out of the movement scanner (no reference, no "
        "trigger): a 0.01 print would make a +9,900% event.",
    )
    scanner_min_volume: float = Field(
        default=DEFAULT_MIN_VOLUME, ge=0, validation_alias="SPY_PIPELINE_SCANNER_MIN_VOLUME",
        description="Option bars with fewer contracts traded in the minute are left out of the movement scanner.",
    )
    # --- end of scanner floors ---
    chart_processes: int = Field(
        default=0, ge=0, le=64, validation_alias="SPY_PIPELINE_CHART_PROCESSES",
        description="Processes that draw a range's daily charts side by side; 0 means one per CPU core, each with "
        "at least two days to draw (fewer than four days are drawn in the run's own process).",
    )

    @field_validator("equity_tickers", mode="before")
    @classmethod
    def _split_tickers(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            for ticker in value:
                if not isinstance(ticker, str) or not TICKER_PATTERN.fullmatch(ticker):
                    raise ValueError(f"{ticker!r} is not an uppercase ticker such as SPY")
            if not value:
                raise ValueError("at least one ticker is required")
        return tuple(dict.fromkeys(value)) if isinstance(value, list | tuple) else value

    @field_validator("optional_sources", mode="before")
    @classmethod
    def _split_sources(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip().lower() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            unknown = [name for name in value if name not in OPTIONAL_SOURCE_NAMES]
            if unknown:
                names = ", ".join(map(str, unknown))
                raise ValueError(f"{names}: only {', '.join(OPTIONAL_SOURCE_NAMES)} can be optional")
            return tuple(dict.fromkeys(value))
        return value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _check_data_dir(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        match = URI_PATTERN.match(value)
        if match is None:
            return Path(value)
        scheme, rest = match["scheme"].lower(), match["rest"]
        if scheme == "file":
            parsed = urlsplit(value)
            if parsed.netloc not in {"", "localhost"} or not parsed.path.startswith("/"):
                raise ValueError("a file:// URI must be file:///absolute/path")
            return Path(unquote(parsed.path))
        if not _known_filesystem(scheme):
            raise ValueError(f"no filesystem is known for {scheme}:// (s3://bucket/prefix, gs://..., a local path)")
        key = re.split(r"[?#]", rest, maxsplit=1)[0].rstrip("/")
        if not key or any(part in {"", ".", ".."} for part in key.split("/")):
            raise ValueError(f"{scheme}:// needs a bucket and optional prefix without '.', '..' or '//'")
        return value

    @field_validator("risk_free_rate")
    @classmethod
    def _check_risk_free_rate(cls, value: float) -> float:
        return check_risk_free_rate(value)

    @field_validator("polygon_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.match(r"^https?://[^/\s?#]+$", value.rstrip("/")):
            raise ValueError("must be http(s)://host[:port] with no path")
        return value.rstrip("/")

    @field_validator("rate_limit_state", mode="before")
    @classmethod
    def _check_rate_limit_state(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            if value.endswith(("/", os.sep)):
                raise ValueError("must be a file path, not a directory")
        if isinstance(value, str | Path) and Path(value).expanduser().is_dir():
            raise ValueError("must be a file path, not a directory")
        return value

    @field_validator("polygon_api_key")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        if value is not None and any(c.isspace() for c in value.get_secret_value()):
            raise ValueError("must not contain whitespace")
        return value

    @model_validator(mode="after")
    def _base_url_needs_key(self) -> Settings:
        if self.polygon_base_url and self.polygon_api_key is None:
            raise ValueError("POLYGON_BASE_URL is set but POLYGON_API_KEY is not: a server needs a key")
        return self

    def is_optional_source(self, source: str | None) -> bool:
        """Whether a day may lack `source` (vix, news) without failing: SPY_PIPELINE_OPTIONAL_SOURCES names it."""
        return source is not None and source in self.optional_sources

    @property
    def uses_embedded_sandbox(self) -> bool:
        return self.polygon_api_key is None

    @property
    def effective_requests_per_minute(self) -> int | None:
        """None means unlimited: the embedded sandbox has no quota unless one is set."""
        if self.requests_per_minute is not None:
            return self.requests_per_minute
        return None if self.uses_embedded_sandbox else FREE_TIER_REQUESTS_PER_MINUTE

    @property
    def data_dir_is_local(self) -> bool:
        return isinstance(self.data_dir, Path)

    @property
    def resolved_data_dir(self) -> Path:
        """The local data dir, absolute; a ConfigError when SPY_PIPELINE_DATA_DIR is a URI."""
        if not isinstance(self.data_dir, Path):
            raise ConfigError(f"SPY_PIPELINE_DATA_DIR: {self.data_dir} is not a local folder")
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_rate_limit_state(self) -> Path:
        """SPY_PIPELINE_RATE_LIMIT_STATE, else the default in the field's description (absolute)."""
        if self.rate_limit_state is not None:
            return self.rate_limit_state.expanduser().resolve()
        dagster_home = os.environ.get("DAGSTER_HOME", "").strip()  # read now: Dagster processes all have it
        if dagster_home:
            return (Path(dagster_home).expanduser() / RATE_LIMIT_STATE_FILE).resolve()
        # beside a local data dir; with an object-store data dir, in the working directory's .dagster_home/
        beside = self.resolved_data_dir.parent if self.data_dir_is_local else Path.cwd().resolve()
        return beside / DEFAULT_DAGSTER_HOME_DIR / RATE_LIMIT_STATE_FILE


SETTINGS_PREFIXES = ("POLYGON_", "SPY_PIPELINE_")  # every field's variable starts with one of them
_read_settings: dict[tuple, Settings] = {}  # the last read, by what it was read from (_sources)


def load_settings(**overrides: object) -> Settings:
    """Read settings; any invalid value raises ConfigError with one line naming the variable.

    Without overrides, the same (frozen) Settings while the variables and the .env file are unchanged: a run
    asks for them per file and per step, and reading them again was ~5 % of a backfill's main process."""
    if overrides:
        return _read(overrides)
    sources = _sources()
    settings = _read_settings.get(sources)
    if settings is None:
        settings = _read({})
        _read_settings.clear()
        _read_settings[sources] = settings
    return settings


def _read(overrides: dict[str, object]) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _sources() -> tuple:
    """What Settings are read from: the variables (any case, as pydantic-settings matches them) and the
    working directory's .env file (its identity, size and modification time)."""
    variables = tuple(sorted(item for item in os.environ.items() if item[0].upper().startswith(SETTINGS_PREFIXES)))
    try:
        env_file = os.stat(".env")
        dotenv = (os.getcwd(), env_file.st_ino, env_file.st_size, env_file.st_mtime_ns)
    except OSError:
        dotenv = None
    return variables, dotenv


def _one_line(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "configuration"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{name}: {message}")
    return "invalid configuration: " + "; ".join(problems)
