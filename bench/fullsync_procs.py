"""Separate OS processes for full-sync runs: the two sandboxes and `shopsync worker`s.

Used by `bench/bench_fullsync.py` and the full-sync resume test (SIGKILL needs real processes).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from sandbox.installation import installation_document, write_installation
from sandbox.shopify.store import today_anchor

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Procs:
    shopify_url: str = ""
    apsis_url: str = ""
    shops_file: Path = Path()
    anchor: int = 0  # the Shopify sandbox's `--anchor`: an in-process copy of its store needs it
    env: dict[str, str] = field(default_factory=dict)
    sandboxes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)

    def start_worker(self, name: str | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shopsync.cli", "worker"], env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL
        )
        proc.name = name or f"worker-{len(self.workers) + 1}"  # type: ignore[attr-defined]
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def sample_rss(self) -> None:
        """Record each process's resident memory (call it often; keeps the peak)."""
        named: list[tuple[str, subprocess.Popen[bytes]]] = [
            ("shopify-sandbox", self.sandboxes[0]),
            ("apsis-sandbox", self.sandboxes[1]),
            *((getattr(w, "name", "worker"), w) for w in self.workers),
        ]
        for name, proc in named:
            if proc.poll() is not None:
                continue
            try:
                process = psutil.Process(proc.pid)
                rss = process.memory_info().rss
                # A worker's walk process (worker/fullsync/walk_process.py) counts as its worker's:
                # a dyno's memory is the sum.
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss += child.memory_info().rss
            except psutil.Error:
                continue
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)

    def command(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shopsync.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _sandbox(module: str, args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", "--print-url", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("http"):
        proc.kill()
        raise RuntimeError(f"{module} did not start: {line!r}")
    return proc, line


@contextmanager
def processes(
    redis_url: str,
    prefix: str,
    workdir: Path,
    *,
    customers: int,
    seed: int = 1,
    no_limits: bool = False,
    plan: str | None = None,
    **shop_overrides: Any,
) -> Iterator[Procs]:
    """Both sandboxes as processes and an installations file for them; workers via `start_worker`.
    `plan`: the Shopify store's plan (its GraphQL rate), the sandbox's default when None. The
    store's history ends at today's midnight UTC as of now, fixed (`Procs.anchor`): a run that
    crosses midnight compares with the same store."""
    extra = ["--no-limits"] if no_limits else []
    plan_args = ["--plan", plan] if plan else []
    p = Procs(anchor=today_anchor(time.time()))
    store_args = ["--customers", str(customers), "--seed", str(seed), "--anchor", str(p.anchor)]
    try:
        shopify, p.shopify_url = _sandbox("sandbox.shopify", [*store_args, *extra, *plan_args])
        p.sandboxes.append(shopify)
        apsis, p.apsis_url = _sandbox("sandbox.apsis", extra)
        p.sandboxes.append(apsis)
        document = installation_document(p.shopify_url, p.apsis_url, **shop_overrides)
        p.shops_file = write_installation(workdir / "shops.toml", document)
        p.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "SHOPSYNC_KEY_PREFIX": prefix,
            "SHOPS_FILE": str(p.shops_file),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "warning"),
            "LOG_FORMAT": "json",
        }
        yield p
    finally:
        for proc in [*p.workers, *p.sandboxes]:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 30
        for proc in [*p.workers, *p.sandboxes]:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
