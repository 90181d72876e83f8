"""Per shop, for `shopsync status`, `/admin/status` and `/metrics`: backlog, rate-limit use, backoff
and last error, gathered from Redis without `KEYS` (one pipelined round trip for most of it).

- backlog: real-time and apply jobs of the shop among the first `SAMPLE` due jobs of those queues
  (read from the first bytes of each job, where the receiver writes the shop: a lower bound on a
  longer queue, marked `sampled`), full-sync batches waiting in its ready list
  (`Keys.fair_ready`), customers its running full sync has still to see, jobs held or parked
  (`Keys.held_jobs`: needing approval, backing off, or out of the installations file);
- rate limits: the listed limiter buckets of the shop (its Shopify bucket, its shares of its APSIS
  account `apsis-share:{client}:{shop}/{lane}`, and the account's bucket when the caller names the
  shop's account), each `{rate_per_s, burst, level, at}` as the last acquire left it;
- backoff: its record while it backs off or probes (`until`, `period_s`, `reason`, `trips`);
- last error: its last failed API answer or failed job (`Keys.shop_errors`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from core import fullsync_control as control
from core.keys import Keys
from core.redis_conn import hgetall, typed

SAMPLE = 1000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _json(raw: bytes | str | None) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _text(raw)


async def queued_by_shop(redis: aioredis.Redis, queue: str, now_ms: int) -> tuple[Counter[str], bool]:
    """Shop -> due jobs among the first `SAMPLE` of `queue`; True when the queue held more."""
    ids = await redis.zrangebyscore(queue, "-inf", now_ms, start=0, num=SAMPLE + 1)
    counts: Counter[str] = Counter()
    if not ids:
        return counts, False
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids[:SAMPLE]:
            pipe.getrange(f"arq:job:{_text(job_id)}", 0, 300)
        heads = await pipe.execute()
    for head in heads:
        text = _text(head or b"")
        start = text.find('"shop":"')
        if start >= 0:
            end = text.find('"', start + 8)
            if end > start:
                counts[text[start + 8 : end]] += 1
    return counts, len(ids) > SAMPLE


async def shop_reports(
    redis: aioredis.Redis, keys: Keys, shops: Iterable[str], accounts: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Per shop of `shops` (and any shop with parked work): see the module docstring.
    `accounts` maps a shop to its APSIS client id, to show the account's bucket too."""
    now = time.time()
    now_ms = int(now * 1000)
    realtime, rt_more = await queued_by_shop(redis, keys.realtime_queue, now_ms)
    apply, ap_more = await queued_by_shop(redis, keys.apply_queue, now_ms)
    parked = {_text(s) for s in await typed(redis.smembers(keys.fair_shops))}
    held_shops = {_text(s) for s in await typed(redis.smembers(keys.held_shops))}
    names = sorted({*shops, *parked, *held_shops})
    if not names:
        return {}
    limiter = {_text(k): _json(v) for k, v in (await hgetall(redis, keys.limiter("state"))).items()}
    errors = {_text(k): _json(v) for k, v in (await hgetall(redis, keys.shop_errors)).items()}
    weights = {_text(k): int(v) for k, v in (await hgetall(redis, keys.fair_weights)).items()}
    async with redis.pipeline(transaction=False) as pipe:
        for shop in names:
            pipe.llen(keys.fair_ready(shop))
            pipe.hlen(keys.held_jobs(shop))
            pipe.hgetall(keys.shop_backoff(shop))
            pipe.get(keys.full_sync(shop))
        answers = await pipe.execute()
    out: dict[str, dict[str, Any]] = {}
    for i, shop in enumerate(names):
        ready, held, backoff_raw, sync_id = answers[4 * i : 4 * i + 4]
        backoff = {_text(k): _json(v) for k, v in (backoff_raw or {}).items()}
        remaining = None
        if sync_id is not None:
            record = await control.read_sync(redis, keys, _text(sync_id))
            if record and record.get("state") == control.RUNNING and record.get("total") is not None:
                remaining = max(0, int(record["total"]) - int(record.get("seen") or 0))
        account = (accounts or {}).get(shop)
        buckets = {
            name: value
            for name, value in limiter.items()
            if name == f"shopify:{shop}"
            or (name.startswith("apsis-share:") and name.rsplit(":", 1)[-1].split("/")[0] == shop)
            or (account is not None and name == f"apsis:{account}")
        }
        out[shop] = {
            "in_installations": shop in set(shops),
            "weight": weights.get(shop),
            "backlog": {
                "realtime": realtime.get(shop, 0),
                "apply": apply.get(shop, 0),
                "sampled": rt_more or ap_more,
                "fullsync_batches_ready": int(ready),
                "fullsync_customers_left": remaining,
                "held": int(held),
            },
            "rate_limits": buckets,
            "backoff": ({**backoff, "active": float(backoff.get("until") or 0) > now} if backoff else None),
            "last_error": errors.get(shop),
        }
    return out
