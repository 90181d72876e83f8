"""Purchase events from Shopify orders: the imperative shell around `mappings.orders`.

What happens to an order (`send_order`, used by the `record_order` job and by history):

- Trigger: only deliveries of the installation's `[shop.orders] event_topic` (default
  `orders/paid`; `orders/create` for stores without payments) send events; the other topic is
  acknowledged and does nothing (the customer's own webhooks keep the profile current).
- Profile: the customer's, in every section the customer is synced to (`SyncState.sections`).
  A customer never synced yet is synced first, from a fetch of the whole customer (the order's
  embedded copy lacks addresses, and at 2025-01 tags and consent) or, when the fetch fails for
  good, from that copy. A customer in no section gets no events; a deleted one neither.
- Guests (no customer): skipped and counted (`shopsync_orders_total{outcome="guest_skipped"}`)
  unless `[shop.orders] guests = "email"`: then the profile key is `guest:<email, lower-cased>`
  in the installation's keyspace, in the sections without conditions, and the section's
  mapped `email` attribute is set on it so the marketer can find and segment it. The same
  address over many guest orders is one profile. If the guest later opens an account, the
  customer profile (keyed by id) is a separate profile; the guest's past events stay on the
  `guest:` profile (this service does not merge the two). `customers/redact` does not reach
  `guest:` profiles yet.
- Refunds and cancellations: APSIS events cannot be retracted, so a purchase is sent once, as
  it happened, and later refunds or cancellations send nothing (no negative revenue; the order
  event carries `financial_status` as of sending). An order that is already cancelled when
  its webhook is handled is not sent. History sends only orders that are not cancelled and,
  for `orders/paid` installations, paid or partially refunded (see
  `mappings.orders.is_settled_purchase`): a backfill leaves out what is known to be undone.
- Once only: `Keys.order_sent(shop, order_id, "purchase")` is a hash remembering, per section
  and item (`<section>|order`, `<section>|line:<line id>`), `sending` then `sent`; once every
  item of a section is handled the item fields collapse into one `<section>` field (`sent`, or
  `sent unknown=N`). Kept `SENT_TTL_S` (about 13 months, refreshed whenever the order is seen
  again). The webhook topic is not part of it: `orders/create`, `orders/paid`, duplicates,
  retries and history all meet the same marks. One sender per order at a time
  (`<order key>:lock`).
- Crashes: APSIS keeps every event it is sent, so items are marked `sending` before their POST
  and `sent` after it. A failure that proves APSIS did not take the request (an answer of 4xx,
  408, 429 or 503, a refused connection, our limiter) removes the `sending` marks, so the retry
  sends them. A failure that leaves it open (no answer: timeout, reset, crash, job timeout; or
  500/502/504) leaves them: a retry that finds `sending` does NOT send those items again, marks
  them `unknown`, logs `order_events_uncertain` (order, section, item count) and counts
  `shopsync_order_events_uncertain_total`. So the worst case of a crash at the worst moment is
  that one POST's items (at most 100 kB, part of one section's events for one order) are
  missing in APSIS, never that revenue is counted twice.
- Batches: each section's items go in POSTs under 100 kB (`mappings.orders.batches`). The
  APSIS client used for events does no retries of its own (`events_client`); `_post` repeats
  a POST only after an answer that proves it was not taken (429, 503, ...), so a POST is never
  repeated behind the marks' back.
- Product details (handle, image, type, vendor) come from `worker.products` (Redis cache,
  refreshed by `products/update`, `refresh_product`). The product URL is
  `https://<shop domain>/products/<handle>` (Shopify redirects the myshopify domain to the
  store's primary domain).
- History (`sync_past_orders`, `sync_customer_orders`): the same `send_order` for every order
  of the store (or of one customer), newest first, within Shopify's 60-day window unless the
  store granted `read_all_orders`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import structlog

from core.jobs import Delivery
from core.logging import mask_email
from core.redis_conn import typed
from mappings.installation import Shop
from mappings.orders import (
    EventItem,
    EventPost,
    guest_attributes,
    guest_email,
    guest_profile_key,
    guest_sections,
    is_cancelled,
    is_settled_purchase,
    order_customer_id,
    order_id_of,
    order_product_ids,
    plan_order,
)
from mappings.snapshot import JSON, PayloadError
from worker.apsis_client import ApsisClient
from worker.context import WorkerContext
from worker.errors import ApiError, LimiterTimeoutError, NotFoundError, is_transient
from worker.payloads import MAX_BODY_BYTES, batch_items
from worker.products import products_of
from worker.retry import NO_RETRY, RetryPolicy
from worker.runtime import TransientError
from worker.sync import Update, submit

log = structlog.get_logger("worker.orders")

PURCHASE = "purchase"  # the event kind in Keys.order_sent: the order event with its line events
SENT_TTL_S = 400 * 24 * 3600
LOCK_TTL_MS = 120_000
HISTORY_WINDOW = timedelta(days=60)  # Shopify hides older orders without read_all_orders
HISTORY_CONCURRENCY = 8
SCOPES_TTL_S = 600.0
EVENT_ATTEMPTS = 3
_EVENT_RETRY = RetryPolicy()
# Answers after which APSIS may have stored the events anyway.
_AMBIGUOUS_STATUSES = frozenset({500, 502, 504})

SENDING, SENT, UNKNOWN = "sending", "sent", "unknown"
CLAIMED, WAS_SENT, NOW_UNKNOWN, WAS_UNKNOWN = 0, 1, 2, 3

# KEYS[1] the order's hash. ARGV: ttl, section, then the items' fields. Per item: 0 = claimed
# now (marked sending: send it), 1 = sent before, 2 = found `sending` from an attempt that did
# not finish (now marked unknown: report it, do not send), 3 = unknown already.
_CLAIM = """
local key, ttl, section = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local out = {}
local done = redis.call('HEXISTS', key, section) == 1
for i = 3, #ARGV do
  if done then
    out[#out + 1] = 1
  else
    local v = redis.call('HGET', key, ARGV[i])
    if not v then
      redis.call('HSET', key, ARGV[i], 'sending')
      out[#out + 1] = 0
    elseif v == 'sent' then
      out[#out + 1] = 1
    elseif v == 'sending' then
      redis.call('HSET', key, ARGV[i], 'unknown')
      out[#out + 1] = 2
    else
      out[#out + 1] = 3
    end
  end
end
redis.call('EXPIRE', key, ttl)
return out
"""
# KEYS[1] the order's hash. ARGV: ttl, section, then the section's item fields. Collapses them
# into one `section` field once each is sent or unknown; returns the number unknown, or -1
# when some item is still open (a failed POST: the retry finishes the section).
_FINISH = """
local key, ttl, section = KEYS[1], tonumber(ARGV[1]), ARGV[2]
if redis.call('HEXISTS', key, section) == 1 then return 0 end
local unknown = 0
for i = 3, #ARGV do
  local v = redis.call('HGET', key, ARGV[i])
  if v == 'unknown' then unknown = unknown + 1
  elseif v ~= 'sent' then return -1 end
end
local summary = 'sent'
if unknown > 0 then summary = 'sent unknown=' .. unknown end
redis.call('HSET', key, section, summary)
if #ARGV > 2 then redis.call('HDEL', key, unpack(ARGV, 3)) end
redis.call('EXPIRE', key, ttl)
return unknown
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class OrderResult:
    """What happened to one order. `outcome`: sent, duplicate (everything sent before),
    uncertain (nothing sent now, some items left unknown by an earlier crash), other_topic,
    cancelled, unsettled (history only), guest_skipped, guest_no_email, not_synced (customer in
    no section), customer_deleted, no_events (its sections map no event versions), busy
    (history only: another worker is sending it right now)."""

    outcome: str
    order_id: int
    profile_key: str | None = None
    posts: int = 0
    items: int = 0
    uncertain: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "order_id": self.order_id,
            "posts": self.posts,
            "items": self.items,
            "uncertain": self.uncertain,
        }


@dataclass
class HistoryResult:
    """Counts of a history run: orders seen, per outcome, and those that failed (logged)."""

    seen: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    created_at_min: datetime | None = None

    @property
    def sent(self) -> int:
        return self.outcomes["sent"]


@dataclass(frozen=True, slots=True)
class _Target:
    profile_key: str
    sections: tuple[str, ...]
    attributes: Mapping[str, Mapping[str, JSON]] = field(default_factory=dict)


# --- the jobs -----------------------------------------------------------------------------------


async def record_order(app: WorkerContext, shop: Shop, delivery: Delivery) -> dict[str, Any]:
    """`orders/create`, `orders/paid`: the order's events, when this is the installation's topic."""
    order = delivery.payload()
    if not isinstance(order, dict):
        raise PayloadError("(body)", "an order payload must be a JSON object")
    if delivery.topic != shop.orders.event_topic:
        order_id = order_id_of(order)
        app.metrics.inc("shopsync_orders_total", {"source": "webhook", "outcome": "other_topic"})
        return OrderResult("other_topic", order_id).to_dict()
    result = await send_order(app, shop, order, received_at=delivery.received_at, source="webhook")
    if result.outcome == "sent":
        app.metrics.observe("shopsync_order_to_events_seconds", time.time() - delivery.received_at)
    return result.to_dict()


async def refresh_product(app: WorkerContext, shop: Shop, delivery: Delivery) -> dict[str, Any]:
    """`products/update`: the body is the product; cache what order lines need of it."""
    product = delivery.payload()
    if not isinstance(product, dict):
        raise PayloadError("(body)", "a product payload must be a JSON object")
    stored = await products_of(app, shop).store_product(product)
    return {"product_id": product.get("id"), "stored": stored}


# --- one order ----------------------------------------------------------------------------------


async def send_order(
    app: WorkerContext,
    shop: Shop,
    order: Mapping[str, Any],
    *,
    received_at: float | None = None,
    source: str = "webhook",
) -> OrderResult:
    """Send the order's events once (see the module docstring). Raises for "try again later"."""
    result = await _send_order(app, shop, order, received_at=received_at or time.time(), source=source)
    app.metrics.inc("shopsync_orders_total", {"source": source, "outcome": result.outcome})
    if result.items:
        app.metrics.inc("shopsync_order_events_total", {"source": source}, result.items)
    return result


async def _send_order(
    app: WorkerContext, shop: Shop, order: Mapping[str, Any], *, received_at: float, source: str
) -> OrderResult:
    order_id = order_id_of(order)
    if is_cancelled(order):
        return OrderResult("cancelled", order_id)
    target = await _target(app, shop, order, order_id, received_at=received_at)
    if isinstance(target, str):
        return OrderResult(target, order_id)
    key = app.keys.order_sent(shop.domain, order_id, PURCHASE)
    if await _all_done(app, key, _event_sections(shop, target.sections)):
        return OrderResult("duplicate", order_id, target.profile_key)
    products = await products_of(app, shop).get_many(order_product_ids(order))
    posts = plan_order(shop, target.sections, target.profile_key, order, products, shop_url(shop))
    if not posts:
        return OrderResult("no_events", order_id, target.profile_key)
    lock, token = f"{key}:lock", os.urandom(8).hex()
    if not await app.redis.set(lock, token, nx=True, px=LOCK_TTL_MS):
        if source == "history":
            return OrderResult("busy", order_id, target.profile_key)
        raise TransientError(f"order {order_id} is being sent by another worker")
    try:
        if target.attributes:  # idempotent, so before the events: a retry redoes it harmlessly
            await _patch_guest(app, shop, target, {p.section for p in posts})
        result = await _send_posts(app, shop, order_id, key, posts)
    finally:
        await _script(app, _RELEASE)(keys=[lock], args=[token])
    result.profile_key = target.profile_key
    return result


async def _target(
    app: WorkerContext,
    shop: Shop,
    order: Mapping[str, Any],
    order_id: int,
    *,
    received_at: float,
) -> _Target | str:
    """The profile and sections the order's events go to, or the outcome why there are none."""
    customer_id = order_customer_id(order)
    if customer_id is None:
        if shop.orders.guests != "email":
            return "guest_skipped"
        email = guest_email(order)
        if email is None:
            return "guest_no_email"
        sections = tuple(guest_sections(shop))
        if not sections:
            return "not_synced"
        log.info("guest_order", order_id=order_id, email=mask_email(email))
        return _Target(guest_profile_key(email), sections, guest_attributes(shop, email))
    stored = await app.customers.load(shop.domain, customer_id)
    if stored.deleted_at is None and stored.state is None:
        await _sync_customer_first(app, shop, order, order_id, customer_id, received_at)
        stored = await app.customers.load(shop.domain, customer_id)
    if stored.deleted_at is not None:
        return "customer_deleted"
    if stored.state is None or not stored.state.sections:
        return "not_synced"
    return _Target(str(customer_id), tuple(stored.state.sections))


async def _sync_customer_first(
    app: WorkerContext,
    shop: Shop,
    order: Mapping[str, Any],
    order_id: int,
    customer_id: int,
    received_at: float,
) -> None:
    payload: dict[str, Any] | None
    try:
        payload = await app.shopify(shop).get_customer(customer_id)
    except ApiError as exc:
        if is_transient(exc):
            raise
        log.warning("order_customer_fetch_failed", customer_id=customer_id, error=str(exc))
        embedded = order.get("customer")
        payload = dict(embedded) if isinstance(embedded, Mapping) else None
    if payload is None:
        return  # Shopify no longer has the customer: nothing to sync, no profile to send to
    update = Update(kind="rest", payload=payload, received_at=received_at, source="order")
    outcome = await submit(app, shop, f"order:{order_id}:{customer_id}", update)
    app.metrics.inc("shopsync_customers_total", {"source": "order", "outcome": outcome})


def _event_sections(shop: Shop, sections: Collection[str]) -> list[str]:
    """The sections among `sections` that map an event version (the others get no marks)."""
    return [
        s.discriminator
        for s in shop.sections
        if s.discriminator in sections and (s.events.order or s.events.order_line)
    ]


async def _all_done(app: WorkerContext, key: str, sections: Sequence[str]) -> bool:
    if not sections:
        return False  # nothing to send: `plan_order` says so
    marks = await typed(app.redis.hmget(key, list(sections)))
    if all(mark is not None for mark in marks):
        await app.redis.expire(key, SENT_TTL_S)  # seen again: keep remembering it
        return True
    return False


async def _patch_guest(app: WorkerContext, shop: Shop, target: _Target, sections: Collection[str]) -> None:
    apsis = app.apsis(shop)
    for section, body in target.attributes.items():
        if section in sections:
            await apsis.patch_attributes(shop.apsis.keyspace, target.profile_key, section, body)


# --- sending, once ------------------------------------------------------------------------------


async def _send_posts(
    app: WorkerContext, shop: Shop, order_id: int, key: str, posts: Sequence[EventPost]
) -> OrderResult:
    result = OrderResult("sent", order_id)
    client = events_client(app, shop)
    by_section: dict[str, list[str]] = {}
    for post in posts:
        fields = [f"{post.section}|{item_key}" for item_key in post.keys]
        by_section.setdefault(post.section, []).extend(fields)
        status = await _script(app, _CLAIM)(keys=[key], args=[SENT_TTL_S, post.section, *fields])
        claimed = [
            (f, item) for f, item, s in zip(fields, post.items, status, strict=True) if int(s) == CLAIMED
        ]
        lost = sum(1 for s in status if int(s) == NOW_UNKNOWN)
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
        await _script(app, _FINISH)(keys=[key], args=[SENT_TTL_S, section, *fields])
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


def _script(app: WorkerContext, source: str) -> Any:
    return app.redis.register_script(source)  # EVALSHA, loading the script when Redis lacks it


def shop_url(shop: Shop) -> str:
    return f"https://{shop.domain}"


def _loggable(profile_key: str) -> str:
    return "guest:" + mask_email(profile_key[6:]) if profile_key.startswith("guest:") else profile_key


# --- history (full sync --with-orders) ----------------------------------------------------------


async def history_floor(app: WorkerContext, shop: Shop, since: datetime | None = None) -> datetime | None:
    """The oldest creation time history may reach: `since`, bounded by Shopify's 60-day window
    unless the store granted `read_all_orders`."""
    if await _has_all_orders(app, shop):
        return since
    window = datetime.now(UTC) - HISTORY_WINDOW
    return window if since is None or since < window else since


async def _has_all_orders(app: WorkerContext, shop: Shop) -> bool:
    key = f"order-scopes:{shop.domain}"
    cached = app.clients.get(key)
    if isinstance(cached, _Scopes) and cached.expires > time.monotonic():
        return cached.all_orders
    try:
        scopes = await app.shopify(shop).access_scopes()
    except NotFoundError:
        scopes = []
    all_orders = "read_all_orders" in scopes
    app.clients[key] = _Scopes(all_orders, time.monotonic() + SCOPES_TTL_S)
    return all_orders


@dataclass
class _Scopes:
    all_orders: bool
    expires: float

    async def close(self) -> None:
        return None


async def sync_past_orders(
    app: WorkerContext,
    shop: Shop,
    *,
    since: datetime | None = None,
    customer_ids: Collection[int] | None = None,
    on_page: Callable[[HistoryResult], Awaitable[None]] | None = None,
) -> HistoryResult:
    """Send the store's past orders (every customer's, or only `customer_ids`'), once each.

    Walks `orders.json?status=any` newest first from `history_floor(since)`; each order goes
    through `send_order` with the same dedup as webhooks. Cancelled and unpaid or fully
    refunded orders are left out (`is_settled_purchase`). Meant to run after the customers'
    full sync (customers without state are synced first, one by one). An order that fails is
    logged and counted in `failed`; run again to retry it (sent orders are skipped).
    `on_page` is awaited after each page with the running counts (progress)."""
    result = HistoryResult(created_at_min=await history_floor(app, shop, since))
    wanted = None if customer_ids is None else {int(c) for c in customer_ids}
    pages = app.shopify(shop).iter_order_pages(status="any", created_at_min=result.created_at_min)
    async for page in pages:
        await _history_page(app, shop, page, wanted, result)
        if on_page is not None:
            await on_page(result)
    return result


async def sync_customer_orders(
    app: WorkerContext, shop: Shop, customer_id: int, *, since: datetime | None = None
) -> int:
    """Send one customer's past orders (as `sync_past_orders`); returns how many were sent.

    Costs no Shopify request for a customer with no events to receive (in no section that maps
    an event version) or, when the installation keeps `orders_count`, without orders. Any
    order that fails is retried by calling again; the first error is raised after the others
    were tried (a transient one: the caller retries later)."""
    stored = await app.customers.load(shop.domain, customer_id)
    if stored.deleted_at is not None:
        return 0
    if stored.state is not None and (
        not _event_sections(shop, stored.state.sections)
        or stored.state.fields.get("orders_count") in (0, "0")
    ):
        return 0
    result = HistoryResult(created_at_min=await history_floor(app, shop, since))
    errors: list[Exception] = []
    pages = app.shopify(shop).iter_order_pages(
        status="any", created_at_min=result.created_at_min, customer_id=customer_id
    )
    async for page in pages:
        await _history_page(app, shop, page, {customer_id}, result, errors)
    if errors:
        raise errors[0]
    return result.sent


async def _history_page(
    app: WorkerContext,
    shop: Shop,
    page: Sequence[Mapping[str, Any]],
    wanted: set[int] | None,
    result: HistoryResult,
    errors: list[Exception] | None = None,
) -> None:
    semaphore = asyncio.Semaphore(HISTORY_CONCURRENCY)
    # The page's products in one or two requests rather than one per order.
    product_ids = {pid for order in page for pid in _product_ids_or_none(order)}
    await products_of(app, shop).get_many(sorted(product_ids))

    async def one(order: Mapping[str, Any]) -> None:
        try:
            if wanted is not None and order_customer_id(order) not in wanted:
                return
            result.seen += 1
            if not is_settled_purchase(order, shop.orders.event_topic):
                result.outcomes["unsettled"] += 1
                app.metrics.inc("shopsync_orders_total", {"source": "history", "outcome": "unsettled"})
                return
            async with semaphore:
                sent = await send_order(app, shop, order, source="history")
            result.outcomes[sent.outcome] += 1
        except Exception as exc:  # one bad order must not stop a backfill of thousands
            if errors is not None:
                errors.append(exc)
            result.failed += 1
            app.metrics.inc("shopsync_orders_total", {"source": "history", "outcome": "failed"})
            log.warning(
                "history_order_failed", order_id=order.get("id"), error=f"{type(exc).__name__}: {exc}"
            )

    await asyncio.gather(*(one(order) for order in page))


def _product_ids_or_none(order: Mapping[str, Any]) -> list[int]:
    try:
        return order_product_ids(order)
    except PayloadError:
        return []  # `send_order` reports the order itself


async def forget_shop_orders(app: WorkerContext, domain: str) -> int:
    """Remove a shop's order marks and cached products (for `shop/redact`). Not for
    `app/uninstalled`: the APSIS profiles and their events stay, and a reinstall must not send
    the same orders again."""
    removed = 0
    for pattern in (app.keys.order_sent(domain, "*", "*"), app.keys.product(domain, "*")):
        async for key in app.redis.scan_iter(match=pattern, count=1000):
            removed += int(await app.redis.delete(key))
    return removed
