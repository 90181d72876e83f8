"""Faults, each during a full sync (when the service has one) with live webhooks flowing: the
fault is injected while both run, taken away, and the pipeline must converge with nothing lost."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Awaitable, Callable

from reliability.report import Result
from reliability.scenarios.common import finish
from reliability.stack import RunContext, Stack, StackConfig, orders_available, stack
from reliability.traffic import Traffic

Inject = Callable[[Stack, Result, float], Awaitable[None]]
FULL_SYNC_CUSTOMERS = 500


async def _scenario(
    run: RunContext,
    name: str,
    inject: Inject,
    *,
    fault_s: float,
    config: StackConfig | None = None,
    rate: float = 10.0,
    settle_s: float = 400.0,
    queues: tuple[str, ...] = (),
    prepare: Callable[[Stack], None] | None = None,
) -> Result:
    result = Result(name)
    started = time.monotonic()
    # Every fault starts 2 s into the full sync, which 500 customers keep busy for longer than
    # that (it runs at the APSIS limit); more customers would only lengthen every scenario.
    config = config or StackConfig(customers=FULL_SYNC_CUSTOMERS)
    async with stack(run, name, config) as s:
        for queue in queues:
            await s.add_worker(queue).ready()
        if prepare is not None:
            prepare(s)
        s.subscribe()
        sync_id = await s.start_full_sync()
        if sync_id is None:
            result.notes.append("no full sync in this build: live webhooks only")
        async with Traffic(s.store, rate, orders=orders_available()) as traffic:
            await asyncio.sleep(2.0)
            await inject(s, result, fault_s)
            await asyncio.sleep(2.0)
        result.load = f"{rate:g} changes/s" + (" + full sync" if sync_id else "")
        await finish(s, result, settle_s=settle_s, all_customers=sync_id is not None)
        result.inputs = traffic.changes
        result.figures["changes"] = dict(traffic.done)
    result.seconds = round(time.monotonic() - started, 1)
    return result


async def worker_kill(run: RunContext) -> Result:
    """Full: SIGKILL a worker of both queues. Its real-time jobs wait for arq's in-progress key to
    expire (the real-time job timeout + 10 s = 45 s, worker/main.py) before another worker re-runs
    them; its full-sync batches are handed over by the watchdog within seconds. Short: kill the
    full-sync worker only, so the short version does not wait out those 45 s."""

    async def inject(s: Stack, result: Result, fault_s: float) -> None:
        victim = s.workers[-1]
        victim.kill(signal.SIGKILL)
        await asyncio.sleep(fault_s)
        victim.start()
        await victim.ready()
        which = "full-sync worker" if run.short else "worker"
        result.faults = f"SIGKILL {which}, restart after {fault_s:g} s"

    if run.short:
        config = StackConfig(customers=500, workers=0)
        queues = ("realtime", "fullsync")
        return await _scenario(run, "worker-kill", inject, fault_s=2.0, config=config, queues=queues)
    return await _scenario(run, "worker-kill", inject, fault_s=2.0)


async def receiver_kill(run: RunContext) -> Result:
    async def inject(s: Stack, result: Result, fault_s: float) -> None:
        victim = s.receivers[0]
        victim.kill(signal.SIGKILL)
        await asyncio.sleep(fault_s)
        victim.start()
        await victim.ready()
        refused = sum(
            1 for r in s.store.deliverer.records.values() if any(isinstance(x, str) for x in r.statuses)
        )
        result.figures["deliveries_refused_then_retried"] = refused
        result.faults = f"SIGKILL receiver, restart after {fault_s:g} s"

    return await _scenario(run, "receiver-kill", inject, fault_s=3.0)


async def redis_restart(run: RunContext) -> Result:
    async def inject(s: Stack, result: Result, fault_s: float) -> None:
        before = await s.queued()
        s.redis_server.restart()  # SIGKILL, then the same port and AOF directory
        result.figures["queued_at_kill"] = before
        result.faults = "SIGKILL Redis, restart from AOF"

    return await _scenario(run, "redis-restart", inject, fault_s=0.0)


async def redis_down(run: RunContext) -> Result:
    async def inject(s: Stack, result: Result, fault_s: float) -> None:
        s.redis_server.kill()
        await asyncio.sleep(fault_s)
        s.redis_server.start()
        answered_503 = sum(1 for r in s.store.deliverer.records.values() if 503 in r.statuses)
        result.figures["webhooks_answered_503"] = answered_503
        result.expect(answered_503 > 0, "no webhook was answered 503 while Redis was down")
        result.faults = f"Redis down {fault_s:g} s"

    return await _scenario(run, "redis-down", inject, fault_s=5.0 if run.short else 20.0)


async def apsis_errors(run: RunContext) -> Result:
    async def inject(s: Stack, result: Result, fault_s: float) -> None:
        s.account.faults.set_errors({500: 0.15, 503: 0.10, 429: 0.05}, seed=9)
        await asyncio.sleep(fault_s)
        s.account.faults.clear()
        result.faults = f"APSIS 30% 5xx/429 for {fault_s:g} s"

    return await _scenario(run, "apsis-errors", inject, fault_s=20.0 if run.short else 120.0)


async def apsis_outage(run: RunContext) -> Result:
    async def inject(s: Stack, result: Result, fault_s: float) -> None:
        s.account.faults.start_outage(s.account.clock(), fault_s)
        await asyncio.sleep(fault_s)
        s.account.faults.end_outage()
        result.faults = f"APSIS down {fault_s:g} s"

    return await _scenario(run, "apsis-outage", inject, fault_s=10.0 if run.short else 60.0)


async def token_expiry(run: RunContext) -> Result:
    async def inject(s: Stack, result: Result, fault_s: float) -> None:
        s.account.token_lifetime = 8.0
        revoked = s.account.revoke_tokens()
        await asyncio.sleep(fault_s)
        revoked += s.account.revoke_tokens()
        await asyncio.sleep(fault_s)
        s.account.token_lifetime = 86_400
        result.figures["tokens_issued"] = s.account.request_count(route="/oauth/token", status=200)
        result.faults = f"tokens revoked x2, 8 s lifetime for {2 * fault_s:g} s"

    # 8 s tokens for 24 s: the pool's token expires about three times, besides the two revocations.
    return await _scenario(run, "token-expiry", inject, fault_s=6.0 if run.short else 12.0)


async def shopify_429(run: RunContext) -> Result:
    """A third of Shopify Admin API requests answered 429: during the full-sync walk, and on the
    customer fetches that 2025-01 webhooks (no tags, no consent) make."""

    def prepare(s: Stack) -> None:
        s.store.rate_limit.fault_429_rate = 1 / 3  # from before the full sync starts its walk

    async def inject(s: Stack, result: Result, fault_s: float) -> None:
        await asyncio.sleep(fault_s)
        s.store.rate_limit.fault_429_rate = 0.0
        result.figures["shopify_requests"] = sum(s.shopify.request_counts().values())
        result.figures["shopify_429"] = sum(
            n for (_, st), n in s.shopify.request_counts().items() if st == 429
        )
        result.faults = f"Shopify 429 on 1/3 for {fault_s:g} s"

    config = StackConfig(customers=FULL_SYNC_CUSTOMERS, api_version="2025-01")
    fault_s = 10.0 if run.short else 20.0  # the walk (two pages) is over well within it
    return await _scenario(run, "shopify-429", inject, fault_s=fault_s, config=config, prepare=prepare)


POISON = (
    (
        "customers/update",
        b'{"id": "not-a-number", "email": "poison@example.com", "updated_at": "2026-01-01T00:00:00Z"}',
    ),
    ("customers/update", b'{"id": null, "first_name": "Nobody"}'),
    ("customers/update", b'["a", "list", "not", "a", "customer"]'),
    ("customers_email_marketing_consent/update", b'{"customer_id": {"nested": true}}'),
)


async def poison(run: RunContext) -> Result:
    """Signed payloads the mapping cannot handle: each lands in dead letters with an error that
    names the problem; live webhooks (and the full sync) go on unharmed."""
    import aiohttp

    from receiver.signature import sign

    result = Result("poison")
    started = time.monotonic()
    config = StackConfig(customers=300 if run.short else FULL_SYNC_CUSTOMERS)
    async with stack(run, "poison", config) as s:
        s.subscribe()
        sync_id = await s.start_full_sync()
        async with Traffic(s.store, 10.0, orders=orders_available()) as traffic:
            await asyncio.sleep(1.0)
            async with aiohttp.ClientSession() as http:
                for n, (topic, body) in enumerate(POISON):
                    headers = {
                        "X-Shopify-Topic": topic,
                        "X-Shopify-Shop-Domain": s.store.domain,
                        "X-Shopify-Hmac-Sha256": sign(s.store.webhook_secret, body),
                        "X-Shopify-Webhook-Id": f"poison-{n}",
                        "X-Shopify-API-Version": "2024-10",
                    }
                    async with http.post(
                        f"{s.receiver_url()}/webhooks/shopify", data=body, headers=headers
                    ) as r:
                        result.expect(r.status == 200, f"poison {n} answered {r.status}")
            await asyncio.sleep(5.0)  # live webhooks go on beside the poison
        letters_expected = len(POISON)
        result.load = "10 changes/s" + (" + full sync" if sync_id else "")
        result.faults = f"{letters_expected} poison payloads"
        await finish(s, result, settle_s=300, all_customers=sync_id is not None)
        letters = await s.dead_letters()
        # finish() counts every dead letter as a problem: here exactly the poison ones are expected.
        result.problems = [p for p in result.problems if not p.startswith("dead letter")]
        poison_letters = [
            letter
            for letter in letters
            if str(letter.get("args", [{}])[0].get("webhook_id", "")).startswith("poison-")
        ]
        others = len(letters) - len(poison_letters)
        result.expect(
            len(poison_letters) == letters_expected,
            f"{len(poison_letters)} of {letters_expected} poison payloads in dead letters",
        )
        result.expect(others == 0, f"{others} other jobs in dead letters")
        for letter in poison_letters:
            error = letter.get("error", "")
            # Useful: the error type and the payload field at fault, e.g. "PayloadError: id: ...".
            result.expect(
                re.match(r"PayloadError: \S+: .{5,}", error) is not None,
                f"dead letter error not useful: {error[:200]}",
            )
        result.figures["poison_errors"] = [letter.get("error", "")[:160] for letter in poison_letters]
        result.inputs = traffic.changes + letters_expected
    result.seconds = round(time.monotonic() - started, 1)
    return result
