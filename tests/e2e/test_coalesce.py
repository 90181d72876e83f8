"""A backlog of queued real-time updates merged per customer (worker/coalesce.py): the last
state of each customer reaches APSIS in about one write, and no deposit is ever stranded."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from core.jobs import Delivery
from core.keys import Keys
from sandbox.shopify.serialize import serialize_customer
from shopsync import jobview
from tests.e2e.harness import DOMAIN, SECTION_MAIN, Pipeline, pipeline
from tests.e2e.test_realtime_failures import _undeprecate
from worker import apsis_client, coalesce, deadletters, jobs, realtime_lag, runtime
from worker.ratelimit import apsis_account_bucket
from worker.retry import RetryPolicy
from worker.sync import Applied, apply_pending

FIRST_NAME = "1002"  # demo.toml: first_name's attribute version in the main section


async def metric(p: Pipeline, series: str) -> float:
    await p.app.metrics.flush()
    raw = await p.redis.hget(p.keys.metrics, series)  # type: ignore[misc]
    return float(raw or 0)


async def apply_jobs(p: Pipeline) -> list[str]:
    return [j.decode() for j in await p.redis.zrange(p.keys.apply_queue, 0, -1)]


async def failed(p: Pipeline, job_id: str) -> bool:
    """The job has failed (and been retried) at least once."""
    return any(orjson.loads(f)["job_id"] == job_id for f in await p.redis.zrange(p.keys.failures, 0, -1))


async def changed_customer(p: Pipeline, first_name: str) -> int:
    """A customer of the store, renamed; the test delivers its webhooks by hand."""
    p.store.subscriptions.clear()
    cid = next(iter(p.store.customer_ids()))
    await p.store.update_customer(cid, first_name=first_name)
    return cid


def ctx(p: Pipeline, job_id: str = "test-job") -> dict[str, Any]:
    return {"app": p.app, "job_id": job_id, "job_try": 1}


def delivery(p: Pipeline, cid: int, webhook_id: str, *, waited_s: float) -> dict[str, Any]:
    """A customers/update delivery of the customer as the store has it now, received `waited_s` ago."""
    customer = p.store.customer(cid)
    assert customer is not None
    payload = serialize_customer(customer, p.shop.api_version, for_webhook=True)
    now = time.time()
    return Delivery(
        topic="customers/update",
        shop=DOMAIN,
        webhook_id=webhook_id,
        event_id=None,
        triggered_at=datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
        api_version=p.shop.api_version,
        received_at=now - waited_s,
        body=orjson.dumps(payload).decode(),
    ).to_arg()


async def in_a_burst(p: Pipeline, cid: int, waited_s: float = 5.0) -> None:
    """The customer's first update behind a backlog: applied at once (nothing to merge it with
    yet), it marks the customer bursting, so the updates the test sends next (within `waited_s`)
    are deposited for one apply job, as a customer edited again and again behind a backlog is.
    Then the customer changes again, so the test's next delivery has something to write."""
    result = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-burst", waited_s=waited_s))
    assert result == {"outcome": "written"}
    assert await p.redis.exists(p.keys.customer_burst(DOMAIN, cid))
    customer = p.store.customer(cid)
    assert customer is not None
    await p.store.update_customer(cid, first_name=f"{customer.first_name} again")


