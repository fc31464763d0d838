"""Secret redaction in logs.

The logging configuration is process-global (root handler, structlog config, the registered
secrets), so every end-to-end scenario runs in a fresh interpreter and inspects its stderr. The
planted key reaches the child through an environment variable, never through its source, so a
traceback's source lines cannot echo it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from spy_pipeline import logs
from spy_pipeline.logs import REDACTED, RedactingFilter, redact, redact_value, register_secret

PLANTED_KEY = "PLANTEDKEY-7f3a9c1e"
OTHER_KEY = "UNREGISTERED-0c4d2b88"

_PRELUDE = """
import logging, os, sys
from spy_pipeline.logs import configure_logging, get_logger
KEY = os.environ["PLANTED_KEY"]
OTHER = os.environ["OTHER_KEY"]
"""


def run_logging(body: str, fmt: str = "json", configure: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `body` in a new interpreter after configure_logging(fmt, secrets=[KEY]); stderr is a pipe."""
    setup = "configure_logging(fmt=sys.argv[1], secrets=[KEY])\nlog = get_logger('test')\n" if configure else ""
    code = _PRELUDE + setup + textwrap.dedent(body)
    env = {**os.environ, "PLANTED_KEY": PLANTED_KEY, "OTHER_KEY": OTHER_KEY}
    return subprocess.run(
        [sys.executable, "-c", code, fmt],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def assert_logged_without(result: subprocess.CompletedProcess[str], marker: str, *secrets: str) -> None:
    """The child exited cleanly, logged the line carrying `marker`, redacted, and leaked nothing."""
    assert result.returncode == 0, f"logging raised:\n{result.stderr}"
    for secret in secrets:
        assert secret not in result.stderr, f"secret leaked to stderr:\n{result.stderr}"
        assert secret not in result.stdout, f"secret leaked to stdout:\n{result.stdout}"
    assert marker in result.stderr, f"line not logged:\n{result.stderr}"
    assert REDACTED in result.stderr, f"nothing redacted:\n{result.stderr}"


FORMATS = pytest.mark.parametrize("fmt", ["json", "console"])


# --- end to end: the planted key never reaches stderr ------------------------------------------


@FORMATS
def test_key_in_event_message_is_redacted(fmt: str) -> None:
    result = run_logging('log.info(f"MARK-event calling with {KEY}")', fmt)
    assert_logged_without(result, "MARK-event", PLANTED_KEY)


@FORMATS
def test_key_in_keyword_value_is_redacted(fmt: str) -> None:
    result = run_logging('log.info("MARK-kw", api_key=KEY)', fmt)
    assert_logged_without(result, "MARK-kw", PLANTED_KEY)


@FORMATS
def test_key_nested_in_dict_and_list_values_is_redacted(fmt: str) -> None:
    result = run_logging('log.info("MARK-nested", params={"q": [1, {"token": KEY}], "t": (KEY,)}, keys=[KEY])', fmt)
    assert_logged_without(result, "MARK-nested", PLANTED_KEY)


@FORMATS
def test_key_in_logged_exception_traceback_is_redacted(fmt: str) -> None:
    body = """
    try:
        try:
            raise KeyError(KEY)
        except KeyError as inner:
            raise RuntimeError(f"request with apiKey {KEY} failed") from inner
    except RuntimeError:
        log.exception("MARK-exception")
    """
    result = run_logging(body, fmt)
    assert_logged_without(result, "MARK-exception", PLANTED_KEY)
    assert "Traceback" in result.stderr
    assert "RuntimeError" in result.stderr


@FORMATS
def test_key_in_exception_passed_as_value_is_redacted(fmt: str) -> None:
    result = run_logging('log.warning("MARK-excvalue", error=ValueError(f"bad key {KEY}"))', fmt)
    assert_logged_without(result, "MARK-excvalue", PLANTED_KEY)


@FORMATS
def test_key_in_stdlib_urllib3_record_args_is_redacted(fmt: str) -> None:
    body = """
    url = f"https://api.polygon.io/v2/aggs/ticker/SPY?adjusted=true&apiKey={KEY}"
    logging.getLogger("urllib3").warning("GET %s MARK-urllib3", url)
    """
    result = run_logging(body, fmt)
    assert_logged_without(result, "MARK-urllib3", PLANTED_KEY)
    assert "adjusted=true" in result.stderr


@FORMATS
def test_key_in_stdlib_exception_is_redacted(fmt: str) -> None:
    body = """
    try:
        raise ConnectionError(f"https://api.polygon.io/?apiKey={KEY}")
    except ConnectionError:
        logging.getLogger("polygon").exception("MARK-stdlib-exc")
    """
    result = run_logging(body, fmt)
    assert_logged_without(result, "MARK-stdlib-exc", PLANTED_KEY)
    assert "ConnectionError" in result.stderr


@FORMATS
def test_key_in_authorization_bearer_header_is_redacted(fmt: str) -> None:
    body = """
    logging.getLogger("urllib3").warning("send: %s", f"Authorization: Bearer {KEY}\\r\\nMARK-bearer")
    log.info("MARK-bearer-kw", headers=f"Authorization: Bearer {KEY}")
    """
    result = run_logging(body, fmt)
    assert_logged_without(result, "MARK-bearer", PLANTED_KEY)
    assert "MARK-bearer-kw" in result.stderr


@FORMATS
def test_unregistered_api_key_query_value_is_redacted(fmt: str) -> None:
    body = """
    logging.getLogger("urllib3").warning("GET %s MARK-other", f"https://x.example/v3?apiKey={OTHER}&limit=5")
    log.info("MARK-other-kw", url=f"https://x.example/v3?limit=5&apikey={OTHER}")
    """
    result = run_logging(body, fmt)
    assert_logged_without(result, "MARK-other", OTHER_KEY)
    assert "limit=5" in result.stderr


@FORMATS
def test_secret_registered_by_a_later_call_is_redacted(fmt: str) -> None:
    body = """
    configure_logging(fmt=sys.argv[1], secrets=[OTHER])
    log.info(f"MARK-later {OTHER}")
    """
    result = run_logging(body, fmt)
    assert_logged_without(result, "MARK-later", OTHER_KEY)


@FORMATS
def test_key_used_as_a_dict_key_is_redacted(fmt: str) -> None:
    result = run_logging('log.info("MARK-dictkey", by_key={KEY: "quota"})', fmt)
    assert_logged_without(result, "MARK-dictkey", PLANTED_KEY)


@FORMATS
@pytest.mark.parametrize(
    "value_expr",
    [
        'f"apiKey={KEY}".encode()',
        'type("Url", (), {"__str__": lambda s: f"u?apiKey={KEY}", "__repr__": lambda s: f"u?apiKey={KEY}"})()',
    ],
    ids=["bytes", "object"],
)
def test_key_inside_non_string_value_is_redacted(fmt: str, value_expr: str) -> None:
    result = run_logging(f'log.info("MARK-nonstr", value={value_expr})', fmt)
    assert_logged_without(result, "MARK-nonstr", PLANTED_KEY)


@FORMATS
def test_namedtuple_value_is_logged_and_redacted(fmt: str) -> None:
    body = """
    from urllib.parse import urlsplit
    log.info("MARK-namedtuple", url=urlsplit(f"https://api.polygon.io/v2?apiKey={KEY}"))
    """
    result = run_logging(body, fmt)
    assert_logged_without(result, "MARK-namedtuple", PLANTED_KEY)


# --- output shape -----------------------------------------------------------------------------


def test_auto_format_is_one_json_object_per_line_when_not_a_tty() -> None:
    body = """
    log.info("first", n=1)
    log.warning("second", nested={"a": [1, 2]})
    logging.getLogger("urllib3").warning("third %s", "x")
    try:
        raise RuntimeError("multi\\nline")
    except RuntimeError:
        log.exception("fourth")
    """
    result = run_logging(body, fmt="auto")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(record, dict) for record in records)
    assert [record["event"] for record in records] == ["first", "second", "third x", "fourth"]
    assert records[1]["nested"] == {"a": [1, 2]}
    assert records[2]["logger"] == "urllib3"
    assert "Traceback" in records[3]["exception"]


