"""Reloading the installations file while a process runs: a watcher of the file, and SIGHUP.

`FileWatcher.run` looks at the file every `poll_s` (its modification time, size and inode: an
editor that writes a new file and renames it over the old one counts too) and calls `reload`
when it changed; `trigger` (what SIGHUP is wired to) makes it reload at once, changed or not.
What reloading means is the caller's: the receiver swaps the installations it authenticates
webhooks with, the worker also retires clients and parks the jobs of removed shops. A reload
that fails (a bad file, a missing `${VARIABLE}`) is logged and changes nothing: the process goes
on with what it had, and the next change of the file is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable

import structlog

from core.settings import env_float

log = structlog.get_logger("reload")

POLL_S = env_float("SHOPSYNC_RELOAD_POLL_S", 2.0, minimum=0.05)

Stamp = tuple[int, int, int] | None


def stamp(path: str) -> Stamp:
    """What tells one version of the file from the next (None while it is missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class FileWatcher:
    def __init__(self, path: str, reload: Callable[[], Awaitable[object]], poll_s: float = POLL_S) -> None:
        self.path, self.reload, self.poll_s = path, reload, poll_s
        self.seen = stamp(path)
        self._wake = asyncio.Event()
        self.reloads = 0
        self.failures = 0

    def trigger(self) -> None:
        """Reload now (SIGHUP), whether or not the file changed."""
        self._wake.set()

    def install_sighup(self) -> bool:
        """Wire SIGHUP to `trigger` on the running loop; False where signals are not available."""
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.trigger)
            return True
        return False

    async def check(self, forced: bool = False) -> bool:
        """Reload if the file changed (or `forced`); True when a reload ran and succeeded."""
        current = stamp(self.path)
        if current is None or (current == self.seen and not forced):
            return False
        self.seen = current
        try:
            await self.reload()
        except Exception as exc:  # a bad file must never stop the process
            self.failures += 1
            log.error("installations_reload_failed", path=self.path, error=str(exc))
            return False
        self.reloads += 1
        return True

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            forced = self._wake.is_set()
            self._wake.clear()
            if forced:
                log.info("installations_reload_requested", path=self.path, signal="SIGHUP")
            await self.check(forced)