async def test_a_queued_backlog_becomes_about_one_apply_per_customer(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        ids = [
            (await p.store.create_customer(email=f"b{i}@example.com", email_state="subscribed")).id
            for i in range(4)
        ]
        for round_no in range(6):  # names, consent both ways, tags, a new address: all queued
            for cid in ids:
                await p.store.update_customer(cid, first_name=f"Name{round_no}")
                if round_no in (1, 4):
                    await p.store.set_email_consent(cid, "unsubscribed" if round_no == 1 else "subscribed")
                if round_no == 2:
                    await p.store.add_tags(cid, ["vip"])
                if round_no == 3:
                    await p.store.change_email(cid, f"b{cid}-new@example.com")
        await p.store.deliverer.settled()
        queued = int(await p.redis.zcard(keys.realtime_queue))
        assert queued >= 6 * len(ids)
        # Every delivery has now waited: the worker is behind.
        await asyncio.sleep(realtime_lag.BEHIND_S + 0.2)
        await p.start_workers(("realtime",))
        await p.settle()
        assert p.mismatches(ids) == []
        patches = Counter(
            (w.params["profile_key"], w.params["section"]) for w in p.account.writes_of("attributes")
        )
        for cid in ids:
            per_section = {s: n for (key, s), n in patches.items() if key == str(cid)}
            assert per_section and all(n <= 2 for n in per_section.values()), (cid, per_section)
        # Each customer's first update applies at once (nothing queued yet to merge it with) and
        # marks it bursting; its later ones are deposited for one apply job.
        await p.app.metrics.flush()
        outcomes = {
            k.decode(): float(v)
            for k, v in (await p.redis.hgetall(p.keys.metrics)).items()  # type: ignore[misc]
            if k.startswith(b"shopsync_customers_total{") and b'source="webhook"' in k
        }
        assert sum(outcomes.values()) == queued, outcomes
        assert outcomes['shopsync_customers_total{outcome="deferred",source="webhook"}'] >= queued - len(ids)
        assert await metric(p, 'shopsync_apply_jobs_total{end="done"}') <= 2 * len(ids)
        assert await metric(p, "shopsync_coalesced_applies_total") >= len(ids)
        for cid in ids:
            assert not await p.redis.exists(keys.customer_apply(DOMAIN, cid))
            assert await p.app.customers.pending(DOMAIN, cid) == {}
        assert await p.dead_letters() == []


async def test_a_retried_deposit_schedules_one_apply_and_is_applied(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Retried")
        await in_a_burst(p, cid)
        arg = delivery(p, cid, "w-1", waited_s=5.0)
        # The job deposits, then its worker dies before arq records the end: arq runs it again.
        first = await jobs.sync_customer(ctx(p), arg)
        again = await jobs.sync_customer(ctx(p), arg)
        assert first["outcome"] == again["outcome"] == "deferred"
        assert first["apply_job"] == again["apply_job"]
        assert await apply_jobs(p) == [first["apply_job"]]
        await p.start_workers(("realtime",))
        await p.settle()
        assert p.mismatches([cid]) == []
        assert not await p.redis.exists(keys.customer_apply(DOMAIN, cid))


async def test_a_marker_whose_job_is_gone_strands_nothing(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Orphan")
        await in_a_burst(p, cid)
        first = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=5.0))
        # The apply job ends without clearing the marker (a dead letter, an expired job).
        lost = first["apply_job"]
        await p.redis.delete(f"arq:job:{lost}")
        await p.redis.zrem(keys.apply_queue, lost)
        await p.store.update_customer(cid, first_name="Orphan2")
        second = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-2", waited_s=5.0))
        assert second["outcome"] == "deferred" and second["apply_job"] != lost
        assert await apply_jobs(p) == [second["apply_job"]]
        await p.start_workers(("realtime",))
        await p.settle()
        assert p.mismatches([cid]) == []
        assert await p.app.customers.pending(DOMAIN, cid) == {}


async def test_a_deposit_while_the_apply_job_runs_is_applied(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "First")
        await in_a_burst(p, cid)
        first = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=5.0))
        late: list[dict[str, Any]] = []
        real = apply_pending

        async def apply_then_deposit(*args: Any) -> Applied | None:
            applied = await real(*args)
            if not late:
                # Between the apply and the marker's clearing: a real-time update, not behind.
                await p.store.update_customer(cid, first_name="Late")
                late.append(await jobs.sync_customer(ctx(p, "late"), delivery(p, cid, "w-2", waited_s=0.0)))
            return applied

        monkeypatch.setattr("worker.coalesce.apply_pending", apply_then_deposit)
        await p.start_workers(("realtime",))
        await p.settle()
        assert late == [{"outcome": "deferred", "apply_job": first["apply_job"]}]
        profile = p.account.profile(p.shop.apsis.keyspace, str(cid))
        assert profile is not None and profile.attributes[SECTION_MAIN][FIRST_NAME] == "Late"
        assert p.mismatches([cid]) == []
        assert not await p.redis.exists(keys.customer_apply(DOMAIN, cid))
        assert await p.app.customers.pending(DOMAIN, cid) == {}


