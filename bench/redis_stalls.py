"""The Redis server's long commands during a bench phase, from its SLOWLOG.

Redis runs one command at a time: while a long one runs (a Lua script over hundreds of keys, an
MGET of a thousand values), every other client waits, the webhooks' calls included. So a sync's
long commands add to the real-time tail whatever the worker's scheduling. The phase sets the
slowlog's threshold to `THRESHOLD_US` (and its length), and puts the server's own settings back
afterwards; entries older than the phase are left alone. The log is the server's: on a shared
Redis it holds other clients' commands too, and two phases that overlap on one server (two
benches at once) would restore each other's settings wrongly (`make bench` starts a Redis of its own
unless REDIS_URL is set). Commands inside MULTI/EXEC are logged one
by one (EXEC itself never is), so a transaction's whole length is not seen. On a shared, busy
machine a short command is sometimes logged too: the server process lost its core mid-command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

THRESHOLD_US = 1000
KEEP = 10_000
TOP = 5


@asynccontextmanager
async def slow_commands(redis: Any) -> AsyncIterator[dict[str, Any]]:
    """Yields a dict filled, when the block ends, with `summary` of the commands logged meanwhile."""
    settings = await redis.config_get("slowlog-*")
    before = await redis.slowlog_get(1)
    last = before[0]["id"] if before else -1
    out: dict[str, Any] = {}
    try:
        await redis.config_set("slowlog-log-slower-than", THRESHOLD_US)
        await redis.config_set("slowlog-max-len", KEEP)
        yield out
        entries = [e for e in await redis.slowlog_get(KEEP) if e["id"] > last]
        out.update(summary(entries))
    finally:
        for name, value in settings.items():
            await redis.config_set(name, value)


def summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Count, total and longest (ms), and the commands that took longest in all."""
    by_name: dict[str, list[int]] = {}
    for entry in entries:
        by_name.setdefault(command_name(entry["command"]), []).append(int(entry["duration"]))
    durations = sorted(d for ds in by_name.values() for d in ds)
    top = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:TOP]
    return {
        "threshold_ms": THRESHOLD_US / 1000,
        "count": len(durations),
        "total_ms": round(sum(durations) / 1000, 1),
        "max_ms": round(durations[-1] / 1000, 2) if durations else 0.0,
        "top": [
            {
                "command": name,
                "count": len(ds),
                "total_ms": round(sum(ds) / 1000, 1),
                "median_ms": round(sorted(ds)[len(ds) // 2] / 1000, 2),
                "max_ms": round(max(ds) / 1000, 2),
            }
            for name, ds in top
        ],
    }


def command_name(command: bytes | str) -> str:
    """`EVALSHA d6d740c2` for a script (the start of its sha names it), else the command."""
    text = command.decode(errors="replace") if isinstance(command, bytes) else command
    parts = text.split(" ", 2)
    name = parts[0].upper()
    if name == "EVALSHA" and len(parts) > 1:
        return f"{name} {parts[1][:8]}"
    return name


__all__ = ["THRESHOLD_US", "command_name", "slow_commands", "summary"]
