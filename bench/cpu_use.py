"""Where a benchmark's CPU goes: cores used per role (the bench process itself, the receiver, the
workers, the sandboxes, Redis) over a window, and the whole machine's busy share.

On a shared 2-core machine a benchmark that runs the load generator, the sandboxes and the
service side by side can be limited by the machine rather than by the service: these figures
say which, next to the latencies they explain.

    meter = CpuMeter({"workers": [pid, pid], "receiver": [pid]})
    meter.start()
    ...                                 # the window
    cores = meter.stop()                # {"workers": 1.2, ..., "machine_busy_share": 0.97}
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import psutil
import redis.asyncio as aioredis


def redis_server_pids(redis_url: str) -> list[int]:
    """The redis-server processes serving the port of `redis_url` (by their command line), if
    any run here."""
    port = urlsplit(redis_url).port or 6379
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "redis-server" in (proc.info.get("name") or "") + cmdline and f"{port}" in cmdline:
            found.append(proc.pid)
    return found


def _with_children(pid: int, claimed: set[int]) -> float:
    """CPU seconds of a process and of its children, live (a worker's walk process,
    worker/fullsync/walk_process.py) or ended and reaped; a child with a role of its own (the
    bench's sandboxes, receiver and workers) and what it started count for that role."""
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        live = proc.children()
    except psutil.Error:  # gone: it counts for nothing from here on
        return 0.0
    total = times.user + times.system + times.children_user + times.children_system
    while live:
        child = live.pop()
        if child.pid in claimed:
            continue
        try:
            child_times = child.cpu_times()
            live.extend(child.children())
        except psutil.Error:  # ended between the calls: its parent counts it once reaped
            continue
        total += child_times.user + child_times.system
    return total


class CpuMeter:
    def __init__(self, roles: Mapping[str, Iterable[int]]) -> None:
        self.roles = {role: list(pids) for role, pids in roles.items()}
        self._start: dict[str, float] = {}
        self._idle = 0.0
        self._steal = 0.0
        self._at = 0.0
        self.used: dict[str, float] = {}

    def _cpu(self) -> dict[str, float]:
        out: dict[str, float] = {}
        claimed = {pid for pids in self.roles.values() for pid in pids}
        for role, pids in self.roles.items():
            total = 0.0
            for pid in pids:
                total += _with_children(pid, claimed)
            out[role] = total
        return out

    def start(self) -> None:
        self._start = self._cpu()
        self._idle = _machine_idle()
        self._steal = _machine_steal()
        self._at = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Cores each role used since `start`, the machine's busy share (1.0: every core busy) and
        its steal share (the time the hypervisor gave this machine's cores to other guests: a
        shared host's noise, which makes every process here slower alike)."""
        wall = max(time.monotonic() - self._at, 1e-9)
        now = self._cpu()
        self.used = {role: now[role] - self._start.get(role, 0.0) for role in now}  # CPU seconds
        cores = {role: round(used / wall, 2) for role, used in self.used.items()}
        idle = (_machine_idle() - self._idle) / wall
        cpus = psutil.cpu_count() or 1
        cores["machine_busy_share"] = round(max(0.0, 1.0 - idle / cpus), 2)
        cores["machine_steal_share"] = round(max(0.0, (_machine_steal() - self._steal) / wall / cpus), 3)
        return cores


def python_speed_ms() -> float:
    """CPU milliseconds of a fixed pure-Python loop (best of 3): how fast this machine runs the
    service's kind of code right now. Shared hosts vary by 1.5x from day to day; results of two
    runs compare only next to this figure."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        total = 0
        for i in range(2_000_000):
            total += i * i
        best = min(best, time.process_time() - start)
    return round(best * 1000, 1)


async def command_calls(redis: aioredis.Redis) -> dict[str, int]:
    """Redis's count of calls per command so far (`INFO commandstats`), for `per_unit`."""
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def per_unit(before: dict[str, int], after: dict[str, int], units: int) -> dict[str, float]:
    """Commands called between two `command_calls` per unit of work (a webhook, a customer):
    the total and each command from the most called. Every client's commands (a run's own only
    with a Redis of its own, `devredis`); commands run by scripts count besides their EVALSHA."""
    delta = {k: (v - before.get(k, 0)) / max(1, units) for k, v in after.items()}
    top = sorted(((round(v, 2), k) for k, v in delta.items() if v >= 0.01), reverse=True)
    return {"total": round(sum(delta.values()), 2), **{k: v for v, k in top}}


def _machine_steal() -> float:
    return float(getattr(psutil.cpu_times(), "steal", 0.0))


def _machine_idle() -> float:
    times = psutil.cpu_times()
    return float(times.idle + getattr(times, "iowait", 0.0))