async def test_an_apply_job_that_fails_mid_apply_is_retried_with_its_updates(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "backoff_s", lambda _try: 0.2)
    # The client's own retries would sit out 30 s of the outage before the job fails once.
    fast = RetryPolicy(max_attempts=2, base_delay_s=0.05, max_delay_s=0.1, budget_s=1.0)
    monkeypatch.setattr(apsis_client, "RetryPolicy", lambda: fast)
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Outage")
        await in_a_burst(p, cid)
        first = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=5.0))
        p.account.faults.start_outage(time.time())  # until the apply job has failed once
        await p.start_workers(("realtime",))
        async with asyncio.timeout(60):
            while True:
                if await failed(p, first["apply_job"]):
                    break
                await asyncio.sleep(0.1)
        assert await p.redis.exists(keys.customer_apply(DOMAIN, cid))  # still scheduled: the retry
        p.account.faults.end_outage()
        await p.settle()
        assert p.mismatches([cid]) == []
        assert await p.dead_letters() == []
        assert not await p.redis.exists(keys.customer_apply(DOMAIN, cid))


async def test_an_apply_job_cut_off_mid_apply_runs_again(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Killed")
        await in_a_burst(p, cid, waited_s=1.5)
        job = (await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=1.5)))["apply_job"]
        p.account.faults.set_latency(3.0)  # the apply is still sending when its worker dies
        await p.start_workers(("realtime",))
        async with asyncio.timeout(60):
            while True:
                if await p.redis.exists(f"arq:in-progress:{job}"):
                    break
                await asyncio.sleep(0.05)
        await p.stop_workers()
        # arq keeps the job (and the marker names it): nothing else is scheduled for the customer.
        assert await p.redis.exists(f"arq:job:{job}")
        assert await p.redis.get(keys.customer_apply(DOMAIN, cid)) == job.encode()
        assert await p.app.customers.pending(DOMAIN, cid) != {}
        await p.redis.delete(f"arq:in-progress:{job}")  # the dead worker's mark expires
        p.account.faults.set_latency(0.0)
        await p.start_workers(("realtime",))
        await p.settle()
        assert p.mismatches([cid]) == []
        assert not await p.redis.exists(keys.customer_apply(DOMAIN, cid))
        assert await p.app.customers.pending(DOMAIN, cid) == {}


async def test_an_apply_job_that_cannot_get_the_lock_hands_over(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coalesce, "APPLY_BUDGET_S", 0.3)
    monkeypatch.setattr(coalesce, "HANDOVER_DEFER_S", 0.2)
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Handed")
        await in_a_burst(p, cid, waited_s=1.5)
        first = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=1.5))
        # A worker that died holding the customer's lock: it lapses in 3 s.
        await p.redis.set(keys.customer_lock(DOMAIN, cid), "dead-worker", px=3000)
        await p.start_workers(("realtime",))
        await p.settle()
        assert p.mismatches([cid]) == []
        assert await metric(p, 'shopsync_apply_jobs_total{end="handed"}') >= 1
        assert await p.redis.get(keys.customer_apply(DOMAIN, cid)) is None
        assert await p.dead_letters() == []
        assert not await failed(p, first["apply_job"])  # handed over, not failed


async def test_an_apply_job_is_listed_kept_as_a_dead_letter_and_replayed(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Listed")
        await in_a_burst(p, cid, waited_s=2.0)
        first = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=2.0))
        listed = await jobview.queued_jobs(p.redis, keys)
        assert [(j["job_id"], j["function"], j["shop"], j["customer_id"]) for j in listed] == [
            (first["apply_job"], "apply_customer", DOMAIN, cid)
        ]
        p.account.deprecate_version(SECTION_MAIN, FIRST_NAME)  # APSIS now answers 400: permanent
        await p.start_workers(("realtime",))
        await p.settle()
        letters = await deadletters.list_letters(p.redis, keys)
        assert [(letter.function, letter.args) for letter in letters] == [
            ("apply_customer", [{"shop": DOMAIN, "customer_id": cid}])
        ]
        assert await p.app.customers.pending(DOMAIN, cid) != {}  # kept for the replay
        _undeprecate(p.account, SECTION_MAIN, FIRST_NAME)
        assert await deadletters.replay(p.redis, keys, letters[0].job_id)
        await p.settle()
        assert p.mismatches([cid]) == []
        assert await p.app.customers.pending(DOMAIN, cid) == {}
        assert not await p.redis.exists(keys.customer_apply(DOMAIN, cid))  # the stale marker too


async def test_real_time_updates_that_are_not_behind_apply_at_once(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Now")
        result = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=0.0))
        assert result == {"outcome": "written"}
        assert await apply_jobs(p) == []
        assert p.mismatches([cid]) == []