def test_json_records_carry_level_logger_and_timestamp() -> None:
    result = run_logging('log.warning("hello")', fmt="json")
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert record["level"] == "warning"
    assert record["logger"] == "test"
    assert record["timestamp"].endswith("Z")


@FORMATS
def test_logger_name_is_kept_when_a_notification_url_path_word_is_redacted(fmt: str) -> None:
    body = """
    configure_logging(fmt=sys.argv[1], secret_urls=["json://127.0.0.1:9/alerts"])
    get_logger("spy_pipeline.io.alerts.notifier").warning("posting alerts", url="json://127.0.0.1:9/alerts")
    logging.getLogger("spy_pipeline.io.alerts.delivery").warning("stdlib alerts")
    """
    result = run_logging(body, fmt=fmt, configure=False)
    assert result.returncode == 0, result.stderr
    assert "spy_pipeline.io.alerts.notifier" in result.stderr and "spy_pipeline.io.alerts.delivery" in result.stderr
    assert f"posting {REDACTED}" in result.stderr and f"stdlib {REDACTED}" in result.stderr  # still redacted
    assert "/alerts" not in result.stderr and "9/alerts" not in result.stderr


def test_per_connection_and_per_retry_chatter_is_left_out_at_info_but_warnings_are_kept() -> None:
    body = """
    for name in ("websockets.server", "urllib3.connectionpool", "apprise", "alembic"):
        logging.getLogger(name).info(f"{name} chatter")
        logging.getLogger(name).warning(f"{name} warning")
    log.info("ours at info")
    """
    result = run_logging(body)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert [e for e in events if "chatter" in e] == []
    assert len([e for e in events if "warning" in e]) == 4 and "ours at info" in events


