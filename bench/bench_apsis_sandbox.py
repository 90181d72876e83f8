"""APSIS One sandbox throughput: PATCH attribute writes/s on one core, with p50/p99 latency.

The sandbox runs alone in a subprocess (`python -m sandbox.apsis --no-limits`), pinned to one
core where the OS allows it; the load generator runs on the other cores: wrk with a Lua script
when installed (`apt-get install -y wrk`), else concurrent aiohttp clients in a second process.
Every request is a merge-patch of a realistic attribute set on one of many profile keys; the
write count is read back from the sandbox (`/_sandbox`) so only applied writes are counted.

    python -m bench.bench_apsis_sandbox [--quick] [--driver wrk|aiohttp]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from sandbox.apsis.account import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, KEYSPACE, SECTION

ROOT = Path(__file__).resolve().parent.parent
PROFILES = 100_000
BODY = orjson.dumps(
    {
        "1001": "asa.lindqvist@example.com",
        "1002": "Åsa",
        "1003": "Lindqvist",
        "1004": "+46701234567",
        "1005": "Göteborg",
        "1006": "SE",
        "1007": "vip, newsletter",
        "1008": 7,
        "1009": 1234.5,
        "1010": "2024-03-01T10:00:00+01:00",
    }
)
PATH_PREFIX = f"/audience/keyspaces/{KEYSPACE}/profiles/"
PATH_SUFFIX = f"/sections/{SECTION}/attributes"

_LUA = r"""
local body = [==[BODY]==]
local prefix = "PREFIX"
local suffix = "SUFFIX"
local profiles = PROFILES
local headers = {["Authorization"] = "Bearer TOKEN", ["Content-Type"] = "application/merge-patch+json"}
local n = 0
function init(args)
  n = math.random(profiles)
end
function request()
  n = n + 7919
  if n > profiles then n = n - profiles end
  return wrk.format("PATCH", prefix .. tostring(n) .. suffix, headers, body)
end
function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def _cores() -> tuple[set[int] | None, set[int] | None]:
    """(server core, load generator cores), or Nones where affinity is not available."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return {cores[0]}, set(cores[1:])


@contextlib.contextmanager
def _sandbox_process(core: set[int] | None) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.apsis", "--port", "0", "--no-limits", "--print-url"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if core is not None:
            os.sched_setaffinity(proc.pid, core)
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the sandbox did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _token_and_writes(url: str, want_token: bool) -> tuple[str, int]:
    async with aiohttp.ClientSession() as session:
        token = ""
        if want_token:
            creds = {
                "grant_type": "client_credentials",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
            }
            async with session.post(url + "/oauth/token", json=creds) as resp:
                token = (await resp.json())["access_token"]
        async with session.get(url + "/_sandbox") as resp:
            writes = int((await resp.json())["writes"])
        return token, writes


def _run_wrk(
    url: str, token: str, seconds: float, connections: int, cores: set[int] | None
) -> dict[str, Any]:
    script = (
        _LUA.replace("BODY", BODY.decode())
        .replace("PREFIX", PATH_PREFIX)
        .replace("SUFFIX", PATH_SUFFIX)
        .replace("PROFILES", str(PROFILES))
        .replace("TOKEN", token)
    )
    threads = max(1, min(4, len(cores) if cores else 1))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        cmd = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            path,
            url,
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        if cores is not None:
            os.sched_setaffinity(proc.pid, cores)
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        os.unlink(path)
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    raw: dict[str, Any] = orjson.loads(line)
    return {
        "requests": raw["requests"],
        "duration_s": raw["duration_us"] / 1e6,
        "non_2xx": raw["non2xx"],
        "socket_errors": raw["socket_errors"],
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }


async def _aiohttp_load(url: str, token: str, seconds: float, connections: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/merge-patch+json"}
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)

    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:

        async def worker(start: int) -> None:
            nonlocal errors
            n = start
            while time.perf_counter() < deadline:
                n = (n + 7919) % PROFILES
                t0 = time.perf_counter()
                async with session.patch(f"{PATH_PREFIX}{n}{PATH_SUFFIX}", data=BODY) as resp:
                    await resp.read()
                    if resp.status != 204:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker(i * 997) for i in range(connections)))
        duration = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {
        "requests": len(latencies),
        "duration_s": duration,
        "non_2xx": errors,
        "socket_errors": 0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
    }


def _aiohttp_child(url: str, token: str, seconds: float, connections: int) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    print(orjson.dumps(asyncio.run(_aiohttp_load(url, token, seconds, connections))).decode(), flush=True)


def _run_aiohttp(
    url: str, token: str, seconds: float, connections: int, cores: set[int] | None
) -> dict[str, Any]:
    code = "import sys; from bench.bench_apsis_sandbox import _aiohttp_child as c; c(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, url, token, str(seconds), str(connections)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    if cores is not None:
        os.sched_setaffinity(proc.pid, cores)
    out, _ = proc.communicate(timeout=seconds + 60)
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    return result


def run(quick: bool = False, driver: str | None = None) -> dict[str, object]:
    """Start the sandbox on one core, drive PATCH writes at it, return writes/s and latency."""
    seconds = 3.0 if quick else 10.0
    connections = 64
    driver = driver or ("wrk" if shutil.which("wrk") else "aiohttp")
    server_core, load_cores = _cores()
    with _sandbox_process(server_core) as url:
        token, _ = asyncio.run(_token_and_writes(url, True))
        # Warm up (first profiles created, code paths hot), then measure.
        warm = _run_aiohttp if driver == "aiohttp" else _run_wrk
        warm(url, token, 1.0, connections, load_cores)
        _, writes_before = asyncio.run(_token_and_writes(url, False))
        load = (_run_wrk if driver == "wrk" else _run_aiohttp)(url, token, seconds, connections, load_cores)
        _, writes_after = asyncio.run(_token_and_writes(url, False))
    writes = writes_after - writes_before
    return {
        "benchmark": "apsis_sandbox",
        "command": "python -m bench.bench_apsis_sandbox" + (" --quick" if quick else ""),
        "driver": driver,
        "server_pinned_to_core": sorted(server_core) if server_core else None,
        "load_cores": sorted(load_cores) if load_cores else None,
        "connections": connections,
        "seconds": load["duration_s"],
        "requests": load["requests"],
        "writes": writes,
        "writes_per_s": round(writes / load["duration_s"], 1),
        "non_2xx": load["non_2xx"],
        "socket_errors": load["socket_errors"],
        "p50_ms": round(load["p50_ms"], 3),
        "p99_ms": round(load["p99_ms"], 3),
        "max_ms": round(load["max_ms"], 3),
        "target_writes_per_s": 2000,
        "ok": writes / load["duration_s"] >= 2000 and load["non_2xx"] == 0,
    }


def main(argv: list[str]) -> int:
    driver = None
    if "--driver" in argv:
        driver = argv[argv.index("--driver") + 1]
    result = run(quick="--quick" in argv, driver=driver)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
