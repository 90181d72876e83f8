"""Process settings from the environment (the contract's table), read once at start-up."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SHOPS_FILE = str(Path(__file__).resolve().parent.parent / "mappings" / "demo.toml")


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
    worker_metrics_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        log_format = env.get("LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
        if log_format not in ("json", "console"):
            raise ValueError(f"LOG_FORMAT must be json or console, not {log_format!r}")
        try:
            port = int(env.get("PORT", "8080"))
            metrics_port = int(env["WORKER_METRICS_PORT"]) if env.get("WORKER_METRICS_PORT") else None
        except ValueError as exc:
            raise ValueError(f"PORT and WORKER_METRICS_PORT must be integers: {exc}") from None
        return cls(
            redis_url=env.get("REDIS_URL") or "redis://localhost:6379/0",
            shops_file=env.get("SHOPS_FILE") or DEFAULT_SHOPS_FILE,
            port=port,
            admin_token=env.get("ADMIN_TOKEN") or None,
            log_format=log_format,
            log_level=(env.get("LOG_LEVEL") or "info").lower(),
            key_prefix=env.get("SHOPSYNC_KEY_PREFIX") or "shopsync",
            worker_metrics_port=metrics_port,
        )
