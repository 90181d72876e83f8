"""Process settings from the environment (the contract's table), read once at start-up."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SHOPS_FILE = str(Path(__file__).resolve().parent.parent / "mappings" / "demo.toml")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


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
        if not redis_url.startswith(REDIS_SCHEMES):
            # Checked here so every process and command says so in one line, not a traceback.
            raise ValueError(
                f"REDIS_URL must start with {', '.join(REDIS_SCHEMES)} (it starts {redis_url[:8]!r})"
            )
        log_level = (env.get("LOG_LEVEL") or "info").lower()
        log_level = "warning" if log_level == "warn" else log_level
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


def env_int(name: str, default: int) -> int:
    """A module's whole-number tuning setting (`SHOPSYNC_...`), read at import; `default` when unset."""
    value = _env_number(name, int, "an integer")
    return default if value is None else int(value)


def env_float(name: str, default: float) -> float:
    """A module's tuning setting (`SHOPSYNC_...`) that may have a fraction; `default` when unset."""
    value = _env_number(name, float, "a number")
    return default if value is None else value


def _env_number(name: str, parse: type[int] | type[float], what: str) -> float | None:
    raw = (os.environ.get(name) or "").strip()
    try:
        return parse(raw) if raw else None
    except ValueError:
        raise SettingError(f"{name} must be {what}, not {raw!r}") from None


def _port(env: Mapping[str, str], name: str, lowest: int) -> int | None:
    """A TCP port from the environment (`lowest`-65535), None when unset."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not lowest <= int(raw) <= 65535:
        raise ValueError(f"{name} must be a port number from {lowest} to 65535, not {raw!r}")
    return int(raw)
