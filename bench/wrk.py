"""Driving wrk: a Lua script that signs nothing (the body is fixed and pre-signed) but gives every
request a unique X-Shopify-Webhook-Id, optional pacing, and a JSON summary on stdout."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Any

import orjson

_LUA = r"""
local counter = 0
local body = [==[BODY]==]
local hdrs = HEADERS
local pause = PAUSE
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function request()
  counter = counter + 1
  hdrs["X-Shopify-Webhook-Id"] = "RUNID-" .. tostring(tid or 0) .. "-" .. tostring(counter)
  return wrk.format("POST", "/webhooks/shopify", hdrs, body)
end
if pause > 0 then
  function delay() return pause end
end
function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "connect_errors": %d, "read_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, non2xx, summary.errors.connect, summary.errors.read,
    summary.errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is needed for this benchmark: apt-get install wrk")
    return found


def run_wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    run_id: str,
    seconds: float,
    connections: int,
    threads: int = 1,
    pause_ms: int = 0,
    cpu: int | None = 0,
) -> dict[str, Any]:
    lua_headers = "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}"
    script = (
        _LUA.replace("BODY", body.decode())
        .replace("HEADERS", lua_headers)
        .replace("PAUSE", str(pause_ms))
        .replace("RUNID", run_id)
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        pin = (
            ["taskset", "-c", str(cpu)]
            if cpu is not None and shutil.which("taskset") and (os.cpu_count() or 1) > 1
            else []
        )
        out = subprocess.run(
            [
                *pin,
                ensure_wrk(),
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{int(seconds)}s",
                "--timeout",
                "5s",
                "-s",
                path,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(path)
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    result: dict[str, Any] = orjson.loads(line)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result
