"""Webhook delivery like Shopify's: signed POSTs from a bounded queue, retried on failure.

A delivery keeps its webhook id, body and headers across retries (as at Shopify). Anything but a
2xx answer, a connect over 1 s or an answer over 5 s is a failure; retries follow Shopify's
schedule multiplied by `time_scale`. Faults can be injected: duplicates (the same webhook id sent
again), reordering (a delivery held back so later ones overtake it) and delays. Every delivery is
recorded for inspection, and `settled()` waits until nothing is pending.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import random
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

if TYPE_CHECKING:
    from sandbox.shopify.models import Subscription

# Today: 8 retries over about 4 hours. The 2020 era: 19 tries over 48 hours.
MODERN_RETRY_DELAYS: tuple[float, ...] = (10, 60, 300, 600, 1200, 2400, 3600, 6000)
LEGACY_RETRY_DELAYS: tuple[float, ...] = (
    10,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    3600,
    7200,
    7200,
    10800,
    10800,
    14400,
    21600,
    28800,
    57750,
)


def sign(secret: str, body: bytes) -> str:
    """`X-Shopify-Hmac-Sha256`: base64 of HMAC-SHA256 over the exact body bytes."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class WebhookShop(Protocol):
    """What delivery needs from the shop it delivers for (the `Store`): the domain and secret that
    go into the headers, and the removal of a subscription whose last retry failed."""

    @property
    def domain(self) -> str: ...

    @property
    def webhook_secret(self) -> str: ...

    def remove_subscription(self, sub_id: int) -> object: ...


@dataclass
class DeliveryConfig:
    """How webhooks are delivered; fields may be changed while the sandbox runs."""

    retry_delays: tuple[float, ...] = MODERN_RETRY_DELAYS
    time_scale: float = 0.01  # 1.0 = Shopify's real schedule; tests use ~1e-4
    connect_timeout: float = 1.0
    answer_timeout: float = 5.0
    duplicate_rate: float = 0.0  # share of successful deliveries sent once more, same webhook id
    reorder_rate: float = 0.0  # share held back `reorder_delay` s so that later ones overtake them
    reorder_delay: float = 0.2
    delay_rate: float = 0.0  # share delayed by a random time within `delay_range` (seconds)
    delay_range: tuple[float, float] = (0.5, 2.0)
    triggered_at_omit_rate: float = (
        0.0  # share sent without X-Shopify-Triggered-At (older deliveries lack it)
    )
    queue_size: int = 10_000
    concurrency: int = 16
    remove_failing_subscriptions: bool = True  # Shopify deletes API subscriptions after the last retry fails
    record_limit: int = 20_000  # oldest records (with their bodies) are dropped past this
    seed: int | None = None


@dataclass
class DeliveryRecord:
    """One webhook (one webhook id) and what happened to it."""

    webhook_id: str
    event_id: str
    topic: str
    address: str
    subscription_id: int
    api_version: str
    body: bytes
    headers: dict[str, str]
    created: float
    attempts: int = 0
    statuses: list[int | str] = field(default_factory=list)
    state: str = "pending"  # pending | delivered | failed
    duplicates_sent: int = 0
    reordered: bool = False
    delayed: bool = False

    @property
    def status(self) -> int | str | None:
        return self.statuses[-1] if self.statuses else None

    def summary(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "event_id": self.event_id,
            "topic": self.topic,
            "address": self.address,
            "subscription_id": self.subscription_id,
            "api_version": self.api_version,
            "attempts": self.attempts,
            "statuses": self.statuses,
            "state": self.state,
            "duplicates_sent": self.duplicates_sent,
            "reordered": self.reordered,
            "delayed": self.delayed,
        }


@dataclass
class _Send:
    record: DeliveryRecord
    duplicate: bool = False
    held: bool = False  # already delayed or reordered once


