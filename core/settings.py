"""Process settings from the environment (the contract's table), read once at start-up."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_SHOPS_FILE = str(Path(__file__).resolve().parent.parent / "mappings" / "demo.toml")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "notset")
_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical"}  # the names the logging module also takes


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str = "redis://localhost:6379/0"
    shops_file: str = DEFAULT_SHOPS_FILE
    port: int = 8080
    admin_token: str | None = field(default=None, repr=False)
    log_format: str = "json"
    log_level: str = "info"
    # Prefix of every key and queue name this service writes, so two deployments (or two test
    # runs) can share one Redis without seeing each other.
    key_prefix: str = "shopsync"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        log_format = env.get("LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
        if log_format not in ("json", "console"):
            raise ValueError(f"LOG_FORMAT must be json or console, not {log_format!r}")
        port = _port(env, "PORT", lowest=0)  # 0: any free port (tests)
        port = 8080 if port is None else port
        redis_url = env.get("REDIS_URL") or "redis://localhost:6379/0"
        _check_redis_url(redis_url)
        log_level = (env.get("LOG_LEVEL") or "info").strip().lower() or "info"
        log_level = _LEVEL_ALIASES.get(log_level, log_level)
        if log_level not in LOG_LEVELS:
            raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}")
        return cls(
            redis_url=redis_url,
            shops_file=env.get("SHOPS_FILE") or DEFAULT_SHOPS_FILE,
            port=port,
            admin_token=env.get("ADMIN_TOKEN") or None,
            log_format=log_format,
            log_level=log_level,
            key_prefix=env.get("SHOPSYNC_KEY_PREFIX") or "shopsync",
        )


class SettingError(ValueError):
    """A tuning variable of the environment that is not a number: one line names it."""


def default_shops_file_warning(settings: Settings, env: Mapping[str, str] | None = None) -> str | None:
    """A start-up warning when SHOPS_FILE is unset: a deployment that forgot it would otherwise
    serve the sandbox's demo file (127.0.0.1 addresses) without a word."""
    env = os.environ if env is None else env
    if env.get("SHOPS_FILE") or settings.shops_file != DEFAULT_SHOPS_FILE:
        return None
    return "SHOPS_FILE is not set: serving the local sandbox's mappings/demo.toml"


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    """A module's whole-number tuning setting (`SHOPSYNC_...`), read at import; `default` when unset."""
    value = _env_number(name, int, "an integer", minimum)
    return default if value is None else int(value)


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    """A module's tuning setting (`SHOPSYNC_...`) that may have a fraction; `default` when unset."""
    value = _env_number(name, float, "a number", minimum)
    return default if value is None else value


def _env_number(name: str, parse: type[int] | type[float], what: str, minimum: float | None) -> float | None:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or (minimum is not None and value < minimum):
        floor = "" if minimum is None else f" of at least {minimum:g}"
        raise SettingError(f"{name} must be {what}{floor}, not {raw!r}")
    return value


def _check_redis_url(url: str) -> None:
    """Checked here so that every process and command says what is wrong in one line: the
    scheme, a host (unix: a path), a numeric port and database (redis-py and arq would raise
    deep inside, or quietly fall back to localhost)."""
    if not url.lower().startswith(REDIS_SCHEMES):
        # Never echo the value: without a scheme its start may be the password.
        scheme = f"its scheme is {url.partition('://')[0]!r}" if "://" in url else "it has no scheme"
        raise ValueError(f"REDIS_URL must start with {', '.join(REDIS_SCHEMES)} ({scheme})")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if url.lower().startswith("unix://"):
        if not parts.path:
            raise ValueError("REDIS_URL unix:// needs the socket's path (unix:///path/to/redis.sock)")
        return
    database = parts.path.lstrip("/")
    if not parts.hostname or port == -1 or (database and not database.isdigit()):
        raise ValueError(
            "REDIS_URL must be redis[s]://[[user]:password@]host[:port][/database] with a host, a"
            " numeric port and a numeric database"
        )


def _port(env: Mapping[str, str], name: str, lowest: int) -> int | None:
    """A TCP port from the environment (`lowest`-65535), None when unset."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not lowest <= int(raw) <= 65535:
        raise ValueError(f"{name} must be a port number from {lowest} to 65535, not {raw!r}")
    return int(raw)
