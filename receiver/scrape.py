"""What `/metrics` adds to the receiver's own registry: the workers' shared metrics and gauges.

Workers have no port to scrape; they flush counters and histograms into one Redis hash
(`core.sharedmetrics`), rendered here. Gauges are read from Redis at scrape time: queue
depth per queue, workers alive, dead letters, progress of each running full sync, shops
whose Shopify app needs approval again. A Redis failure drops these parts of the answer, never
the receiver's own metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis

from core import sharedmetrics
from core.keys import Keys
from core.redis_conn import hgetall
from core.shop_status import shop_reports
from core.status import WORKER_ALIVE_S, audits, needs_approval, queue_report, suppressed_counts

FINISHED_STATES = frozenset({"done", "finished", "completed", "failed", "cancelled", "canceled"})


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _gauge(name: str, help_text: str, rows: list[tuple[dict[str, Any], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in rows:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        series = f"{name}{{{inner}}}" if inner else name
        lines.append(f"{series} {value:g}")
    return lines


async def gauges(redis: aioredis.Redis, keys: Keys, shops: Iterable[str] = ()) -> str:
    now = time.time()
    now_ms = int(now * 1000)
    depth: list[tuple[dict[str, Any], float]] = []
    oldest: list[tuple[dict[str, Any], float]] = []
    for queue in keys.queues:
        report = await queue_report(redis, queue, now_ms)
        name = queue.rsplit(":", 1)[-1]
        for state in ("queued", "deferred", "in_progress"):
            depth.append(({"queue": name, "state": state}, float(report[state])))
        oldest.append(({"queue": name}, float(report["oldest_age_s"])))
    workers = int(await redis.zcount(keys.workers, now - WORKER_ALIVE_S, "+inf"))
    dead = int(await redis.zcard(keys.dead_letter_index))
    seen: list[tuple[dict[str, Any], float]] = []
    total: list[tuple[dict[str, Any], float]] = []
    for raw_id in await redis.zrevrange(keys.full_syncs, 0, 19):
        sync_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        record = {
            k.decode(): _json(v) for k, v in (await hgetall(redis, keys.full_sync_record(sync_id))).items()
        }
        if not record or str(record.get("state", "")).lower() in FINISHED_STATES or record.get("finished_at"):
            continue
        labels = {"shop": record.get("shop", ""), "sync_id": sync_id}
        seen.append((labels, _number(record.get("seen"))))
        if record.get("total") is not None:
            total.append((labels, _number(record.get("total"))))
    waiting = await needs_approval(redis, keys)
    per_shop = await shop_reports(redis, keys, shops)
    lines = [
        *_gauge("shopsync_queue_jobs", "Jobs in each queue, by state", depth),
        *_gauge("shopsync_queue_oldest_job_seconds", "Age of the oldest due job in each queue", oldest),
        *_gauge(
            "shopsync_workers_alive", "Worker processes with a heartbeat in the last 90 s", [({}, workers)]
        ),
        *_gauge("shopsync_dead_letters", "Jobs that ran out of tries, kept for replay", [({}, dead)]),
        *_gauge("shopsync_full_sync_seen_customers", "Customers a running full sync has handled", seen),
        *_gauge("shopsync_full_sync_total_customers", "Customers a running full sync will handle", total),
        *_gauge(
            "shopsync_suppressed_profiles",
            "Profiles whose address APSIS suppresses (overrides every consent), by shop",
            [({"shop": shop}, float(n)) for shop, n in (await suppressed_counts(redis, keys, shops)).items()],
        ),
        *_gauge(
            "shopsync_shop_needs_approval",
            "1 while the shop's Shopify token cannot be had until the merchant approves the app again",
            [({"shop": shop}, float(shop in waiting)) for shop in sorted({*shops, *waiting})],
        ),
        *_gauge(
            "shopsync_audit_drift",
            "Differences the shop's last drift audit found, by kind (missing, extra, attribute, consent)",
            [
                ({"shop": shop, "kind": kind}, float(result.get(kind, 0)))
                for shop, result in sorted((await audits(redis, keys, shops)).items())
                for kind in ("missing", "extra", "attribute", "consent")
            ],
        ),
        *shop_gauges(per_shop),
    ]
    return "\n".join(lines) + "\n"


def shop_gauges(reports: dict[str, dict[str, Any]]) -> list[str]:
    """Per-shop gauges (core/shop_status.py). Their `shop` label takes the installations file's
    shops and shops with parked work only: bounded by the file (plus shops removed from it while
    work of theirs waits), never by what arrives from outside."""
    backlog: list[tuple[dict[str, Any], float]] = []
    levels: list[tuple[dict[str, Any], float]] = []
    backing_off: list[tuple[dict[str, Any], float]] = []
    for shop, report in sorted(reports.items()):
        b = report["backlog"]
        for kind in ("realtime", "apply", "fullsync_batches_ready", "held"):
            backlog.append(({"shop": shop, "kind": kind}, float(b[kind])))
        for bucket, value in sorted(report["rate_limits"].items()):
            if isinstance(value, dict) and value.get("burst"):
                kind = bucket.split(":", 1)[0]
                lane = bucket.rsplit("/", 1)[-1] if kind == "apsis-share" else ""
                labels = {"shop": shop, "bucket": kind, **({"lane": lane} if lane else {})}
                levels.append((labels, _number(value.get("level")) / _number(value.get("burst"))))
        backing_off.append(({"shop": shop}, float(bool((report.get("backoff") or {}).get("active")))))
    return [
        *_gauge("shopsync_shop_backlog_jobs", "Jobs waiting per shop, by kind (real-time sampled)", backlog),
        *_gauge(
            "shopsync_shop_limiter_fill_ratio",
            "Level of the shop's rate-limit buckets at their last use, as a share of the burst",
            levels,
        ),
        *_gauge("shopsync_shop_backoff", "1 while the shop backs off (its API kept failing)", backing_off),
    ]


async def shared(redis: aioredis.Redis, keys: Keys) -> str:
    stored = await hgetall(redis, keys.metrics)
    return sharedmetrics.render(stored) if stored else ""


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode()


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
