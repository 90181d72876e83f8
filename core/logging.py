"""structlog set-up: JSON lines in production, readable console output on a terminal.

Every event passes a scrubbing processor: values under secret-looking keys are replaced, and any
email address or phone number in any string value is masked, so personal data and credentials
never reach a log line whatever the caller passed.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

_SECRET_KEY = re.compile(r"(secret|token|password|authorization|api[_-]?key|hmac|signature)", re.I)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# E.164 and common written forms: a leading + or 00 and 7+ digits, separators allowed.
_PHONE = re.compile(r"(?<![\w])(?:\+|00)\d[\d \-().]{6,18}\d")


def mask_email(email: str) -> str:
    """`jane.doe@example.com` -> `j***@e***.com#1a2b3c`: readable shape, stable short hash."""
    local, _, domain = email.partition("@")
    tld = domain.rsplit(".", 1)[-1] if "." in domain else ""
    return f"{local[:1].lower()}***@{domain[:1].lower()}***.{tld.lower()}#{short_hash(email.lower())}"


def mask_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    return f"+***{digits[-2:]}#{short_hash(digits)}"


def short_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:6]


def scrub_text(text: str) -> str:
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_KEY.search(str(k)) else _scrub(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def scrub_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if _SECRET_KEY.search(key):
            event[key] = "***"
        else:
            event[key] = _scrub(event[key])
    return event


def _orjson_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(fmt: str = "json", level: str = "info") -> None:
    level_no = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub_processor,
    ]
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=True,
    )
    # Libraries (aiohttp, arq) log through the standard library: render their records with the
    # same renderer (JSON lines in production), through the same scrubbing.
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                scrub_processor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_no)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class _StderrLogger(structlog.PrintLogger):
    """Writes to whatever `sys.stderr` is at the time of the write, not at configuration:
    loggers are cached on first use, and a stream bound then may be gone later (test capture,
    a redirected stderr)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(sys.stderr)

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on the current `sys.stderr` (see `_StderrLogger`)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
