"""Reading jobs out of Redis for operators: queued, in progress, finished, dead. Never `KEYS`."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from core.keys import Keys
from core.logging import scrub_text
from core.personal import mask_personal
from core.redis_conn import typed
from worker.deadletters import get_letter, list_letters


def masked(value: Any) -> Any:
    """Arguments as an operator may see them: JSON bodies parsed, the customer's data masked
    (core/personal.py)."""
    return mask_personal(value)


def _summary(job_id: str, data: dict[str, Any]) -> dict[str, Any]:
    args = data.get("a") or []
    first = args[0] if args and isinstance(args[0], dict) else {}
    return {
        "job_id": job_id,
        "function": data.get("f"),
        "shop": first.get("shop"),
        "topic": first.get("topic"),
        "customer_id": first.get("customer_id"),  # apply-customer jobs (worker/coalesce.py)
        "enqueued_at": (data.get("et") or 0) / 1000,
    }


async def queued_jobs(redis: aioredis.Redis, keys: Keys, limit: int = 50) -> list[dict[str, Any]]:
    now_ms = time.time() * 1000
    out: list[dict[str, Any]] = []
    for queue in keys.queues:
        members = await redis.zrange(queue, 0, limit - 1, withscores=True)
        if not members:
            continue
        pipe = redis.pipeline(transaction=False)
        for job_id, _ in members:
            jid = job_id.decode()
            pipe.get(f"arq:job:{jid}")
            pipe.exists(f"arq:in-progress:{jid}")
            pipe.get(f"arq:retry:{jid}")
        replies = await pipe.execute()
        for i, (job_id, score) in enumerate(members):
            raw, running, tries = replies[3 * i : 3 * i + 3]
            if raw is None:
                continue
            entry = _summary(job_id.decode(), orjson.loads(raw))
            entry["queue"] = queue
            entry["status"] = "in_progress" if running else ("deferred" if score > now_ms else "queued")
            entry["tries"] = int(tries or 0)
            entry["run_at"] = score / 1000
            out.append(entry)
    return out[:limit]


async def failed_jobs(redis: aioredis.Redis, keys: Keys, limit: int = 50) -> list[dict[str, Any]]:
    """Recent failures (retried or final) and dead letters, newest first."""
    out: list[dict[str, Any]] = []
    for letter in await list_letters(redis, keys, limit):
        out.append(
            {
                "job_id": letter.job_id,
                "function": letter.function,
                "status": "dead_letter",
                "tries": letter.tries,
                "error": scrub_text(letter.error),
                "at": letter.failed_at,
            }
        )
    for raw in await redis.zrevrange(keys.failures, 0, limit - 1):
        entry = orjson.loads(raw)
        if not entry.get("final"):
            out.append(
                {
                    "job_id": entry["job_id"],
                    "function": entry["function"],
                    "status": "retrying",
                    "tries": entry["try"],
                    "error": scrub_text(entry["error"]),
                    "at": entry["at"],
                }
            )
    out.sort(key=lambda e: e["at"], reverse=True)
    return out[:limit]


async def job_detail(redis: aioredis.Redis, keys: Keys, job_id: str) -> dict[str, Any] | None:
    raw = await typed(redis.get(f"arq:job:{job_id}"))
    if raw is not None:
        data = orjson.loads(raw)
        running = await redis.exists(f"arq:in-progress:{job_id}")
        tries = await typed(redis.get(f"arq:retry:{job_id}"))
        score = None
        queue = None
        for q in keys.queues:
            score = await redis.zscore(q, job_id)
            if score is not None:
                queue = q
                break
        return {
            **_summary(job_id, data),
            "queue": queue,
            "status": "in_progress" if running else "queued",
            "tries": int(tries or 0),
            "run_at": score / 1000 if score else None,
            "args": masked(data.get("a")),
        }
    result = await typed(redis.get(f"arq:result:{job_id}"))
    if result is not None:
        data = orjson.loads(result)
        return {
            **_summary(job_id, data),
            "queue": data.get("q"),
            "status": "complete" if data.get("s") else "failed",
            "tries": data.get("t"),
            "started_at": (data.get("st") or 0) / 1000,
            "finished_at": (data.get("ft") or 0) / 1000,
            "result": masked(data.get("r")),
            "args": masked(data.get("a")),
        }
    letter = await get_letter(redis, keys, job_id)
    if letter is not None:
        return {
            "job_id": job_id,
            "function": letter.function,
            "queue": letter.queue,
            "status": "dead_letter",
            "tries": letter.tries,
            "error": scrub_text(letter.error),
            "failed_at": letter.failed_at,
            "args": masked(letter.args),
        }
    return None
