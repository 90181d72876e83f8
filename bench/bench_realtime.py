"""Real-time latency: from the webhook's 200 to the APSIS write, at a steady rate.

The bench sends signed `customers/update` webhooks (2024-10 payloads of the sandbox's customers)
at a steady rate to a real receiver process; one real worker process applies them to the APSIS
sandbox at its default limits (100 requests/s per account, 10/s per profile). Every webhook is a
different customer whose sync is exactly one attribute PATCH, so the APSIS budget is not the
bottleneck and what is measured is the pipeline's own latency. The latency of each webhook is
the APSIS sandbox's time of the PATCH minus the time the bench got the 200 (same clock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis

from bench.cpu_use import CpuMeter, command_calls, per_unit, python_speed_ms
from receiver.signature import sign
from sandbox.apsis.server import ApsisSandbox
from sandbox.installation import installation_document, write_installation
from sandbox.shopify.models import EmailConsent
from sandbox.shopify.serialize import serialize_customer
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store
from shopsync.devredis import free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sandbox-webhook-secret"


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "shopsync.cli", *args], env=env, cwd=ROOT)


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def update_headers(domain: str, body: bytes) -> dict[str, str]:
    """A signed `customers/update` delivery's headers, as Shopify sends them (2024-10 payload)."""
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "customers/update",
        "X-Shopify-Shop-Domain": domain,
        "X-Shopify-Hmac-Sha256": sign(SECRET, body),
        "X-Shopify-API-Version": "2024-10",
        "X-Shopify-Webhook-Id": uuid.uuid4().hex,
        "X-Shopify-Triggered-At": "2026-01-01T00:00:00.000Z",
    }


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("receiver did not start")


async def _run(rate: float, seconds: float) -> dict[str, Any]:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    count = int(rate * seconds)
    store = Store(seed=11, size=count)
    prefix = f"bench-rt-{uuid.uuid4().hex[:8]}"
    async with ApsisSandbox() as apsis, ShopifySandbox(store) as shopify:
        tmp = Path(tempfile.mkdtemp(prefix="bench-rt-"))
        shops = write_installation(tmp / "shops.toml", installation_document(shopify.url, apsis.url))
        port = free_port()
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "SHOPSYNC_KEY_PREFIX": prefix,
            "SHOPS_FILE": str(shops),
            "PORT": str(port),
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
        }
        receiver = _spawn(["receiver"], env)
        worker = _spawn(["worker", "--queue", "realtime"], env)
        try:
            await _wait_port(port, receiver)
            await asyncio.sleep(1.0)  # the worker connects and starts polling
            ids = list(store.customer_ids())[:count]
            bodies = []
            for cid in ids:
                customer = store.customer(cid)
                assert customer is not None
                # Not subscribed and no phone: the first sync is exactly one attribute PATCH.
                customer = dataclasses.replace(
                    customer,
                    phone=None,
                    email_consent=EmailConsent("not_subscribed", None, None),
                    sms_consent=None,
                )
                bodies.append((cid, orjson.dumps(serialize_customer(customer, "2024-10", for_webhook=True))))
            acked: dict[str, float] = {}
            errors = 0
            # The service's CPU from the first webhook to the last write: per webhook, the cost
            # that sets how many one worker process takes (docs/PERFORMANCE.md).
            meter = CpuMeter({"worker": [worker.pid], "receiver": [receiver.pid]})
            counter = aioredis.Redis.from_url(redis_url)
            calls0 = await command_calls(counter)
            meter.start()
            url = f"http://127.0.0.1:{port}/webhooks/shopify"
            async with aiohttp.ClientSession() as http:

                async def send(cid: int, body: bytes) -> None:
                    nonlocal errors
                    headers = update_headers(store.domain, body)
                    async with http.post(url, data=body, headers=headers) as resp:
                        if resp.status == 200:
                            acked[str(cid)] = time.time()
                        else:
                            errors += 1

                start = time.monotonic()
                tasks = []
                for i, (cid, body) in enumerate(bodies):
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(send(cid, body)))
                await asyncio.gather(*tasks)
            # Wait for the last writes.
            deadline = time.monotonic() + 60
            written: dict[str, float] = {}
            while time.monotonic() < deadline:
                for w in apsis.account.writes_of("attributes"):
                    written.setdefault(w.params["profile_key"], w.at)
                if len(written) >= len(acked):
                    break
                await asyncio.sleep(0.5)
            cores, used = meter.stop(), meter.used
            calls1 = await command_calls(counter)
            await counter.aclose()
        finally:
            await asyncio.to_thread(_stop, receiver, worker)
        latencies = [written[k] - t for k, t in acked.items() if k in written]
        requests = sum(apsis.account.requests.values())
        limited = sum(apsis.account.rate_limited.values())
    return {
        "name": "realtime",
        "command": "make bench BENCH_ARGS='realtime'",
        "rate_per_s": rate,
        "seconds": seconds,
        "webhooks_acked": len(acked),
        "webhook_errors": errors,
        "writes_seen": len(latencies),
        "lost": len(acked) - len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p90_ms": round(_percentile(latencies, 0.90) * 1000, 1) if latencies else None,
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "worker_cpu_ms_per_webhook": round(used["worker"] * 1000 / max(1, len(latencies)), 2),
        "receiver_cpu_ms_per_webhook": round(used["receiver"] * 1000 / max(1, len(latencies)), 2),
        "machine_busy_share": cores["machine_busy_share"],
        "machine_steal_share": cores["machine_steal_share"],
        "python_speed_ms": python_speed_ms(),
        "apsis_requests": requests,
        "apsis_429": limited,
        "redis_commands_per_webhook": per_unit(calls0, calls1, len(latencies)),
        "goal": "p50 <= 100 ms, p99 <= 500 ms",
    }


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(rate=50.0, seconds=20.0 if quick else 60.0))


if __name__ == "__main__":
    print(orjson.dumps(run(quick="--quick" in sys.argv), option=orjson.OPT_INDENT_2).decode())