async def test_the_apply_waits_as_long_as_the_worker_is_behind_up_to_a_cap(
    redis_url: str, keys: Keys
) -> None:
    async with pipeline(redis_url, keys, customers=4, workers=()) as p:
        a, b, c, d = list(p.store.customer_ids())[:4]

        async def deposit(cid: int, lag_s: float) -> tuple[coalesce.Scheduled | None, float, float]:
            before = time.time() * 1000 - 1  # the script gets whole milliseconds
            update = {"kind": "rest", "payload": {"id": cid}, "received_at": time.time() - lag_s}
            scheduled = await coalesce.deposit(p.app, DOMAIN, cid, f"u-{cid}", update, lag_s)
            return scheduled, before, time.time() * 1000

        async def defer_ms(
            scheduled: coalesce.Scheduled | None, before: float, after: float
        ) -> tuple[float, float]:
            assert scheduled is not None
            score = await p.redis.zscore(keys.apply_queue, scheduled.job_id)
            assert score is not None
            return score - after, score - before

        assert (await deposit(a, 0.05))[0] is None  # not behind: applied by the caller, now
        low, high = await defer_ms(*await deposit(b, 5.0))
        assert low <= 5000 <= high
        low, high = await defer_ms(*await deposit(c, 3600.0))
        assert low <= coalesce.DEFER_CAP_S * 1000 <= high
        # Not behind itself, but the apply queue is: a job due 8 s ago still waits.
        since = int(time.time() * 1000)
        await p.redis.zadd(keys.apply_queue, {"apply-old": since - 8000})
        scheduled, before, after = await deposit(d, 0.0)
        low, high = await defer_ms(scheduled, before, after)
        assert low <= 8000 + (after - since) and high >= 8000  # deferred by that job's wait


async def test_a_job_run_again_after_its_worker_died_is_not_taken_for_a_backlog(
    redis_url: str, keys: Keys
) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Revived")
        # arq runs a killed worker's job again once its in-progress mark expires (45 s later):
        # the delivery waited that long, but for the dead worker, not behind other updates.
        revived = {**ctx(p), "job_try": 2}
        result = await jobs.sync_customer(revived, delivery(p, cid, "w-1", waited_s=45.0))
        assert result == {"outcome": "written"}
        assert await apply_jobs(p) == []
        assert p.mismatches([cid]) == []
        # A first run that waited as long is behind: the customer's next update merges with it.
        await p.store.update_customer(cid, first_name="Queued")
        first = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-2", waited_s=45.0))
        assert first == {"outcome": "written"}  # nothing to merge it with yet
        await p.store.update_customer(cid, first_name="Queued again")
        second = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-3", waited_s=45.0))
        assert second["outcome"] == "deferred"


async def test_a_webhooks_deposit_takes_the_lock_and_reads_in_the_same_round_trip(
    redis_url: str, keys: Keys
) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Locked")
        lock = keys.customer_lock(DOMAIN, cid)
        update = {"kind": "rest", "payload": {"id": cid}, "received_at": time.time()}
        first = await coalesce.deposit_webhook(p.app, p.shop, cid, "u-1", update, 0.0)
        assert first.locked is not None and first.scheduled is None and not first.uninstalled
        assert list(first.locked.entries) == ["u-1"]  # its own update, read with the lock
        assert first.locked.stored.state is None  # nothing synced yet
        assert (await p.redis.get(lock)).decode() == first.locked.token
        # The lock is held: the next deposit leaves the apply to `submit` (no lock, no job).
        second = await coalesce.deposit_webhook(p.app, p.shop, cid, "u-2", update, 0.0)
        assert second == coalesce.Deposited()
        assert sorted(await p.app.customers.pending(DOMAIN, cid)) == ["u-1", "u-2"]
        await p.app.customers.unlock(DOMAIN, cid, first.locked.token)

        # The shop uninstalled: nothing is deposited, nothing locked.
        await p.redis.sadd(keys.uninstalled, DOMAIN)  # type: ignore[misc]
        gone = await coalesce.deposit_webhook(p.app, p.shop, cid, "u-3", update, 0.0)
        assert gone == coalesce.Deposited(uninstalled=True)
        assert sorted(await p.app.customers.pending(DOMAIN, cid)) == ["u-1", "u-2"]
        assert not await p.redis.exists(lock)
        # Through the job: skipped, a poison payload of the uninstalled shop too (not a dead letter).
        assert await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=0.0)) == {
            "skipped": "shop uninstalled"
        }
        poison = {**delivery(p, cid, "w-2", waited_s=0.0), "body": "[1, 2]"}
        assert await jobs.sync_customer(ctx(p), poison) == {"skipped": "shop uninstalled"}
        assert await p.dead_letters() == []


