"""`load_settings()`: defaults, parsing, one-line errors naming the variable, `.env`, and secrets."""

from __future__ import annotations

import datetime as dt
import os
import traceback
from pathlib import Path

import pytest
from pydantic import ValidationError

from spy_pipeline.settings import (
    FREE_TIER_REQUESTS_PER_MINUTE,
    SETTINGS_PREFIXES,
    TICKER_PATTERN,
    ConfigError,
    Settings,
    load_settings,
)

PLANTED_KEY = "PLANTEDKEY-7f3a9c1e"


def _config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> ConfigError:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    return info.value


# --- defaults ---------------------------------------------------------------------------------


def test_default_data_dir_is_data_resolved_against_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPY_PIPELINE_DATA_DIR")
    settings = load_settings()
    assert settings.data_dir == Path("data")
    assert settings.resolved_data_dir == tmp_path.resolve() / "data"
    assert settings.resolved_data_dir.is_absolute()


def test_data_dir_comes_from_the_environment(data_dir: Path) -> None:
    assert load_settings().resolved_data_dir == data_dir.resolve()


def test_default_tickers_are_spy_only() -> None:
    assert load_settings().equity_tickers == ("SPY",)


def test_no_key_uses_the_embedded_sandbox_with_no_rate_limit() -> None:
    settings = load_settings()
    assert settings.polygon_api_key is None
    assert settings.uses_embedded_sandbox is True
    assert settings.effective_requests_per_minute is None


def test_blank_key_counts_as_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYGON_API_KEY", "   ")
    assert load_settings().uses_embedded_sandbox is True


def test_key_without_rate_defaults_to_the_free_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYGON_API_KEY", PLANTED_KEY)
    settings = load_settings()
    assert settings.uses_embedded_sandbox is False
    assert settings.effective_requests_per_minute == FREE_TIER_REQUESTS_PER_MINUTE == 5


def test_explicit_rate_wins_over_the_free_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYGON_API_KEY", PLANTED_KEY)
    monkeypatch.setenv("SPY_PIPELINE_REQUESTS_PER_MINUTE", "100")
    assert load_settings().effective_requests_per_minute == 100


def test_explicit_rate_applies_to_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPY_PIPELINE_REQUESTS_PER_MINUTE", "7")
    settings = load_settings()
    assert settings.uses_embedded_sandbox is True
    assert settings.effective_requests_per_minute == 7


def test_base_url_with_key_is_accepted_without_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYGON_API_KEY", PLANTED_KEY)
    monkeypatch.setenv("POLYGON_BASE_URL", "http://127.0.0.1:8080/")
    assert load_settings().polygon_base_url == "http://127.0.0.1:8080"


def test_run_end_date_parses_iso_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPY_PIPELINE_RUN_END_DATE", "2024-12-31")
    assert load_settings().run_end_date == dt.date(2024, 12, 31)


# --- the risk-free rate -----------------------------------------------------------------------


def test_the_default_risk_free_rate_is_the_one_the_sandbox_prices_with() -> None:
    from spy_pipeline.domain.rates import DEFAULT_RISK_FREE_RATE
    from spy_pipeline.sandbox import options

    assert load_settings().risk_free_rate == DEFAULT_RISK_FREE_RATE == options.RISK_FREE_RATE == 0.045


@pytest.mark.parametrize(("value", "rate"), [("0.0525", 0.0525), ("-0.05", -0.05), ("0.5", 0.5), ("0", 0.0)])
def test_risk_free_rate_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str, rate: float) -> None:
    monkeypatch.setenv("SPY_PIPELINE_RISK_FREE_RATE", value)
    assert load_settings().risk_free_rate == rate


