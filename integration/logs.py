"""JSON logs: one object per line, carrying the delivery id and ticket ref, never a secret."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import unquote

_delivery_id: ContextVar[str | None] = ContextVar("tierup_delivery_id", default=None)
_ticket_ref: ContextVar[str | None] = ContextVar("tierup_ticket_ref", default=None)

REDACTED = "[redacted]"

# Settings whose values are secrets: their values are scrubbed from every log line.
SECRET_SETTING = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PAT|KEY)(_|$)")

# Credentials that can show up in exception text or echoed requests, whatever their value.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:(?:basic|bearer|token)\s+)?)[^\s\"',}]+()"),
    re.compile(r"(?i)((?:signature|token|secret|password|api[_-]?key)[\w-]*[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+()"),
    re.compile(r"(?i)(://[^/\s:@]+:)[^@\s/]+(@)"),  # user:password@ in URLs
)


@contextmanager
def log_context(*, delivery_id: str | None = None, ticket_ref: str | None = None) -> Iterator[None]:
    """Tag every log line written inside the block with this delivery id and ticket ref."""
    tokens = []
    if delivery_id is not None:
        tokens.append((_delivery_id, _delivery_id.set(delivery_id)))
    if ticket_ref is not None:
        tokens.append((_ticket_ref, _ticket_ref.set(ticket_ref)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values of settings that hold secrets (tokens, webhook secrets, passwords in URLs)."""
    values: list[str] = []
    for name, value in env.items():
        if not value or not name.isupper():
            continue
        if SECRET_SETTING.search(name):
            values.extend(v.strip() for v in value.split(",") if len(v.strip()) >= 4)
        elif name.endswith("_URL") and "@" in value:
            password = _url_password(value)
            if password:
                values.extend({password, unquote(password)})
                # A driver reading up to the first @ shows the rest as the host: those pieces too.
                values.extend(p for p in password.split("@")[1:] if len(p) >= 4)
    return tuple(sorted(set(values), key=len, reverse=True))


def _url_password(url: str) -> str | None:
    """The password of scheme://user:password@host/...: up to the last @ before the host, user optional.

    An @ or / the password holds unencoded still belongs to it (the driver may fail on it, and
    its error then shows the rest): "redis://:pa/ss@cache" and "postgresql://u:p@ss@db" too.
    """
    _, sep, rest = url.partition("://")
    if not sep:
        return None
    userinfo, at, _host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return userinfo.partition(":")[2] or None


class Redactor:
    """Removes known secret values and credential-looking fragments from text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)
        return text


_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, delivery_id, ticket_ref, extras."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redact(record.getMessage()),
            "delivery_id": getattr(record, "delivery_id", None) or _delivery_id.get(),
            "ticket_ref": getattr(record, "ticket_ref", None) or _ticket_ref.get(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in out and not key.startswith("_"):
                out[key] = value if isinstance(value, int | float | bool) or value is None else self.redact(str(value))
        if record.exc_info:
            out["exception"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", *, secrets: Iterable[str] = (), stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (stderr) as one JSON line, scrubbing `secrets`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(Redactor(secrets)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The JSON lines carry none of the caller's file and line, thread or process, so the records
    # need not find them (the Logging HOWTO's "Optimization"): a record per webhook is cheaper.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # Third-party chatter at INFO (every huey task, every HTTP request) drowns the service's own lines.
    for noisy in ("huey", "werkzeug", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
