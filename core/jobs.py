"""The job format shared by the receiver (which writes jobs) and the worker (which runs them).

Jobs are arq jobs serialised with orjson rather than pickle, so an operator can read them in
Redis and a job can never execute code on load. A webhook job carries one positional argument,
the `Delivery` as a dict, with the raw body kept unchanged as text.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
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
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

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
    """The bytes arq stores at `arq:job:<id>`."""
    return _job(function, list(args), dict(kwargs or {}), now_ms())


def _job(function: str, args: list[Any], kwargs: dict[str, Any], enqueued_ms: int) -> bytes:
    # The same fields as `arq.jobs.serialize_job`.
    return serialize({"t": None, "f": function, "a": args, "k": kwargs, "et": enqueued_ms})


def webhook_job_bytes(
    function: str,
    *,
    topic: str,
    shop: str,
    webhook_id: str,
    event_id: str | None,
    triggered_at: str | None,
    api_version: str | None,
    received_at: float,
    body: str,
) -> bytes:
    """The job of one webhook delivery: its argument is a `Delivery` (`Delivery.from_arg` reads
    it back). Built directly rather than through a Delivery and `job_bytes`: the receiver does
    this for every webhook, and the detour cost a tenth of its own work."""
    arg = {
        "topic": topic,
        "shop": shop,
        "webhook_id": webhook_id,
        "event_id": event_id,
        "triggered_at": triggered_at,
        "api_version": api_version,
        "received_at": received_at,
        "body": body,
    }
    return _job(function, [arg], {}, int(received_at * 1000))


def now_ms() -> int:
    return int(time.time() * 1000)


# Dedup + enqueue of a batch of deliveries in one script call (one round trip, one command to
# encode). KEYS[1] is the queue. ARGV: dedup key prefix, dedup ttl (s), job ttl (ms), score, then
# three per delivery: dedup key suffix, job id, job bytes. The dedup and job keys are built inside
# the script to keep the command short (the service needs a single, non-cluster Redis anyway, as
# arq does). Returns one 1 (enqueued) or 0 (known duplicate) per delivery. The dedup mark is
# written last: should the script stop half-way (e.g. Redis out of memory), the worst case is a
# job without its mark (a retried delivery then runs twice, harmlessly), never a mark without
# its job.
ENQUEUE_BATCH_LUA = """
local queue, prefix, dedup_ttl, job_ttl, score = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out = {}
for i = 0, ((#ARGV - 4) / 3) - 1 do
  local dedup = prefix .. ARGV[3 * i + 5]
  if redis.call('EXISTS', dedup) == 1 then
    out[i + 1] = 0
  else
    local id = ARGV[3 * i + 6]
    redis.call('PSETEX', 'arq:job:' .. id, job_ttl, ARGV[3 * i + 7])
    redis.call('ZADD', queue, score, id)
    redis.call('SET', dedup, id, 'EX', dedup_ttl)
    out[i + 1] = 1
  end
end
return out
"""
