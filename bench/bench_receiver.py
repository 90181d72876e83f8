"""Receiver benchmark: the real receiver (HMAC, dedup, enqueue into a real Redis) against a bare
aiohttp handler that only reads the body, each one process, driven side by side by the same wrk.

Reports requests/s of both, their ratio, p50/p99, and the receiver's latency at half its maximum
rate (wrk paced with a per-request delay). Medians over several alternating rounds.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import orjson

from bench.wrk import run_wrk
from receiver.signature import sign
from shopsync.devredis import embedded_redis, free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sandbox-webhook-secret"  # mappings/demo.toml
SERVER_CPU, LOAD_CPU = 1, 0  # the server under test on one core, wrk (and Redis's share) on the other


def _payload() -> bytes:
    # A realistic 2024-10 customers/update body (~1.5 kB).
    customer = {
        "id": 7000000012345,
        "email": "asa.lindqvist@example.com",
        "created_at": "2024-03-01T10:00:00+01:00",
        "updated_at": "2024-10-01T12:00:00+02:00",
        "first_name": "Åsa",
        "last_name": "Lindqvist",
        "orders_count": 7,
        "state": "enabled",
        "total_spent": "1234.50",
        "last_order_id": 5500000000001,
        "note": None,
        "verified_email": True,
        "tax_exempt": False,
        "tags": "vip, newsletter",
        "currency": "SEK",
        "phone": "+46701234567",
        "addresses": [
            {
                "id": 1,
                "customer_id": 7000000012345,
                "first_name": "Åsa",
                "last_name": "Lindqvist",
                "address1": "Storgatan 1",
                "city": "Stockholm",
                "province": None,
                "country": "Sweden",
                "zip": "111 22",
                "phone": "+46701234567",
                "country_code": "SE",
                "default": True,
            }
        ],
        "email_marketing_consent": {
            "state": "subscribed",
            "opt_in_level": "single_opt_in",
            "consent_updated_at": "2024-09-01T10:00:00+02:00",
        },
        "sms_marketing_consent": {
            "state": "not_subscribed",
            "opt_in_level": "single_opt_in",
            "consent_updated_at": None,
            "consent_collected_from": "OTHER",
        },
        "admin_graphql_api_id": "gid://shopify/Customer/7000000012345",
    }
    return orjson.dumps(customer)


def _pin(cpu: int) -> None:
    """Keep a process on one core (when the machine has two or more), so the server under test
    and the load generator do not take turns on the same core."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


