"""Sending an order's planned POSTs once: claim each post's items in the ledger, POST only the
claimed ones (in bodies under 100 kB) with a client that never retries by itself
(`events_client`), repeat a POST only after an answer proving APSIS did not take it, mark the
items `sent` after their POST or free them when it surely failed (`maybe_delivered` tells the
two apart), and report items an earlier crash left uncertain."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import aiohttp
import structlog

from core.logging import mask_email
from core.redis_conn import typed
from mappings.installation import Shop
from mappings.orders import EventItem, EventPost
from worker.apsis_client import ApsisClient
from worker.context import WorkerContext
from worker.errors import ApiError, LimiterTimeoutError, is_transient
from worker.orders.ledger import CLAIMED, NOW_UNKNOWN, SENT, claim, finish
from worker.orders.result import OrderResult
from worker.payloads import MAX_BODY_BYTES, batch_items
from worker.retry import NO_RETRY, RetryPolicy

log = structlog.get_logger("worker.orders")

EVENT_ATTEMPTS = 3
_EVENT_RETRY = RetryPolicy()
# Answers after which APSIS may have stored the events anyway.
_AMBIGUOUS_STATUSES = frozenset({500, 502, 504})


async def send_posts(
    app: WorkerContext, shop: Shop, order_id: int, key: str, posts: Sequence[EventPost]
) -> OrderResult:
    """Send the order's planned posts once each (ledger `key`); what went out and what is uncertain."""
    result = OrderResult("sent", order_id)
    client = events_client(app, shop)
    by_section: dict[str, list[str]] = {}
    for post in posts:
        fields = [f"{post.section}|{item_key}" for item_key in post.keys]
        by_section.setdefault(post.section, []).extend(fields)
        status = await claim(app, key, post.section, fields)
        claimed = [(f, item) for f, item, s in zip(fields, post.items, status, strict=True) if s == CLAIMED]
        lost = sum(1 for s in status if s == NOW_UNKNOWN)
        if lost:
            result.uncertain += lost
            app.metrics.inc("shopsync_order_events_uncertain_total", None, lost)
            log.error(
                "order_events_uncertain",
                order_id=order_id,
                section=post.section,
                profile_key=_loggable(post.profile_key),
                items=lost,
                reason="an earlier attempt stopped between marking and confirming this POST; not resent",
            )
        if claimed:
            result.posts += await _post(app, shop, client, key, post, claimed)
            result.items += len(claimed)
    for section, fields in by_section.items():
        await finish(app, key, section, fields)
    if not result.items:
        result.outcome = "uncertain" if result.uncertain else "duplicate"
    return result


async def _post(
    app: WorkerContext,
    shop: Shop,
    client: ApsisClient,
    key: str,
    post: EventPost,
    claimed: Sequence[tuple[str, EventItem]],
) -> int:
    """POST the claimed items (one body each under 100 kB), marking them sent after each."""
    bodies = [item.to_json() for _, item in claimed]
    fields = [f for f, _ in claimed]
    # `plan_order` made each post one body already; this only guards against a different count.
    groups = batch_items(list(zip(fields, bodies, strict=True)), MAX_BODY_BYTES)
    for index, group in enumerate(groups):
        group_fields = [f for f, _ in group]
        items = [body for _, body in group]
        attempt = 0
        while True:
            try:
                await client.add_events(shop.apsis.keyspace, post.profile_key, post.section, items)
                break
            except BaseException as exc:
                # Groups not tried yet were surely not sent: free them for the retry.
                unsent = [f for later in groups[index + 1 :] for f, _ in later]
                if maybe_delivered(exc):
                    await _release_marks(app, key, unsent)
                    raise  # this group's marks stay `sending`: a retry will not send it again
                attempt += 1
                if attempt >= EVENT_ATTEMPTS or not (isinstance(exc, ApiError) and is_transient(exc)):
                    await _release_marks(app, key, [*group_fields, *unsent])  # not taken
                    raise
                delay = _EVENT_RETRY.backoff(attempt - 1)
                if isinstance(exc, ApiError) and exc.retry_after is not None:
                    delay = exc.retry_after + random.uniform(0, 0.25)
                await asyncio.sleep(delay)
        await _mark_sent(app, key, group_fields)
        app.metrics.inc("shopsync_apsis_writes_total", {"kind": "events"})
    return len(groups)


async def _release_marks(app: WorkerContext, key: str, fields: Sequence[str]) -> None:
    if fields:
        try:
            await typed(app.redis.hdel(key, *fields))
        except Exception as exc:  # they stay `sending`: reported as unknown by the retry
            log.warning("order_marks_not_released", fields=len(fields), error=str(exc))


async def _mark_sent(app: WorkerContext, key: str, fields: Sequence[str]) -> None:
    await typed(app.redis.hset(key, mapping=dict.fromkeys(fields, SENT)))


def maybe_delivered(exc: BaseException) -> bool:
    """Could APSIS have stored the events despite this failure?"""
    if not isinstance(exc, Exception) or isinstance(exc, TimeoutError):
        return True  # cancelled or timed out mid-request: nobody knows
    if isinstance(exc, LimiterTimeoutError):
        return False  # our limiter refused before sending
    if isinstance(exc, ApiError):
        if exc.status is None:
            return not isinstance(exc.__cause__, aiohttp.ClientConnectorError)
        return exc.status in _AMBIGUOUS_STATUSES
    return False  # raised before the request (Redis, encoding)


def events_client(app: WorkerContext, shop: Shop) -> ApsisClient:
    """An APSIS client that never repeats a request by itself (events are not idempotent);
    it shares the account's session, token and limits with `app.apsis(shop)`."""
    key = f"apsis-events:{shop.apsis.base_url}:{shop.apsis.client_id}"
    client = app.clients.get(key)
    if not isinstance(client, ApsisClient):
        shared = app.apsis(shop)
        client = app.clients[key] = ApsisClient(
            shop.apsis,
            app.redis,
            app.limiter,
            app.keys,
            session=shared.session,
            limits=shop.limits,
            retry=NO_RETRY,
        )
    return client


def _loggable(profile_key: str) -> str:
    return "guest:" + mask_email(profile_key[6:]) if profile_key.startswith("guest:") else profile_key
