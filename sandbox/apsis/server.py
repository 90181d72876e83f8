"""`ApsisSandbox`: the simulated APSIS One account on a loopback port, as an async context manager.

async with ApsisSandbox() as apsis:          # default_account(), a free port
    client = MyClient(base_url=apsis.url)
    ...
    assert apsis.account.profile(KEYSPACE, "42") is not None
"""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from sandbox.apsis.account import Account, default_account
from sandbox.apsis.app import create_app


class ApsisSandbox:
    def __init__(self, account: Account | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.account = account if account is not None else default_account()
        self.host = host
        self.port = port
        self.app = create_app(self.account)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL (no trailing slash), the `base_url` of an installation."""
        if self._runner is None:
            raise RuntimeError("ApsisSandbox is not started")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> ApsisSandbox:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
