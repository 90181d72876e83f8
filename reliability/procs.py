"""Real processes the scenarios start, kill and restart: `shopsync` services and a private Redis.

Every process writes its stderr and stdout to its own log file under the run's log directory, so
the security scenario can scan every line the suite produced.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

from shopsync.devredis import free_port, redis_answers

ROOT = Path(__file__).resolve().parent.parent


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Service:
    """One `python -m shopsync.cli ARGS` process; `start()` again after a kill restarts it."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shopsync.cli", *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=self._log,
        )
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def ready(self, timeout_s: float = 120.0) -> None:
        """Until the port accepts connections (receivers) or the log says it started (workers)."""
        deadline = time.monotonic() + timeout_s
        marker = b"worker_started"
        offset = self.log_path.stat().st_size if self.port is None and self.starts > 1 else 0
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            if self.port is not None:
                if port_open(self.port):
                    return
            else:
                with self.log_path.open("rb") as f:
                    f.seek(offset)
                    if marker in f.read():
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start: {self.tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self._close_log()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def rss(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-chars:].decode(errors="replace")
        except OSError:
            return ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class RedisServer:
    """A private redis-server with AOF (appendfsync everysec), restartable on the same port and
    directory so it comes back with what it acknowledged."""

    workdir: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = True
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            from shopsync.devredis import redis_server_binary

            binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("no redis-server: apt-get install redis-server")
        if self.proc is None:  # a first start begins empty (a reused directory may hold an AOF)
            shutil.rmtree(self.workdir / "appendonlydir", ignore_errors=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 20
        while not redis_answers(self.url, timeout=0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final rewrite; what survives is what the AOF had."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def service_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN",)}
    env.update(values)
    return env