@pytest.mark.parametrize("value", ["-0.0501", "0.51", "4.5", "inf"])
def test_a_risk_free_rate_outside_the_range_says_what_a_rate_is(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    message = str(_config_error(monkeypatch, SPY_PIPELINE_RISK_FREE_RATE=value))
    assert message == (f"invalid configuration: SPY_PIPELINE_RISK_FREE_RATE: {float(value):g} is not a rate per "
                       "year between -0.05 and 0.5 (write 4.5% as 0.045)")


# --- tickers ----------------------------------------------------------------------------------


def test_comma_separated_tickers_parse_to_a_tuple(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPY_PIPELINE_EQUITY_TICKERS", "SPY, QQQ")
    assert load_settings().equity_tickers == ("SPY", "QQQ")


def test_duplicate_tickers_are_dropped_keeping_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPY_PIPELINE_EQUITY_TICKERS", "QQQ,SPY,QQQ,BRK.B")
    assert load_settings().equity_tickers == ("QQQ", "SPY", "BRK.B")


@pytest.mark.parametrize("value", ["spy", "../x", "SP/Y", "", " , ", "SPY,qqq", "/etc", "TOOLONGTICKER"])
def test_invalid_tickers_are_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    error = _config_error(monkeypatch, SPY_PIPELINE_EQUITY_TICKERS=value)
    assert "SPY_PIPELINE_EQUITY_TICKERS" in str(error)


# --- every invalid value: one line, naming the variable ---------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SPY_PIPELINE_REQUESTS_PER_MINUTE", "0"),
        ("SPY_PIPELINE_REQUESTS_PER_MINUTE", "-3"),
        ("SPY_PIPELINE_REQUESTS_PER_MINUTE", "abc"),
        ("SPY_PIPELINE_HTTP_READ_TIMEOUT", "0"),
        ("SPY_PIPELINE_HTTP_CONNECT_TIMEOUT", "-1"),
        ("SPY_PIPELINE_MAX_RETRIES", "21"),
        ("SPY_PIPELINE_MAX_RETRIES", "-1"),
        ("SPY_PIPELINE_LOG_FORMAT", "xml"),
        ("SPY_PIPELINE_LOG_LEVEL", "verbose"),
        ("SPY_PIPELINE_RUN_END_DATE", "2025-13-01"),
        ("SPY_PIPELINE_RUN_DAYS", "0"),
        ("SPY_PIPELINE_RUN_DAYS", "501"),
        ("SPY_PIPELINE_EQUITY_TICKERS", "spy"),
        ("SPY_PIPELINE_RISK_FREE_RATE", "4.5"),
        ("SPY_PIPELINE_RISK_FREE_RATE", "nan"),
        ("SPY_PIPELINE_RISK_FREE_RATE", "4.5%"),
    ],
)
def test_invalid_value_is_a_one_line_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    error = _config_error(monkeypatch, **{name: value})
    message = str(error)
    assert name in message
    assert "\n" not in message
    assert "\r" not in message


@pytest.mark.parametrize("url", ["ftp://x", "https://api.polygon.io/v2", "api.polygon.io", "https://h?x=1"])
def test_invalid_base_url_is_a_one_line_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    error = _config_error(monkeypatch, POLYGON_API_KEY=PLANTED_KEY, POLYGON_BASE_URL=url)
    assert "POLYGON_BASE_URL" in str(error)
    assert "\n" not in str(error)


def test_base_url_without_key_is_an_error_naming_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _config_error(monkeypatch, POLYGON_BASE_URL="https://api.polygon.io")
    message = str(error)
    assert "POLYGON_BASE_URL" in message
    assert "POLYGON_API_KEY" in message
    assert "\n" not in message


def test_several_invalid_values_are_all_named_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _config_error(monkeypatch, SPY_PIPELINE_RUN_DAYS="0", SPY_PIPELINE_LOG_FORMAT="xml")
    message = str(error)
    assert "SPY_PIPELINE_RUN_DAYS" in message
    assert "SPY_PIPELINE_LOG_FORMAT" in message
    assert "\n" not in message


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- .env -------------------------------------------------------------------------------------


def test_dotenv_in_cwd_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SPY_PIPELINE_EQUITY_TICKERS=QQQ,IWM\nSPY_PIPELINE_RUN_DAYS=3\n")
    settings = load_settings()
    assert settings.equity_tickers == ("QQQ", "IWM")
    assert settings.run_days == 3


def test_environment_overrides_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SPY_PIPELINE_RUN_DAYS=3\n")
    monkeypatch.setenv("SPY_PIPELINE_RUN_DAYS", "9")
    assert load_settings().run_days == 9


def test_invalid_dotenv_value_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SPY_PIPELINE_LOG_LEVEL=loud\n")
    with pytest.raises(ConfigError, match="SPY_PIPELINE_LOG_LEVEL"):
        load_settings()


def test_settings_are_read_again_when_a_variable_or_the_dotenv_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = load_settings()
    assert load_settings() is first  # unchanged sources: the same settings, not read again
    monkeypatch.setenv("spy_pipeline_run_days", "7")  # pydantic-settings matches names in any case
    assert load_settings().run_days == 7
    monkeypatch.delenv("spy_pipeline_run_days")
    assert load_settings().run_days == first.run_days
    dotenv = tmp_path / ".env"
    dotenv.write_text("SPY_PIPELINE_RUN_DAYS=3\n")
    assert load_settings().run_days == 3
    dotenv.write_text("SPY_PIPELINE_RUN_DAYS=12\n")  # same size, later: read again
    os.utime(dotenv, ns=(dotenv.stat().st_atime_ns, dotenv.stat().st_mtime_ns + 1_000_000))
    assert load_settings().run_days == 12
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)  # another working directory, no .env
    assert load_settings().run_days == first.run_days


