"""`POST /webhooks/shopify`: authenticate, deduplicate, enqueue, answer. Nothing else.

Checks run in this order, and a failing one answers at once and stores nothing:
size (413) -> shop domain known (401) -> HMAC over the raw bytes (401) -> topic header (400) ->
JSON body (400) -> known topic (unknown ones answer 200 and are only counted) -> one job stored
atomically with its dedup mark (503 when Redis cannot take it, so Shopify retries).

Every webhook runs this, so it is written for few Python steps: one coroutine, the checks in a
plain function that raises `_Rejected` on the (rare) failing path, no regular expressions.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from core.jobs import TOPIC_JOBS, webhook_job_bytes
from mappings.installation import Installations
from receiver.enqueue import BatchEnqueuer, EnqueueError
from receiver.jsoncheck import is_json
from receiver.live import LiveInstallations
from receiver.metrics import ReceiverMetrics
from receiver.problems import problem
from receiver.signature import verify

MAX_BODY_BYTES = 5 * 1024 * 1024
log = structlog.get_logger("receiver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Rejected(Exception):
    """A check failed: answer `status` with a problem body, count `outcome`, store nothing."""

    def __init__(self, status: int, outcome: str, detail: str, **log_fields: Any) -> None:
        super().__init__(detail)
        self.status, self.outcome, self.detail, self.log_fields = status, outcome, detail, log_fields


def webhook_handler(
    installations: Installations | LiveInstallations, enqueuer: BatchEnqueuer, metrics: ReceiverMetrics
) -> Handler:
    """The route's handler with its collaborators bound once (not looked up per request)."""

    async def handle_webhook(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        headers = request.headers
        topic = headers.get("X-Shopify-Topic")
        try:
            length = request.content_length
            if length is not None and length > MAX_BODY_BYTES:
                raise _Rejected(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise _Rejected(413, "too_large", f"body over {MAX_BODY_BYTES} bytes") from None
            except RequestPayloadError:
                # A Content-Encoding the body does not decode with (aiohttp decodes gzip/deflate
                # itself): the client's fault, not ours, so a 400 rather than an unhandled 500.
                raise _Rejected(400, "bad_request", "body could not be decoded (Content-Encoding)") from None
            accepted = _accept(installations, headers, topic, body)
            if accepted is None:
                # Answer 200 so Shopify keeps the subscription; we simply do not act on this topic.
                metrics.count(topic, "ignored")
                log.info("webhook_ignored", shop=_domain(headers), topic=(topic or "")[:100])
                return web.Response(body=b"ignored", content_type="text/plain")
            dedup_key, job = accepted
            stored = await enqueuer.enqueue(dedup_key, job)
            metrics.count(topic, "enqueued" if stored else "duplicate")
            return web.Response(body=b"ok" if stored else b"duplicate", content_type="text/plain")
        except _Rejected as rejected:
            metrics.count(topic, rejected.outcome)
            if rejected.log_fields:
                log.warning("webhook_rejected", **rejected.log_fields)
            return problem(rejected.status, rejected.detail)
        except EnqueueError as exc:
            metrics.count(topic, "unavailable")
            metrics.enqueue_failures.inc()
            log.error(
                "enqueue_failed",
                shop=_domain(headers),
                topic=topic,
                webhook_id=headers.get("X-Shopify-Webhook-Id"),
                error=str(exc),
            )
            return problem(503, "queue unavailable; retry later", headers={"Retry-After": "5"})
        finally:
            metrics.observe_latency(time.perf_counter() - started)

    return handle_webhook


def _accept(
    installations: Installations | LiveInstallations,
    headers: Mapping[str, str],
    topic: str | None,
    body: bytes,
) -> tuple[str, bytes] | None:
    """The dedup key and the job of an authentic delivery of a known topic; None for an authentic
    one of a topic we do not act on; `_Rejected` for anything else."""
    domain = _domain(headers)
    shop = installations.shops.get(domain)
    if shop is None:
        raise _Rejected(
            401, "unknown_shop", "unknown shop domain", reason="unknown shop domain", shop=domain[:100]
        )
    if not verify(shop.webhook_secret, body, headers.get("X-Shopify-Hmac-Sha256")):
        raise _Rejected(
            401,
            "bad_hmac",
            "missing or invalid X-Shopify-Hmac-Sha256",
            reason="missing or wrong HMAC",
            shop=domain,
            topic=topic,
        )
    if not topic:
        raise _Rejected(400, "bad_request", "missing X-Shopify-Topic header")
    if not is_json(body):
        raise _Rejected(
            400, "bad_request", "body is not valid JSON", reason="body is not JSON", shop=domain, topic=topic
        )
    function = TOPIC_JOBS.get(topic)
    if function is None:
        return None

    webhook_id = headers.get("X-Shopify-Webhook-Id")
    if webhook_id is None:
        # Very old deliveries may lack it: the content itself is then the identity.
        webhook_id = "sha256-" + hashlib.sha256(topic.encode() + b"\n" + body).hexdigest()
    elif _token_or_none(webhook_id) is None:
        raise _Rejected(400, "bad_request", "malformed X-Shopify-Webhook-Id header")
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
    return f"{shop.domain}:{webhook_id}", job


def _domain(headers: Mapping[str, str]) -> str:
    return (headers.get("X-Shopify-Shop-Domain") or "").strip().lower()


def _token_or_none(value: str | None) -> str | None:
    """The header's value when it is printable ASCII without spaces, 1 to 256 characters (what an
    id may hold), else None."""
    if (
        value is not None
        and 0 < len(value) <= 256
        and value.isascii()
        and value.isprintable()
        and " " not in value
    ):
        return value
    return None