@contextmanager
def _process(
    args: list[str], port: int, env: dict[str, str], cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: _pin(SERVER_CPU),
    )
    try:
        _wait_http(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def _cpu(pid: int) -> Iterator[list[float]]:
    """CPU seconds (user + system) the process used inside the block, appended to the list.

    Requests per CPU-second hardly move when other work shares the machine, unlike requests per
    second: the benchmark reports both."""
    used: list[float] = []
    start = _cpu_seconds(pid)
    yield used
    used.append(_cpu_seconds(pid) - start)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _with_cpu(row: dict[str, Any], used: list[float]) -> dict[str, Any]:
    row["cpu_us_per_request"] = used[0] * 1e6 / max(row["requests"], 1)
    return row


def _wait_http(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"server exited: {err[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


@contextmanager
def _tree_at(revision: str) -> Iterator[Path]:
    """The project's files at a git revision, in a temporary folder (`git archive`)."""
    with tempfile.TemporaryDirectory(prefix="bench-against-") as folder:
        archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        yield Path(folder)


def run(quick: bool = False) -> dict[str, Any]:
    # A private Redis pinned to the load generator's core: the receiver's core runs the receiver
    # alone, as the bare handler's does (in production Redis is another machine), and no other
    # client of a shared Redis disturbs the figures.
    with embedded_redis(cpu=LOAD_CPU) as redis_url:
        return _run(redis_url, quick)


def _run(redis_url: str, quick: bool) -> dict[str, Any]:
    # Many short alternating rounds, medians: the shared machine's speed drifts over tens of
    # seconds, so the two sides of a pair run close together.
    rounds = 4 if quick else 10
    seconds = 3
    connections = 128
    body = _payload()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "customers/update",
        "X-Shopify-Shop-Domain": "demo-store.myshopify.com",
        "X-Shopify-Hmac-Sha256": sign(SECRET, body),
        "X-Shopify-API-Version": "2024-10",
        "X-Shopify-Event-Id": "bench-event",
        "X-Shopify-Triggered-At": "2024-10-01T12:00:00.000Z",
    }
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SHOPSYNC_KEY_PREFIX": prefix,
        "LOG_LEVEL": "warning",
        "LOG_FORMAT": "json",
    }
    bare_port, recv_port = free_port(), free_port()
    bare_cmd = [sys.executable, "-m", "bench.bare_server", "--port", str(bare_port)]
    recv_cmd = [sys.executable, "-m", "shopsync.cli", "receiver"]
    bare: list[dict[str, Any]] = []
    real: list[dict[str, Any]] = []
    older: list[dict[str, Any]] = []
    paced: list[dict[str, Any]] = []
    # BENCH_RECEIVER_AGAINST=<git revision>: that revision's receiver runs in the same rounds, so a
    # change is measured side by side with what it replaced.
    against = os.environ.get("BENCH_RECEIVER_AGAINST")
    with ExitStack() as stack:
        bare_proc = stack.enter_context(_process(bare_cmd, bare_port, env))
        recv_proc = stack.enter_context(_process(recv_cmd, recv_port, {**env, "PORT": str(recv_port)}))
        servers = [
            (bare_proc, f"http://127.0.0.1:{bare_port}", bare, "b"),
            (recv_proc, f"http://127.0.0.1:{recv_port}", real, "r"),
        ]
        if against:
            tree = stack.enter_context(_tree_at(against))
            old_port = free_port()
            old_env = {**env, "PORT": str(old_port), "PYTHONPATH": str(tree)}
            old_proc = stack.enter_context(_process(recv_cmd, old_port, old_env, cwd=tree))
            servers.append((old_proc, f"http://127.0.0.1:{old_port}", older, "o"))
        url_recv = servers[1][1]
        for _, url, _, tag in servers:  # warm-up (connections, script load, caches)
            run_wrk(url, body, headers, run_id=f"w{tag}", seconds=2, connections=connections)
        for i in range(rounds):
            for proc, url, rows, tag in servers:
                with _cpu(proc.pid) as used:
                    row = run_wrk(
                        url, body, headers, run_id=f"{tag}{i}", seconds=seconds, connections=connections
                    )
                rows.append(_with_cpu(row, used))
        max_rps = _median(real, "rps")
        # Half the maximum rate: c connections, each pausing between its requests. A connection's
        # cycle is its pause plus the answer's latency, so the pause is calibrated on a short run.
        pace_conns, target = 64, max_rps / 2
        pause_ms = max(1, round(pace_conns / target * 1000) - 1)
        for step in range(3):
            probe = run_wrk(
                url_recv,
                body,
                headers,
                run_id=f"c{step}",
                seconds=2,
                connections=pace_conns,
                pause_ms=pause_ms,
            )
            if abs(probe["rps"] / target - 1) < 0.05:
                break
            latency_ms = pace_conns / probe["rps"] * 1000 - pause_ms
            pause_ms = max(1, round(pace_conns / target * 1000 - latency_ms))
        for i in range(rounds // 2):
            paced.append(
                run_wrk(
                    url_recv,
                    body,
                    headers,
                    run_id=f"p{i}",
                    seconds=seconds,
                    connections=pace_conns,
                    pause_ms=pause_ms,
                )
            )

    bare_rps, recv_rps = _median(bare, "rps"), _median(real, "rps")
    return {
        "name": "receiver",
        "command": "make bench BENCH_ARGS='receiver'",
        "pinning": "server on cpu 1, wrk and a private Redis on cpu 0"
        if (os.cpu_count() or 1) > 1
        else "none",
        "rounds": rounds,
        "seconds_per_round": seconds,
        "connections": connections,
        "bare_rps": round(bare_rps),
        "receiver_rps": round(recv_rps),
        "ratio": round(recv_rps / bare_rps, 3),
        "ratio_of_pairs": round(
            statistics.median(r["rps"] / b["rps"] for r, b in zip(real, bare, strict=True)), 3
        ),
        "bare_cpu_us_per_request": round(_median(bare, "cpu_us_per_request"), 1),
        "receiver_cpu_us_per_request": round(_median(real, "cpu_us_per_request"), 1),
        "cpu_ratio": round(_median(bare, "cpu_us_per_request") / _median(real, "cpu_us_per_request"), 3),
        "bare_p50_ms": round(_median(bare, "p50_us") / 1000, 2),
        "bare_p99_ms": round(_median(bare, "p99_us") / 1000, 2),
        "receiver_p50_ms": round(_median(real, "p50_us") / 1000, 2),
        "receiver_p99_ms": round(_median(real, "p99_us") / 1000, 2),
        "receiver_non2xx": sum(r["non2xx"] for r in real),
        "half_rate_target_rps": round(max_rps / 2),
        "half_rate_achieved_rps": round(_median(paced, "rps")),
        "half_rate_pacing": f"{pace_conns} connections, {pause_ms} ms between requests",
        "half_rate_p50_ms": round(_median(paced, "p50_us") / 1000, 2),
        "half_rate_p99_ms": round(_median(paced, "p99_us") / 1000, 2),
        "against": _against(against, bare, older),
        "raw": {"bare": bare, "receiver": real, "half_rate": paced, "against": older},
    }


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def _against(
    revision: str | None, bare: list[dict[str, Any]], older: list[dict[str, Any]]
) -> dict[str, Any] | None:
    if not revision:
        return None
    return {
        "revision": revision,
        "receiver_rps": round(_median(older, "rps")),
        "ratio": round(_median(older, "rps") / _median(bare, "rps"), 3),
        "receiver_cpu_us_per_request": round(_median(older, "cpu_us_per_request"), 1),
    }


if __name__ == "__main__":
    print(orjson.dumps(run(quick="--quick" in sys.argv), option=orjson.OPT_INDENT_2).decode())