async def test_a_webhook_applied_with_the_lock_its_deposit_took_writes_and_unlocks(
    redis_url: str, keys: Keys
) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Straight")
        assert await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=0.0)) == {
            "outcome": "written"
        }
        assert p.mismatches([cid]) == []
        assert not await p.redis.exists(keys.customer_lock(DOMAIN, cid))
        assert await p.app.customers.pending(DOMAIN, cid) == {}


async def test_a_webhook_job_that_starts_late_tells_the_dispatcher(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Late")
        await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=0.0))
        assert not await p.redis.exists(keys.realtime_behind)
        # Received long ago but due just now (arq's score): a parked job released, not a backlog.
        released = {**ctx(p), "score": int(time.time() * 1000)}
        await jobs.sync_customer(released, delivery(p, cid, "w-0", waited_s=60.0))
        assert not await p.redis.exists(keys.realtime_behind)
        await jobs.sync_customer(ctx(p), delivery(p, cid, "w-2", waited_s=5.0))
        assert await p.redis.exists(keys.realtime_behind)


async def test_a_lone_update_behind_a_backlog_applies_at_once(redis_url: str, keys: Keys) -> None:
    """The real-time queue is behind (the pool's CPU: many shops, different customers), APSIS is
    not: deferring would add a second job and the wait again to an update nothing can merge
    with. Applied at once, it marks the customer for the lag, so its next update merges."""
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Lone")
        result = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=3.0))
        assert result == {"outcome": "written"}
        assert await apply_jobs(p) == []
        assert p.mismatches([cid]) == []
        ttl_ms = await p.redis.pttl(keys.customer_burst(DOMAIN, cid))
        assert 2000 < ttl_ms <= 3000  # as long as the update waited
        await p.store.update_customer(cid, first_name="Lone again")
        second = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-2", waited_s=3.0))
        assert second["outcome"] == "deferred"
        assert await apply_jobs(p) == [second["apply_job"]]


async def test_behind_while_the_shops_apsis_account_is_booked_ahead_defers(
    redis_url: str, keys: Keys
) -> None:
    """An update applied now would wait at the APSIS limiter holding a real-time job slot (one
    shop's busy account would hold the slots every shop's webhooks need): deferred instead."""
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        cid = await changed_customer(p, "Booked")
        account = apsis_account_bucket(p.shop.apsis, p.shop.limits)
        await p.app.limiter.hold(account, 2.0)  # two seconds of requests reserved ahead
        result = await jobs.sync_customer(ctx(p), delivery(p, cid, "w-1", waited_s=3.0))
        assert result["outcome"] == "deferred"
        assert not await p.redis.exists(keys.customer_burst(DOMAIN, cid))
        # Not behind at all: applied now whatever the account's schedule (the limiter paces it).
        other = list(p.store.customer_ids())[1]
        await p.store.update_customer(other, first_name="Booked now")
        assert await jobs.sync_customer(ctx(p), delivery(p, other, "w-2", waited_s=0.0)) == {
            "outcome": "written"
        }


async def test_the_deposit_script_is_registered_once_and_survives_a_script_flush(
    redis_url: str, keys: Keys
) -> None:
    """Registered once a process (registering hashes the source, once a webhook otherwise); a
    Redis that forgot its scripts (restarted, failed over) gets it loaded again on the next call."""
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        assert p.app.script(coalesce._DEPOSIT) is p.app.script(coalesce._DEPOSIT)
        first, second = list(p.store.customer_ids())[:2]
        await p.store.update_customer(first, first_name="Once")
        assert await jobs.sync_customer(ctx(p), delivery(p, first, "w-1", waited_s=0.0)) == {
            "outcome": "written"
        }
        await p.redis.script_flush()
        await p.store.update_customer(second, first_name="Flushed")
        assert await jobs.sync_customer(ctx(p), delivery(p, second, "w-2", waited_s=0.0)) == {
            "outcome": "written"
        }
        assert p.mismatches([first, second]) == []