def test_configure_logging_twice_does_not_duplicate_lines() -> None:
    body = """
    configure_logging(fmt="json", secrets=[KEY])
    configure_logging(fmt="json")
    log = get_logger("test")
    log.info("once")
    logging.getLogger("urllib3").warning("stdlib once")
    """
    result = run_logging(body, configure=False)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert events == ["once", "stdlib once"]


def test_level_filters_lower_records() -> None:
    body = """
    configure_logging(level="WARNING", fmt="json")
    log = get_logger("test")
    log.info("hidden")
    log.warning("shown")
    """
    result = run_logging(body, configure=False)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["event"] for line in result.stderr.splitlines()] == ["shown"]


# --- redact() and friends, in process ---------------------------------------------------------


@pytest.fixture
def fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Isolate the module-global registry of secrets for in-process unit tests."""
    secrets: set[str] = set()
    monkeypatch.setattr(logs, "_secrets", secrets)
    return secrets


def test_redact_replaces_every_occurrence_of_a_registered_secret(fresh_secrets: set[str]) -> None:
    register_secret(PLANTED_KEY)
    assert redact(f"a {PLANTED_KEY} b {PLANTED_KEY}") == "a *** b ***"


def test_redact_leaves_text_without_secrets_unchanged(fresh_secrets: set[str]) -> None:
    register_secret(PLANTED_KEY)
    text = "GET https://api.polygon.io/v2/aggs?limit=50000 200 OK"
    assert redact(text) == text


def test_register_secret_ignores_none_empty_and_short_values(fresh_secrets: set[str]) -> None:
    for value in (None, "", "abc"):
        register_secret(value)
    assert fresh_secrets == set()
    assert redact("abc") == "abc"


def test_redact_prefers_the_longest_overlapping_secret(fresh_secrets: set[str]) -> None:
    register_secret("PLANTED")
    register_secret(PLANTED_KEY)
    assert redact(f"key={PLANTED_KEY}") == "key=***"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"https://h/v2?apiKey={OTHER_KEY}&limit=5", "https://h/v2?apiKey=***&limit=5"),
        (f"https://h/v2?APIKEY={OTHER_KEY}", "https://h/v2?APIKEY=***"),
        (f"'https://h/v2?apikey={OTHER_KEY}'", "'https://h/v2?apikey=***'"),
    ],
)
def test_redact_masks_unregistered_api_key_query_values(fresh_secrets: set[str], text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {OTHER_KEY}",
        f"{{'Authorization': 'Bearer {OTHER_KEY}'}}",
        f'{{"authorization": "bearer {OTHER_KEY}"}}',
        f"token sent as Bearer {OTHER_KEY}",
    ],
)
def test_redact_masks_unregistered_bearer_tokens(fresh_secrets: set[str], text: str) -> None:
    redacted = redact(text)
    assert OTHER_KEY not in redacted
    assert REDACTED in redacted


def test_redact_value_recurses_and_keeps_container_types(fresh_secrets: set[str]) -> None:
    register_secret(PLANTED_KEY)
    value = {"a": [PLANTED_KEY, 1], "b": (PLANTED_KEY,), "c": {"d": PLANTED_KEY}, "n": None}
    assert redact_value(value) == {"a": ["***", 1], "b": ("***",), "c": {"d": "***"}, "n": None}


def test_redact_value_renders_exceptions_with_their_type(fresh_secrets: set[str]) -> None:
    register_secret(PLANTED_KEY)
    assert redact_value(ValueError(f"bad {PLANTED_KEY}")) == "ValueError: bad ***"


def test_redacting_filter_formats_args_then_redacts(fresh_secrets: set[str]) -> None:
    register_secret(PLANTED_KEY)
    record = logging.LogRecord("urllib3", logging.WARNING, __file__, 1, "GET %s", (PLANTED_KEY,), None)
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == "GET ***"
    assert record.args is None
