"""`POST /webhooks/shopify`: authenticate, deduplicate, enqueue, answer. Nothing else.

Checks run in this order, and a failing one answers at once and stores nothing:
size (413) -> shop domain known (401) -> HMAC over the raw bytes (401) -> topic header (400) ->
JSON body (400) -> known topic (unknown ones answer 200 and are only counted) -> one job stored
atomically with its dedup mark (503 when Redis cannot take it, so Shopify retries).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from mappings.installation import Installations
from receiver.enqueue import BatchEnqueuer, EnqueueError
from receiver.jsoncheck import is_json
from receiver.metrics import ReceiverMetrics
from receiver.problems import problem
from receiver.signature import verify
from shopsync.jobs import TOPIC_JOBS, webhook_job_bytes

MAX_BODY_BYTES = 5 * 1024 * 1024
log = structlog.get_logger("receiver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def webhook_handler(
    installations: Installations, enqueuer: BatchEnqueuer, metrics: ReceiverMetrics
) -> Handler:
    """The route's handler with its collaborators bound once (not looked up per request)."""

    async def handle_webhook(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        topic = request.headers.get("X-Shopify-Topic")
        try:
            return await _handle(request, topic, installations, enqueuer, metrics)
        finally:
            metrics.observe_latency(time.perf_counter() - started)

    return handle_webhook


async def _handle(
    request: web.Request,
    topic: str | None,
    installations: Installations,
    enqueuer: BatchEnqueuer,
    metrics: ReceiverMetrics,
) -> web.StreamResponse:
    headers = request.headers
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        metrics.count(topic, "too_large")
        return problem(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.count(topic, "too_large")
        return problem(413, f"body over {MAX_BODY_BYTES} bytes")
    except RequestPayloadError:
        # A Content-Encoding the body does not decode with (aiohttp decodes gzip/deflate
        # itself): the client's fault, not ours, so a 400 rather than an unhandled 500.
        metrics.count(topic, "bad_request")
        return problem(400, "body could not be decoded (Content-Encoding)")

    domain = (headers.get("X-Shopify-Shop-Domain") or "").strip().lower()
    shop = installations.shops.get(domain)
    if shop is None:
        metrics.count(topic, "unknown_shop")
        log.warning("webhook_rejected", reason="unknown shop domain", shop=domain[:100])
        return problem(401, "unknown shop domain")
    if not verify(shop.webhook_secret, body, headers.get("X-Shopify-Hmac-Sha256")):
        metrics.count(topic, "bad_hmac")
        log.warning("webhook_rejected", reason="missing or wrong HMAC", shop=domain, topic=topic)
        return problem(401, "missing or invalid X-Shopify-Hmac-Sha256")
    if not topic:
        metrics.count(topic, "bad_request")
        return problem(400, "missing X-Shopify-Topic header")
    if not is_json(body):
        metrics.count(topic, "bad_request")
        log.warning("webhook_rejected", reason="body is not JSON", shop=domain, topic=topic)
        return problem(400, "body is not valid JSON")

    function = TOPIC_JOBS.get(topic)
    if function is None:
        # Answer 200 so Shopify keeps the subscription; we simply do not act on this topic.
        metrics.count(topic, "ignored")
        log.info("webhook_ignored", shop=domain, topic=topic[:100])
        return web.Response(status=200, text="ignored")

    webhook_id = headers.get("X-Shopify-Webhook-Id")
    if webhook_id is None:
        # Very old deliveries may lack it: the content itself is then the identity.
        webhook_id = "sha256-" + hashlib.sha256(topic.encode() + b"\n" + body).hexdigest()
    elif not _is_token(webhook_id):
        metrics.count(topic, "bad_request")
        return problem(400, "malformed X-Shopify-Webhook-Id header")

    job = webhook_job_bytes(
        function,
        topic=topic,
        shop=shop.domain,
        webhook_id=webhook_id,
        event_id=_token_or_none(headers.get("X-Shopify-Event-Id")),
        triggered_at=_token_or_none(headers.get("X-Shopify-Triggered-At")),
        api_version=_token_or_none(headers.get("X-Shopify-API-Version")),
        received_at=time.time(),
        body=body.decode("utf-8"),  # it is JSON, so it is valid UTF-8
    )
    try:
        stored = await enqueuer.enqueue(f"{shop.domain}:{webhook_id}", job)
    except EnqueueError as exc:
        metrics.count(topic, "unavailable")
        metrics.enqueue_failures.inc()
        log.error("enqueue_failed", shop=domain, topic=topic, webhook_id=webhook_id, error=str(exc))
        return problem(503, "queue unavailable; retry later", headers={"Retry-After": "5"})
    metrics.count(topic, "enqueued" if stored else "duplicate")
    return web.Response(status=200, text="ok" if stored else "duplicate")


def _is_token(value: str) -> bool:
    """Printable ASCII without spaces, 1 to 256 characters: what an id header may hold. (String
    methods rather than a regular expression: this runs four times per webhook.)"""
    return 0 < len(value) <= 256 and value.isascii() and value.isprintable() and " " not in value


def _token_or_none(value: str | None) -> str | None:
    return value if value is not None and _is_token(value) else None
