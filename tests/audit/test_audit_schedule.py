"""Scheduled drift audits (`[shop.sync] audit_interval`): real Redis, the sandboxes over HTTP.

Two worker contexts stand for two worker processes of a pool: their ticks at the same moment
enqueue one audit, the job run by both at once audits once (the lease), and nothing runs again
until an interval has passed; a dead holder's lease holds the next audit back until it lapses.
Through arq workers: the tick's job runs on the audit queue, repairs only when configured, and
the repaired store audits clean. The interval and repair keys parse and fail clearly.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from core import fullsync_control as control
from core.keys import Keys
from core.redis_conn import typed
from mappings.installation import InstallationError
from mappings.installation_parse import parse_installations_toml
from sandbox.installation import DEMO
from sandbox.shopify.data import CUSTOMER_BASE
from tests.e2e.harness import pipeline
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from worker import audit_schedule
from worker.audit import run_audit
from worker.audit_schedule import audit_tick, scheduled_audit, tick
from worker.context import WorkerContext
from worker.jobs import realtime_cron_jobs

INTERVAL = {"audit_interval": "10m"}


async def test_two_workers_audit_once_per_interval_and_never_twice_at_once(
    redis_url: str, keys: Keys
) -> None:
    async with pipeline(redis_url, keys, customers=20, limits=FAST_LIMITS, sync=INTERVAL) as p:
        open_limits(p.store, p.account)
        domain = p.shop.domain
        other = WorkerContext(
            settings=p.app.settings, installations=p.installations, redis=p.app.redis, keys=keys
        )
        await other.start()
        try:
            ctxs = [{"app": p.app}, {"app": other}]
            ticked = await asyncio.gather(*(audit_tick(c) for c in ctxs))
            assert sorted(map(len, ticked)) == [0, 1]
            assert await p.redis.zcard(keys.audit_queue) == 1

            outcomes = await asyncio.gather(*(scheduled_audit(c, domain) for c in ctxs))
            audited = [o for o in outcomes if "audited" in o]
            assert len(audited) == 1 and audited[0]["customers"] == 20, outcomes
            # The other one found the lease held, or (had the first already ended) nothing due.
            skipped = [o for o in outcomes if "audited" not in o]
            assert skipped in ([{"skipped": "another audit of the shop runs"}], [{"skipped": "not due"}])
            stored = orjson.loads(await p.redis.get(keys.audit(domain)))
            assert stored["customers"] == 20 and stored["missing"] == audited[0]["missing"] > 0
            assert stored["repaired"] == {}  # audit_repair is off: nothing enqueued
            # The real-time worker's crons (the tick, the full-sync watchdog) share its queue and may
            # be there at this moment; no other job may be.
            # arq names a cron's job `name:run_ms`.
            crons = {
                c.name
                for c in (*realtime_cron_jobs(p.installations), *audit_schedule.cron_jobs(p.installations))
            }
            queued = await p.redis.zrange(keys.realtime_queue, 0, -1)
            assert [j for j in queued if j.decode().split(":")[0] not in crons] == []
            assert not await p.redis.exists(keys.audit_lease(domain), keys.audit_queued(domain))

            # Within the interval: nothing is due, a stray job does nothing.
            assert await tick(p.app) == [] and await tick(other) == []
            assert await scheduled_audit(ctxs[1], domain) == {"skipped": "not due"}
            # An interval later: due once, whichever worker ticks.
            later = time.time() + 601
            assert await tick(p.app, later) == [domain]
            assert await tick(other, later) == []
            await p.redis.delete(keys.audit_queue, keys.audit_queued(domain))

            # A holder that died mid-audit: its lease holds the next one back until it lapses.
            await p.redis.set(keys.audit_lease(domain), "dead-worker", px=300)
            assert await tick(other, later) == []
            await asyncio.sleep(0.4)
            assert await tick(other, later) == [domain]
        finally:
            await other.close()


async def test_scheduled_audit_through_arq_repairs_when_configured(redis_url: str, keys: Keys) -> None:
    async with pipeline(
        redis_url,
        keys,
        customers=30,
        workers=("realtime", "fullsync", "audit"),
        limits=FAST_LIMITS,
        sync={**INTERVAL, "audit_repair": True},
    ) as p:
        open_limits(p.store, p.account)
        full = await control.start_full_sync(p.redis, keys, p.shop.domain)
        await wait_finished(p.redis, keys, full.sync_id)
        missing = next(
            cid
            for cid in range(CUSTOMER_BASE, CUSTOMER_BASE + 30)
            if p.account.profile(p.shop.apsis.keyspace, str(cid)) is not None
        )
        assert p.account.delete_profile(p.shop.apsis.keyspace, str(missing))

        assert await tick(p.app) == [p.shop.domain]
        raw = None
        for _ in range(300):  # the audit worker polls its queue every second
            raw = await p.redis.get(keys.audit(p.shop.domain))
            if raw is not None:
                break
            await asyncio.sleep(0.05)
        assert raw is not None, "the scheduled audit did not finish within 15 s"
        stored = orjson.loads(raw)
        assert (stored["missing"], stored["repaired"]) == (1, {"resync": 1, "delete": 0, "remove": 0})
        schedule = await typed(p.redis.hgetall(keys.audit_schedule(p.shop.domain)))
        assert b"finished_at" in schedule and b"failed_at" not in schedule
        await p.settle()
        assert (await run_audit(p.app, p.shop)).report.drift == 0
        assert p.account.profile(p.shop.apsis.keyspace, str(missing)) is not None
        assert p.mismatches([missing]) == []


def test_the_audit_worker_keeps_its_timeout_off_the_full_sync_queue() -> None:
    assert audit_schedule.AUDIT_TIMEOUT_S > 3600
    assert all(f.timeout_s == audit_schedule.AUDIT_TIMEOUT_S for f in audit_schedule.functions())


@pytest.mark.parametrize(
    ("value", "seconds"),
    [('"24h"', 86_400), ("3600", 3600), ('"90m"', 5400), ('"7d"', 604_800), ('"600s"', 600), (None, None)],
)
def test_audit_interval_parses(value: str | None, seconds: int | None) -> None:
    text = DEMO.read_text()
    if value is not None:
        text = text.replace("[shop.apsis]", f"[shop.sync]\naudit_interval = {value}\n\n[shop.apsis]", 1)
    shop = next(iter(parse_installations_toml(text, {}).shops.values()))
    assert (shop.sync.audit_interval_s, shop.sync.audit_repair) == (seconds, False)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('audit_interval = "5m"', "at least 600 seconds"),
        ('audit_interval = "daily"', 'such as "24h"'),
        ("audit_interval = true", 'such as "24h"'),
        ('audit_repair = "yes"', "true or false"),
    ],
)
def test_bad_audit_settings_name_the_key(line: str, reason: str) -> None:
    text = DEMO.read_text().replace("[shop.apsis]", f"[shop.sync]\n{line}\n\n[shop.apsis]", 1)
    with pytest.raises(InstallationError) as caught:
        parse_installations_toml(text, {})
    assert "sync." + line.split(" ")[0] in str(caught.value) and reason in str(caught.value)
