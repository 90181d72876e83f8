"""The benchmarks' view of long Redis commands (bench/redis_stalls.py): what the server's SLOWLOG
logged during a phase, summed, with the server's own settings put back."""

from __future__ import annotations

import redis.asyncio as aioredis

from bench.redis_stalls import THRESHOLD_US, command_name, slow_commands, summary
from core.redis_conn import typed

# A script that keeps Redis busy for a few milliseconds, as a long save script would.
BUSY = "local n = 0 for i = 1, tonumber(ARGV[1]) do n = n + i end return 1"


def test_the_summary_sums_by_command_and_names_a_script_by_its_sha() -> None:
    entries = [
        {"id": 1, "duration": 4000, "command": b"EVALSHA d6d740c295fa4812 1504 k1 k2"},
        {"id": 2, "duration": 2000, "command": b"EVALSHA d6d740c295fa4812 304 k1"},
        {"id": 3, "duration": 1500, "command": b"mget a b c"},
    ]
    out = summary(entries)
    assert out["count"] == 3 and out["total_ms"] == 7.5 and out["max_ms"] == 4.0
    first, second = out["top"]
    assert first == {
        "command": "EVALSHA d6d740c2",
        "count": 2,
        "total_ms": 6.0,
        "median_ms": 4.0,
        "max_ms": 4.0,
    }
    assert second["command"] == "MGET" and second["count"] == 1
    assert summary([]) == {"threshold_ms": 1.0, "count": 0, "total_ms": 0.0, "max_ms": 0.0, "top": []}
    assert command_name("EVALSHA") == "EVALSHA"


async def test_a_long_script_in_the_phase_is_logged_and_the_settings_come_back(redis: aioredis.Redis) -> None:
    before = await redis.config_get("slowlog-*")
    await typed(redis.eval(BUSY, 0, "2000000"))  # before the phase: not counted
    async with slow_commands(redis) as slow:
        assert (
            int((await redis.config_get("slowlog-log-slower-than"))["slowlog-log-slower-than"])
            == THRESHOLD_US
        )
        await typed(redis.eval(BUSY, 0, "2000000"))
    assert await redis.config_get("slowlog-*") == before
    scripts = [t for t in slow["top"] if t["command"] == "EVAL"]
    assert scripts and scripts[0]["count"] == 1 and scripts[0]["max_ms"] >= 1.0, slow
