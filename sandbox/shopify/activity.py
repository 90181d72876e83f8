"""Activity mode: a steady rate of realistic changes to the store, for `make run` and soak tests.

Each tick picks one change by weight (profile edits, consent changes, email changes, tags, new
customers, orders, deletions, product edits) and applies it through the store's mutations, so
webhooks flow exactly as they would from a live shop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from typing import Any

from aiohttp import web

from sandbox.shopify.data import COUNTRIES
from sandbox.shopify.models import EMAIL_STATES, SMS_STATES
from sandbox.shopify.store import SandboxError, Store

WEIGHTS: tuple[tuple[str, float], ...] = (
    ("profile", 0.25),
    ("email_consent", 0.15),
    ("sms_consent", 0.08),
    ("email", 0.05),
    ("tags", 0.10),
    ("create", 0.12),
    ("order", 0.20),
    ("delete", 0.03),
    ("product", 0.02),
)


class Activity:
    """`start()` runs changes at `rate` per second until `stop()`."""

    def __init__(self, store: Store, rate: float = 1.0, seed: int | None = None) -> None:
        self.store = store
        self.rate = rate
        self.rng = random.Random(seed)
        self.done: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def describe(self) -> dict[str, Any]:
        return {"running": self.running, "rate": self.rate, "done": dict(self.done)}

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += 1.0 / max(self.rate, 1e-3)
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            kind = self._pick()
            try:
                await self.step(kind)
                self.done[kind] += 1
            except SandboxError:
                self.done["skipped"] += 1

    def _pick(self) -> str:
        roll = self.rng.random() * sum(w for _, w in WEIGHTS)
        for kind, weight in WEIGHTS:
            roll -= weight
            if roll < 0:
                return kind
        return WEIGHTS[-1][0]

    async def step(self, kind: str) -> None:
        """Apply one change of the given kind to a random customer."""
        store, rng = self.store, self.rng
        if kind == "create":
            country = rng.choice(COUNTRIES)
            await store.create_customer(
                first_name=rng.choice(country.first_names),
                last_name=rng.choice(country.last_names),
                phone=f"{country.phone_prefix}{rng.randrange(10**country.phone_digits):0{country.phone_digits}d}"
                if rng.random() < 0.7
                else None,
                country_code=country.code,
                city=country.cities[0][0],
                email_state=rng.choice(("subscribed", "not_subscribed", "pending")),
                tags=("newsletter",) if rng.random() < 0.3 else (),
            )
            return
        if kind == "product":
            product_id = rng.choice(list(store.products))
            await store.update_product(product_id, price=f"{rng.choice((199, 249, 299, 399, 599))}.00")
            return
        customer_id = store.random_customer_id(rng)
        if customer_id is None:
            raise SandboxError("no customers left")
        customer = store.customer(customer_id)
        assert customer is not None
        if kind == "profile":
            country = rng.choice(COUNTRIES)
            choice = rng.random()
            if choice < 0.4:
                await store.update_customer(customer_id, first_name=rng.choice(country.first_names))
            elif choice < 0.8:
                city = rng.choice(country.cities)[0]
                await store.update_customer(customer_id, city=city, country_code=country.code)
            else:
                await store.update_customer(customer_id, state=rng.choice(("enabled", "disabled")))
        elif kind == "email_consent":
            if customer.email is None:
                raise SandboxError("no email")
            await store.set_email_consent(customer_id, rng.choice(EMAIL_STATES[:4]))
        elif kind == "sms_consent":
            if customer.phone is None:
                raise SandboxError("no phone")
            await store.set_sms_consent(customer_id, rng.choice(SMS_STATES[:4]))
        elif kind == "email":
            local = f"{customer.first_name}.{customer.last_name}.{rng.randrange(10**6)}"
            from sandbox.shopify.data import slug

            await store.change_email(customer_id, f"{slug(local).replace('-', '.')}@example.org")
        elif kind == "tags":
            if "vip" in customer.tags:
                await store.remove_tags(customer_id, ["vip"])
            else:
                await store.add_tags(
                    customer_id, ["vip"] if rng.random() < 0.5 else [rng.choice(("returning", "sale-2025"))]
                )
        elif kind == "order":
            await store.place_order(customer_id, paid=rng.random() < 0.9)
        elif kind == "delete":
            await store.delete_customer(customer_id)


ACTIVITY: web.AppKey[Activity] = web.AppKey("shopify_activity", Activity)
