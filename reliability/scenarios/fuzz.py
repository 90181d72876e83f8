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
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from receiver.signature import sign
from reliability.report import Result
from reliability.stack import DOMAIN, RunContext, StackConfig, stack
from shopsync.jobs import TOPIC_JOBS

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


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@st.composite
def requests(draw: st.DrawFn, seen_ids: list[str]) -> Request:
    # The body: JSON (sometimes customer-shaped), random bytes, text in odd encodings.
    kind = draw(st.sampled_from(["json", "customer", "bytes", "text", "gzip", "empty"]))
    if kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "customer":
        customer = {"id": draw(st.integers() | st.text(max_size=12)), "email": draw(st.text(max_size=20))}
        body = json.dumps(customer).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    elif kind == "text":
        encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-32"]))
        body = draw(st.text(max_size=80)).encode(encoding, errors="replace")
    elif kind == "gzip":
        body = gzip.compress(json.dumps(draw(json_values)).encode())
    else:
        body = b""
    headers: dict[str, str] = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", ""]))}
    if kind == "gzip" or (draw(st.booleans()) and draw(st.booleans())):
        headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "deflate", "br", "identity"]))
    topic = draw(st.sampled_from([*TOPICS, "", "unknown/topic", None]) | st.text(max_size=20))
    if topic is not None:
        headers["X-Shopify-Topic"] = topic
    domain = draw(st.sampled_from([DOMAIN, DOMAIN.upper(), "other.myshopify.com", "", None]))
    if domain is not None:
        headers["X-Shopify-Shop-Domain"] = domain
    # The signature: right, from another secret, of another body, of a truncated body, garbage.
    signing = draw(
        st.sampled_from(["right", "right", "secret", "other_body", "truncated", "garbage", "none"])
    )
    signed = False
    if signing == "right":
        headers["X-Shopify-Hmac-Sha256"] = sign(SECRET, body)
        signed = True
    elif signing == "secret":
        headers["X-Shopify-Hmac-Sha256"] = sign(draw(st.text(min_size=1, max_size=30)), body)
    elif signing == "other_body":
        headers["X-Shopify-Hmac-Sha256"] = sign(SECRET, body + b" ")
    elif signing == "truncated":
        headers["X-Shopify-Hmac-Sha256"] = sign(SECRET, body)
        body = body[: len(body) // 2] if body else b"{"
    elif signing == "garbage":
        raw = draw(st.binary(min_size=0, max_size=40))
        headers["X-Shopify-Hmac-Sha256"] = draw(st.sampled_from([base64.b64encode(raw).decode(), raw.hex()]))
    # Webhook id: fresh, replayed, malformed, missing.
    id_kind = draw(st.sampled_from(["fresh", "fresh", "replay", "malformed", "none"]))
    webhook_id: str | None = None
    if id_kind == "fresh":
        webhook_id = f"fuzz-{draw(st.uuids()).hex}"
    elif id_kind == "replay":
        # An index, not a draw from the list: the strategy must not depend on outside state.
        back = draw(st.integers(min_value=1, max_value=50))
        webhook_id = seen_ids[-min(back, len(seen_ids))] if seen_ids else None
    elif id_kind == "malformed":
        webhook_id = draw(st.sampled_from(["", "has space", "x" * 300, "åäö", "tab\tinside"]))
    if webhook_id is not None:
        headers["X-Shopify-Webhook-Id"] = webhook_id
    for name in ("X-Shopify-API-Version", "X-Shopify-Triggered-At", "X-Shopify-Event-Id"):
        if draw(st.booleans()):
            headers[name] = draw(st.text(max_size=40).filter(lambda t: "\n" not in t and "\r" not in t))
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


def fuzz(port: int, examples: int, tally: Tally) -> None:
    seen_ids: list[str] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(seen_ids))
    def one(req: Request) -> None:
        nonlocal conn
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

    one()
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
