"""The job format shared by the receiver (which writes jobs) and the worker (which runs them).

Jobs are arq jobs serialised with orjson rather than pickle, so an operator can read them in
Redis and a job can never execute code on load. A webhook job carries one positional argument,
the `Delivery` as a dict, with the raw body kept unchanged as text.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

# Topic -> job function. One job per topic family, named after what it does.
TOPIC_JOBS: Mapping[str, str] = {
    "customers/create": "sync_customer",
    "customers/update": "sync_customer",
    "customers/enable": "sync_customer",
    "customers/disable": "sync_customer",
    "customers_email_marketing_consent/update": "sync_consent",
    "customers_marketing_consent/update": "sync_consent",
    "customer.tags_added": "sync_tags",
    "customer.tags_removed": "sync_tags",
    "customers/delete": "delete_customer",
    "orders/create": "record_order",
    "orders/paid": "record_order",
    "products/update": "refresh_product",
    "app/uninstalled": "uninstall_shop",
    "customers/data_request": "privacy_request",
    "customers/redact": "privacy_request",
    "shop/redact": "privacy_request",
}
PRIVACY_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})

# Jobs outlive arq's default one-day expiry: a backlog during a long outage must not silently
# expire. A week is longer than Shopify's longest retry window.
JOB_TTL_MS = 7 * 24 * 3600 * 1000
# Dedup keys outlive Shopify's retry window (48 h in the 2020 era, 4 h today).
DEDUP_TTL_S = 72 * 3600


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery as the receiver accepted it."""

    topic: str
    shop: str
    webhook_id: str
    event_id: str | None
    triggered_at: str | None
    api_version: str | None
    received_at: float
    body: str

    def to_arg(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_arg(cls, arg: Mapping[str, Any]) -> Delivery:
        values: dict[str, Any] = {name: arg.get(name) for name in cls.__dataclass_fields__}
        return cls(**values)

    def payload(self) -> Any:
        return orjson.loads(self.body)


def serialize(obj: Any) -> bytes:
    # Results may hold exceptions or other objects orjson cannot encode: fall back to repr.
    return orjson.dumps(obj, default=repr)


def deserialize(data: bytes) -> Any:
    return orjson.loads(data)


def job_bytes(function: str, args: tuple[Any, ...], kwargs: Mapping[str, Any] | None = None) -> bytes:
    """The bytes arq stores at `arq:job:<id>` (same fields as `arq.jobs.serialize_job`)."""
    return serialize({"t": None, "f": function, "a": list(args), "k": dict(kwargs or {}), "et": now_ms()})


def now_ms() -> int:
    return int(time.time() * 1000)


# Dedup + enqueue in one atomic step. KEYS: dedup key, arq job key, queue. ARGV: dedup ttl (s),
# job ttl (ms), job bytes, job id, score. Returns 1 when enqueued, 0 for a known duplicate.
ENQUEUE_ONCE_LUA = """
if redis.call('SET', KEYS[1], ARGV[4], 'NX', 'EX', ARGV[1]) then
  redis.call('PSETEX', KEYS[2], ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
  return 1
end
return 0
"""
