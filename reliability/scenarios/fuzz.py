"""Bad input: hypothesis generates requests to a real receiver process (random bodies, headers
and encodings, truncated and oversized bodies, signatures from other secrets and other bodies,
replayed webhook ids). No answer is a 5xx but 503, no invalid request enqueues anything, and
the receiver's memory stays flat."""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import json
import math
import queue
import threading
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core.jobs import TOPIC_JOBS
from receiver.signature import sign
from reliability.report import Result
from reliability.stack import DOMAIN, RunContext, StackConfig, stack

SECRET = "sandbox-webhook-secret"
MAX_BODY = 5 * 1024 * 1024
TOPICS = sorted(TOPIC_JOBS)


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    valid: bool  # what the receiver must accept and enqueue (unless the webhook id was seen)
    webhook_id: str | None


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    enqueued_valid: int = 0
    enqueued_invalid: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    sent: int = 0
    crash: str | None = None  # the sender's own failure, if any

    def add(self, other: Tally) -> None:
        self.statuses.update(other.statuses)
        self.enqueued_valid += other.enqueued_valid
        self.enqueued_invalid += other.enqueued_invalid
        self.server_errors += other.server_errors
        self.sent += other.sent
        self.crash = self.crash or other.crash


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


# Strategies built once: building them inside the composite costs as much as drawing from them.
KINDS = st.sampled_from(["json", "customer", "bytes", "text", "gzip", "empty"])
CUSTOMER_IDS = st.integers() | st.text(max_size=12)
SHORT_TEXT = st.text(max_size=20)
BYTES = st.binary(max_size=300)
ENCODINGS = st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-32"])
TEXT = st.text(max_size=80)
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", ""])
CONTENT_ENCODINGS = st.sampled_from(["gzip", "deflate", "br", "identity"])
TOPIC_VALUES = st.sampled_from([*TOPICS, "", "unknown/topic", None]) | st.text(max_size=20)
DOMAINS = st.sampled_from([DOMAIN, DOMAIN.upper(), "other.myshopify.com", "", None])
SIGNINGS = st.sampled_from(["right", "right", "secret", "other_body", "truncated", "garbage", "none"])
OTHER_SECRETS = st.text(min_size=1, max_size=30)
GARBAGE = st.binary(min_size=0, max_size=40)
ID_KINDS = st.sampled_from(["fresh", "fresh", "replay", "malformed", "none"])
REPLAY_BACK = st.integers(min_value=1, max_value=50)
MALFORMED_IDS = st.sampled_from(["", "has space", "x" * 300, "åäö", "tab\tinside"])
HEADER_TEXT = st.text(max_size=40).filter(lambda t: "\n" not in t and "\r" not in t)


