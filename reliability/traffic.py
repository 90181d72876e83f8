"""Live webhooks: a steady rate of realistic changes to the sandbox store (each one emits the
webhooks Shopify would), running beside whatever fault a scenario injects."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter

from sandbox.shopify.activity import Activity
from sandbox.shopify.store import SandboxError, Store

CUSTOMER_KINDS: tuple[tuple[str, float], ...] = (
    ("profile", 0.35),
    ("email_consent", 0.15),
    ("sms_consent", 0.08),
    ("email", 0.05),
    ("tags", 0.12),
    ("create", 0.10),
    ("delete", 0.03),
)


class Traffic:
    """`async with Traffic(store, rate):` changes at `rate` per second until the block ends."""

    def __init__(self, store: Store, rate: float, seed: int = 3, orders: bool = False) -> None:
        self.activity = Activity(store, rate, seed=seed)
        self.rng = random.Random(seed)
        self.rate = rate
        self.kinds = (*CUSTOMER_KINDS, ("order", 0.15)) if orders else CUSTOMER_KINDS
        self.done: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    @property
    def changes(self) -> int:
        return sum(v for k, v in self.done.items() if k != "skipped")

    def _pick(self) -> str:
        roll = self.rng.random() * sum(w for _, w in self.kinds)
        for kind, weight in self.kinds:
            roll -= weight
            if roll < 0:
                return kind
        return self.kinds[-1][0]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += 1.0 / self.rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            kind = self._pick()
            try:
                await self.activity.step(kind)
                self.done[kind] += 1
            except SandboxError:
                self.done["skipped"] += 1

    async def __aenter__(self) -> Traffic:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