class Deliverer:
    """Background delivery: `start()` and `stop()` around use; `enqueue()` from mutations."""

    def __init__(self, store: WebhookShop, config: DeliveryConfig) -> None:
        self.store = store
        self.config = config
        self.records: OrderedDict[str, DeliveryRecord] = OrderedDict()
        self._rng = random.Random(config.seed)
        self._queue: asyncio.Queue[_Send] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._pending = 0
        self._idle: asyncio.Event | None = None

    @property
    def queue(self) -> asyncio.Queue[_Send]:
        if self._queue is None:
            self._queue = asyncio.Queue(self.config.queue_size)
        return self._queue

    @property
    def idle(self) -> asyncio.Event:
        if self._idle is None:
            self._idle = asyncio.Event()
            if self._pending == 0:
                self._idle.set()
        return self._idle

    @property
    def pending(self) -> int:
        return self._pending

    async def start(self) -> None:
        if self._workers:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.concurrency * 2),
            headers={"User-Agent": "Shopify-Captain-Hook"},
        )
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.config.concurrency)]

    async def stop(self) -> None:
        for task in [*self._workers, *self._timers]:
            task.cancel()
        for task in [*self._workers, *self._timers]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._timers.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def settled(self) -> None:
        """Wait until every queued delivery (retries, duplicates, delays included) is done.

        Wrap in `asyncio.timeout(...)` to bound the wait."""
        await self.idle.wait()

    async def enqueue(
        self, sub: Subscription, topic: str, body: bytes, event_id: str, triggered_at: str
    ) -> DeliveryRecord:
        """Queue one signed delivery of `body` (already encoded the Shopify way) to `sub`."""
        webhook_id = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": sign(self.store.webhook_secret, body),
            "X-Shopify-Shop-Domain": self.store.domain,
            "X-Shopify-API-Version": sub.api_version,
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Triggered-At": triggered_at,
        }
        if self.config.triggered_at_omit_rate and self._rng.random() < self.config.triggered_at_omit_rate:
            del headers["X-Shopify-Triggered-At"]
        record = DeliveryRecord(
            webhook_id, event_id, topic, sub.address, sub.id, sub.api_version, body, headers, time.time()
        )
        self.records[webhook_id] = record
        while len(self.records) > self.config.record_limit:
            self.records.popitem(last=False)
        self._begin()
        await self.queue.put(_Send(record))
        return record

    def _begin(self) -> None:
        self._pending += 1
        self.idle.clear()

    def _end(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self.idle.set()

    def _later(self, send: _Send, delay: float) -> None:
        async def wait_then_queue() -> None:
            await asyncio.sleep(delay)
            await self.queue.put(send)

        task = asyncio.create_task(wait_then_queue())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _work(self) -> None:
        while True:
            send = await self.queue.get()
            try:
                await self._handle(send)
            except Exception:  # never let one delivery kill a worker
                self._end()

    async def _handle(self, send: _Send) -> None:
        cfg = self.config
        record = send.record
        if not send.held and not send.duplicate:
            if cfg.reorder_rate and self._rng.random() < cfg.reorder_rate:
                send.held = record.reordered = True
                self._later(send, cfg.reorder_delay)
                return
            if cfg.delay_rate and self._rng.random() < cfg.delay_rate:
                send.held = record.delayed = True
                self._later(send, self._rng.uniform(*cfg.delay_range))
                return
        status = await self._post(record)
        if send.duplicate:
            record.statuses.append(status)
            self._end()
            return
        record.attempts += 1
        record.statuses.append(status)
        if isinstance(status, int) and 200 <= status < 300:
            record.state = "delivered"
            if cfg.duplicate_rate and self._rng.random() < cfg.duplicate_rate:
                record.duplicates_sent += 1
                self._begin()
                self._later(_Send(record, duplicate=True), cfg.reorder_delay * self._rng.random())
            self._end()
            return
        retry = record.attempts - 1
        if retry < len(cfg.retry_delays):
            self._later(send, cfg.retry_delays[retry] * cfg.time_scale)
            return
        record.state = "failed"
        if cfg.remove_failing_subscriptions:
            self.store.remove_subscription(record.subscription_id)
        self._end()

    async def _post(self, record: DeliveryRecord) -> int | str:
        session = self._session
        if session is None:
            return "not-started"
        timeout = aiohttp.ClientTimeout(
            total=self.config.connect_timeout + self.config.answer_timeout,
            sock_connect=self.config.connect_timeout,
            sock_read=self.config.answer_timeout,
        )
        try:
            async with session.post(
                record.address, data=record.body, headers=record.headers, timeout=timeout
            ) as resp:
                await resp.read()
                return resp.status
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError as exc:
            return f"error: {type(exc).__name__}"

    def by_topic(self, topic: str) -> list[DeliveryRecord]:
        return [r for r in self.records.values() if r.topic == topic]