@st.composite
def requests(draw: st.DrawFn, seen_ids: list[str]) -> Request:
    # The body: JSON (sometimes customer-shaped), random bytes, text in odd encodings.
    kind = draw(KINDS)
    if kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "customer":
        customer = {"id": draw(CUSTOMER_IDS), "email": draw(SHORT_TEXT)}
        body = json.dumps(customer).encode()
    elif kind == "bytes":
        body = draw(BYTES)
    elif kind == "text":
        encoding = draw(ENCODINGS)
        body = draw(TEXT).encode(encoding, errors="replace")
    elif kind == "gzip":
        body = gzip.compress(json.dumps(draw(json_values)).encode())
    else:
        body = b""
    headers: dict[str, str] = {"Content-Type": draw(CONTENT_TYPES)}
    if kind == "gzip" or (draw(st.booleans()) and draw(st.booleans())):
        headers["Content-Encoding"] = draw(CONTENT_ENCODINGS)
    topic = draw(TOPIC_VALUES)
    if topic is not None:
        headers["X-Shopify-Topic"] = topic
    domain = draw(DOMAINS)
    if domain is not None:
        headers["X-Shopify-Shop-Domain"] = domain
    # The signature: right, from another secret, of another body, of a truncated body, garbage.
    signing = draw(SIGNINGS)
    signed = False
    if signing == "right":
        headers["X-Shopify-Hmac-Sha256"] = sign(SECRET, body)
        signed = True
    elif signing == "secret":
        headers["X-Shopify-Hmac-Sha256"] = sign(draw(OTHER_SECRETS), body)
    elif signing == "other_body":
        headers["X-Shopify-Hmac-Sha256"] = sign(SECRET, body + b" ")
    elif signing == "truncated":
        headers["X-Shopify-Hmac-Sha256"] = sign(SECRET, body)
        body = body[: len(body) // 2] if body else b"{"
    elif signing == "garbage":
        raw = draw(GARBAGE)
        headers["X-Shopify-Hmac-Sha256"] = (
            base64.b64encode(raw).decode() if draw(st.booleans()) else raw.hex()
        )
    # Webhook id: fresh, replayed, malformed, missing.
    id_kind = draw(ID_KINDS)
    webhook_id: str | None = None
    if id_kind == "fresh":
        webhook_id = f"fuzz-{draw(st.uuids()).hex}"
    elif id_kind == "replay":
        # An index, not a draw from the list: the strategy must not depend on outside state.
        back = draw(REPLAY_BACK)
        webhook_id = seen_ids[-min(back, len(seen_ids))] if seen_ids else None
    elif id_kind == "malformed":
        webhook_id = draw(MALFORMED_IDS)
    if webhook_id is not None:
        headers["X-Shopify-Webhook-Id"] = webhook_id
    for name in ("X-Shopify-API-Version", "X-Shopify-Triggered-At", "X-Shopify-Event-Id"):
        if draw(st.booleans()):
            headers[name] = draw(HEADER_TEXT)
    try:
        json.loads(body)
        is_json = True
    except ValueError:
        is_json = False
    valid = (
        signed
        and domain in (DOMAIN, DOMAIN.upper())
        and bool(topic)
        and topic in TOPIC_JOBS
        and is_json
        and (webhook_id is None or id_kind in ("fresh", "replay"))
        and headers.get("Content-Encoding") in (None, "identity")
    )
    return Request(headers, body, valid, webhook_id)


def _send(conn: http.client.HTTPConnection, req: Request) -> tuple[int, str]:
    headers = {}
    for k, v in req.headers.items():
        # HTTP/1.1 cannot carry CR, LF or NUL in a value, and http.client sends Latin-1.
        v = v.encode("utf-8", errors="replace").decode("latin-1")
        headers[k] = "".join(ch for ch in v if ch not in "\r\n\x00")
    conn.request("POST", "/webhooks/shopify", body=req.body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read().decode(errors="replace")


BATCH = 25  # requests per hypothesis example: its own overhead per example is paid once a batch
SENDERS = 3  # connections sending at once: the receiver, not the round trip, sets the pace


def fuzz(port: int, wanted: int, tally: Tally) -> None:
    """Generate `wanted` requests, a batch per hypothesis example, and send them. Generation
    and sending overlap: sender threads wait on the receiver while the next batch is drawn."""
    seen_ids: list[str] = []
    batches: queue.Queue[list[Request] | None] = queue.Queue(maxsize=2 * SENDERS)
    tallies = [Tally() for _ in range(SENDERS)]
    senders = [
        threading.Thread(target=_send_all, args=(port, batches, t, seen_ids), daemon=True) for t in tallies
    ]
    for sender in senders:
        sender.start()

    @settings(
        max_examples=math.ceil(wanted / BATCH),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(requests(seen_ids), min_size=BATCH, max_size=BATCH))
    def one(batch: list[Request]) -> None:
        batches.put(batch)

    try:
        one()
    finally:
        for _ in senders:
            batches.put(None)
        for sender in senders:
            sender.join()
        for t in tallies:
            tally.add(t)


def _send_all(
    port: int, batches: queue.Queue[list[Request] | None], tally: Tally, seen_ids: list[str]
) -> None:
    try:
        _send_batches(port, batches, tally, seen_ids)
    except Exception as exc:
        tally.crash = f"{type(exc).__name__}: {exc}"
        while batches.get() is not None:  # keep the generator from blocking on a full queue
            pass


def _send_batches(
    port: int, batches: queue.Queue[list[Request] | None], tally: Tally, seen_ids: list[str]
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while (batch := batches.get()) is not None:
        for req in batch:
            try:
                status, text = _send(conn, req)
            except (http.client.HTTPException, OSError):
                # The server may close a connection after a malformed request (aiohttp answers
                # 400 and closes): send once more on a new one; closed again counts as status 0.
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                try:
                    status, text = _send(conn, req)
                except (http.client.HTTPException, OSError):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    status, text = 0, ""
            tally.sent += 1
            tally.statuses[status] += 1
            if status >= 500 and status != 503:
                tally.server_errors.append(f"{status} for {req.headers} {req.body[:80]!r}")
            if status == 200 and text == "ok":
                if req.valid:
                    tally.enqueued_valid += 1
                else:
                    tally.enqueued_invalid.append(f"{req.headers} {req.body[:80]!r}")
            if req.valid and req.webhook_id and not req.webhook_id.startswith("sha256"):
                seen_ids.append(req.webhook_id)
    conn.close()


def oversized(port: int) -> list[int]:
    """Bodies over the limit, declared or streamed: 413, never a 5xx or a job."""
    statuses = []
    body = b"{" + b" " * MAX_BODY + b"}"
    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {
            "X-Shopify-Topic": "customers/update",
            "X-Shopify-Shop-Domain": DOMAIN,
            "X-Shopify-Hmac-Sha256": sign(SECRET, body),
            "X-Shopify-Webhook-Id": "oversized",
        }
        try:
            conn.request("POST", "/webhooks/shopify", body=body, headers=headers)
            statuses.append(conn.getresponse().status)
        except OSError:
            statuses.append(413)  # the server may close the connection before reading it all
        finally:
            conn.close()
    return statuses


async def receiver_fuzz(run: RunContext) -> Result:
    examples = 1_500 if run.short else 10_000
    result = Result("receiver-fuzz", faults="hypothesis requests")
    config = StackConfig(customers=10, workers=0, log_level="warning")
    async with stack(run, "receiver-fuzz", config) as s:
        port = s.receivers[0].port
        assert port is not None
        warm = Tally()
        await asyncio.to_thread(fuzz, port, 300, warm)
        rss_before = s.receivers[0].rss()
        tally = Tally()
        await asyncio.to_thread(fuzz, port, examples, tally)
        big = await asyncio.to_thread(oversized, port)
        rss_after = s.receivers[0].rss()
        queued = int(await s.redis.zcard(s.keys.realtime_queue))
        alive = s.receivers[0].running
    growth_mb = (rss_after - rss_before) / 2**20
    result.inputs = warm.sent + tally.sent + len(big)
    result.load = f"{result.inputs:,} requests"
    result.figures.update(
        statuses={str(k): v for k, v in sorted(tally.statuses.items())},
        oversized_statuses=big,
        enqueued_valid=tally.enqueued_valid,
        queued_jobs=queued,
        rss_before_mb=round(rss_before / 2**20, 1),
        rss_after_mb=round(rss_after / 2**20, 1),
    )
    result.expect(tally.sent >= examples * 0.95, f"only {tally.sent} requests sent")
    for t in (warm, tally):
        result.expect(t.crash is None, f"the fuzz sender failed: {t.crash}")
    for line in tally.server_errors[:5]:
        result.fail(f"5xx answer: {line[:300]}")
    for line in tally.enqueued_invalid[:5]:
        result.fail(f"invalid request enqueued: {line[:300]}")
    result.expect(all(code == 413 for code in big), f"oversized bodies answered {big}")
    result.expect(
        queued == warm.enqueued_valid + tally.enqueued_valid,
        f"{queued} jobs queued for {warm.enqueued_valid + tally.enqueued_valid} valid deliveries",
    )
    result.expect(growth_mb < 16, f"receiver RSS grew {growth_mb:.1f} MB over the run")
    result.expect(alive, "the receiver died")
    return result
