"""structlog set-up, configured once, with secret redaction wherever text reaches a log.

Human console output on a terminal, JSON lines otherwise. Secrets are removed from messages, event
values (nested too), exception text, and stdlib log records (urllib3, the Polygon client) alike.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import structlog

REDACTED = "***"
_QUERY_KEY = re.compile(r"(?i)(apikey=)[^&\s'\"]+")
_BEARER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?bearer\s+)[^\s'\",}]+")
_BARE_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.~+/=]{6,}")
# Notification URLs (Apprise) carry bot tokens, webhook keys and passwords anywhere after the scheme: any such URL
# that reaches text keeps only its scheme. http(s) URLs are left alone (the Polygon base URL and UI links).
NOTIFY_SCHEMES = (
    "tgram", "slack", "discord", "mailto", "mailtos", "json", "jsons", "form", "forms", "xml", "xmls", "msteams",
    "ntfy", "ntfys", "pover", "gotify", "gotifys", "matrix", "matrixs", "mmost", "mmosts", "rocket", "rockets",
    "pbul", "signal", "signals", "zulip", "apprise", "apprises", "whatsapp", "twilio", "wxteams", "lametric",
)
_NOTIFY_URL = re.compile(r"(?i)\b(" + "|".join(NOTIFY_SCHEMES) + r")://[^\s'\",]+")

_secrets: set[str] = set()
_lock = threading.Lock()
_configured = False


def register_secret(value: str | None) -> None:
    """Remember a secret's value so that it is removed from every later log line."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def url_secrets(url: str) -> list[str]:
    """The parts of a notification URL that may be secret: the URL itself, user and password, the host when it
    is not a network address (Telegram's bot token is the host of tgram://TOKEN/CHAT), path segments and query
    values. Short parts (under 6 characters) are left out: they would redact common words everywhere."""
    parts = urlsplit(url.strip())
    candidates = [url.strip(), parts.username or "", parts.password or ""]
    host = parts.hostname or ""
    if host and host != "localhost" and "." not in host and ":" not in host:  # not a name or an IP address
        candidates.append(parts.netloc.rsplit("@", 1)[-1])
    candidates += [unquote(segment) for segment in parts.path.split("/")]
    candidates += [unquote(value) for _, value in parse_qsl(parts.query)]
    return [c for c in dict.fromkeys(candidates) if len(c) >= 6]


def register_url_secrets(urls: Iterable[str]) -> None:
    """Register every secret part of notification URLs (see `url_secrets`) for redaction."""
    for url in urls:
        for secret in url_secrets(url):
            register_secret(secret)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _QUERY_KEY.sub(r"\1" + REDACTED, text)
    text = _BEARER.sub(r"\1" + REDACTED, text)
    text = _NOTIFY_URL.sub(r"\1://" + REDACTED, text)
    return _BARE_BEARER.sub(r"\1" + REDACTED, text)


def redact_value(value: Any) -> Any:
    """Redact a log value, nested containers included; other objects are logged as redacted text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact_value(key): redact_value(item) for key, item in value.items()}
    if type(value) in (list, tuple, set, frozenset):
        return type(value)(redact_value(item) for item in value)
    if isinstance(value, tuple):  # a namedtuple: its constructor takes fields, not an iterable
        return [redact_value(item) for item in value]
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    return redact(str(value))


# Fields the processors fill from code: the logger's (module) name, the level, the time. Never secret, and left
# as they are: a notification URL's path segment such as "alerts" is registered as a possible secret and would
# otherwise turn the logger spy_pipeline.io.alerts.notifier into spy_pipeline.io.***.notifier.
_CODE_FIELDS = frozenset({"logger", "level", "timestamp"})


def redact_event(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {key: value if key in _CODE_FIELDS else redact_value(value) for key, value in event_dict.items()}


class RedactingFilter(logging.Filter):
    """Applies the same redaction to stdlib records before any handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_event,
    ]


def configure_logging(
    level: str = "INFO", fmt: str = "auto", secrets: Iterable[str | None] = (), secret_urls: Iterable[str] = ()
) -> None:
    """Idempotent: later calls only register more secrets and adjust the level. `secret_urls`: notification URLs
    whose secret parts are registered too (`register_url_secrets`)."""
    global _configured
    for secret in secrets:
        register_secret(secret)
    register_url_secrets(secret_urls)
    root = logging.getLogger()
    root.setLevel(level)
    # per-migration, per-retry and (the embedded sandbox's WebSocket server) per-connection chatter
    for chatty in ("alembic", "urllib3.connectionpool", "apprise", "websockets.server"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    with _lock:
        if _configured:
            return
        _configured = True
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact_event, renderer],
        )
    )
    handler.set_name("spy_pipeline")
    root.handlers = [h for h in root.handlers if h.get_name() != "spy_pipeline"] + [handler]
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