def test_every_variable_is_one_the_shared_settings_watch() -> None:
    """load_settings reads again only when a POLYGON_*/SPY_PIPELINE_* variable changes: a field read from a
    variable named otherwise would keep a stale value."""
    names = [str(field.validation_alias) for field in Settings.model_fields.values()]
    assert len(names) > 20 and all(name.startswith(SETTINGS_PREFIXES) for name in names)


def test_shared_settings_cannot_be_changed() -> None:
    with pytest.raises(ValidationError):
        load_settings().run_days = 3  # type: ignore[misc]


# --- secrets ----------------------------------------------------------------------------------


@pytest.fixture
def keyed_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("POLYGON_API_KEY", PLANTED_KEY)
    return load_settings()


def test_key_value_is_available_to_the_client(keyed_settings: Settings) -> None:
    assert keyed_settings.polygon_api_key is not None
    assert keyed_settings.polygon_api_key.get_secret_value() == PLANTED_KEY


def test_key_is_not_in_repr(keyed_settings: Settings) -> None:
    assert PLANTED_KEY not in repr(keyed_settings)


def test_key_is_not_in_str(keyed_settings: Settings) -> None:
    assert PLANTED_KEY not in str(keyed_settings)


def test_key_is_not_in_model_dump_json(keyed_settings: Settings) -> None:
    assert PLANTED_KEY not in keyed_settings.model_dump_json()


def test_key_is_not_in_model_dump_python_repr(keyed_settings: Settings) -> None:
    assert PLANTED_KEY not in repr(keyed_settings.model_dump())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SPY_PIPELINE_REQUESTS_PER_MINUTE", "abc"),
        ("POLYGON_BASE_URL", "ftp://x"),
        ("SPY_PIPELINE_EQUITY_TICKERS", "spy"),
    ],
)
def test_key_is_not_in_config_error_for_another_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    error = _config_error(monkeypatch, POLYGON_API_KEY=PLANTED_KEY, **{name: value})
    assert PLANTED_KEY not in str(error)
    assert PLANTED_KEY not in "".join(traceback.format_exception(error))


def test_key_with_whitespace_is_rejected_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "PLANTED 7f3a9c1e-secretpart"
    error = _config_error(monkeypatch, POLYGON_API_KEY=key)
    message = str(error)
    assert "POLYGON_API_KEY" in message
    assert "\n" not in message
    for fragment in key.split():
        assert fragment not in message
        assert fragment not in "".join(traceback.format_exception(error))


def test_ticker_pattern_rejects_a_trailing_newline() -> None:
    """TICKER_PATTERN also guards Dagster run-config tickers, which are not stripped first."""
    assert TICKER_PATTERN.match("SPY")
    assert TICKER_PATTERN.match("SPY\n") is None


def test_an_object_storage_data_dir_is_kept_as_a_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPY_PIPELINE_DATA_DIR", "s3://bucket/prefix")
    settings = load_settings()  # syntax only: no filesystem is opened, no network
    assert settings.data_dir == "s3://bucket/prefix" and not settings.data_dir_is_local
    with pytest.raises(ConfigError, match="SPY_PIPELINE_DATA_DIR: s3://bucket/prefix is not a local folder"):
        settings.resolved_data_dir  # noqa: B018


def test_rate_limit_state_does_not_derive_from_a_uri_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPY_PIPELINE_DATA_DIR", "s3://bucket/prefix")
    assert load_settings().resolved_rate_limit_state == tmp_path.resolve() / ".dagster_home" / "polygon_rate_limit.json"


def test_a_file_uri_data_dir_is_a_local_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPY_PIPELINE_DATA_DIR", (tmp_path / "lake").as_uri())
    assert load_settings().resolved_data_dir == tmp_path.resolve() / "lake"


@pytest.mark.parametrize(
    "value", ["s3://", "s3:///prefix", "s3://bucket//prefix", "s3://bucket/../up", "nosuchscheme://bucket",
              "file://host/share"],
)
def test_a_malformed_data_dir_uri_is_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SPY_PIPELINE_DATA_DIR", value)
    with pytest.raises(ConfigError, match=r"^invalid configuration: SPY_PIPELINE_DATA_DIR: "):
        load_settings()
