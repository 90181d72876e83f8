"""`ShopifySandbox`: run the simulated store on a real loopback port, with its webhook deliverer.

async with ShopifySandbox(Store(size=10_000), port=0) as sandbox:
    sandbox.url          # http://127.0.0.1:54321 (the store's admin_url)
    sandbox.store        # mutate it; webhooks flow to subscriptions (webhookSubscriptionCreate)
    await sandbox.store.deliverer.settled()
"""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from sandbox.shopify.activity import ACTIVITY, Activity
from sandbox.shopify.app import create_app
from sandbox.shopify.appkeys import COUNTERS, GRAPHQL_COUNTERS
from sandbox.shopify.store import Store


class ShopifySandbox:
    """An async context manager serving `store` on `host:port` (0 picks a free port)."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        activity_rate: float = 0.0,
        access_log: bool = False,
    ) -> None:
        self.store = store or Store()
        self.host = host
        self.port = port
        self.activity_rate = activity_rate
        self.app = create_app(self.store)
        self._access_log = access_log
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def activity(self) -> Activity:
        return self.app[ACTIVITY]

    def request_counts(self) -> dict[tuple[str, int], int]:
        """Requests served so far, by (`METHOD /route`, status)."""
        counters = self.app[COUNTERS]
        return {key: counters[key] for key in counters}

    def graphql_counts(self) -> dict[tuple[str, str], int]:
        """GraphQL operations executed so far, by (operation name, root field)."""
        counters = self.app[GRAPHQL_COUNTERS]
        return {key: counters[key] for key in counters}

    async def start(self) -> None:
        if self._access_log:
            self._runner = web.AppRunner(self.app)
        else:
            self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        await self.store.deliverer.start()
        if self.activity_rate > 0:
            self.activity.rate = self.activity_rate
            self.activity.start()

    async def stop(self) -> None:
        await self.activity.stop()
        await self.store.deliverer.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ShopifySandbox:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
