"""A job whose shop needs approval is held (not retried, not dead-lettered) and runs again, as a
new job on its queue, once the shop is connected; a client-credentials shop reconnects itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from arq.connections import ArqRedis, create_pool

from core.jobs import deserialize, serialize
from core.keys import Keys
from core.redis_conn import arq_settings, typed
from core.settings import Settings
from core.shopify_auth import TokenCipher, TokenStore
from mappings.installation import Installations, ShopAuth
from sandbox.shopify import ShopifySandbox
from sandbox.shopify.oauth import TokenAuthority
from tests.conftest import purge
from tests.shopify_auth.conftest import CLIENT_ID, CLIENT_SECRET
from worker import held
from worker.context import WorkerContext
from worker.runtime import run_job


@pytest.fixture
async def app(
    redis_url: str,
    keys: Keys,
    demo_installations: Installations,
    sandbox: ShopifySandbox,
    cipher: TokenCipher,
) -> AsyncIterator[WorkerContext]:
    (shop,) = demo_installations.shops.values()
    minted = replace(
        shop,
        domain=sandbox.store.domain,
        admin_url=sandbox.url,
        access_token="",
        auth=ShopAuth(mode="client_credentials", client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
    )
    installations = Installations(source="test", shops={minted.domain: minted})
    pool: ArqRedis = await create_pool(
        arq_settings(redis_url), job_serializer=serialize, job_deserializer=deserialize
    )
    settings = Settings(redis_url=redis_url, key_prefix=keys.prefix)
    context = WorkerContext(
        settings=settings, installations=installations, redis=pool, keys=keys, cipher=cipher
    )
    yield context
    await context.close()
    await purge(pool, keys)
    await pool.aclose()


async def needs_token(app: WorkerContext, arg: dict[str, Any]) -> str:
    shop = app.installations.shops[arg["shop"]]
    return await app.tokens(shop).token()


async def test_held_then_released_once_connected(app: WorkerContext, authority: TokenAuthority) -> None:
    domain = next(iter(app.installations.shops))
    authority.config.client_id = "rotated"  # the app's credentials are refused
    ctx = {"app": app, "job_id": "job-1", "job_try": 1}
    queue = app.keys.realtime_queue
    result = await run_job(ctx, "needs_token", needs_token, ({"shop": domain},), queue=queue, timeout_s=10)
    assert result == {"held": True, "shop": domain}
    (job,) = await held.held_jobs(app.redis, app.keys, domain)
    assert (job.job_id, job.function, job.args, job.queue) == (
        "job-1",
        "needs_token",
        [{"shop": domain}],
        queue,
    )
    assert "invalid_client" in job.reason
    assert await typed(app.redis.hlen(app.keys.dead_letters)) == 0
    assert await app.redis.zcard(queue) == 0

    assert await app.release_held() == 0  # still refused: stays held
    assert await held.held_counts(app.redis, app.keys) == {domain: 1}

    authority.config.client_id = CLIENT_ID  # the credentials work again
    await app.redis.delete(app.keys.shopify_reconnect_probe(domain))  # the next probe period
    assert await app.release_held() == 1
    assert await TokenStore(app.redis, app.keys, app.cipher or TokenCipher("")).needs_approval(domain) is None
    (new_id,) = await app.redis.zrange(queue, 0, -1)
    enqueued = deserialize(await app.redis.get(f"arq:job:{new_id.decode()}"))
    assert (enqueued["f"], enqueued["a"]) == ("needs_token", [{"shop": domain}])
    assert await held.held_jobs(app.redis, app.keys, domain) == []
    assert await app.release_held() == 0  # released once
    assert await app.tokens(app.installations.shops[domain]).token()


async def test_release_skips_shops_still_needing_approval(app: WorkerContext) -> None:
    domain = next(iter(app.installations.shops))  # a shop of the file: others' jobs stay parked
    await app.redis.set(app.keys.shopify_reconnect_probe(domain), "0")  # this period's probe is taken
    job = held.HeldJob("j", "f", [], app.keys.realtime_queue, domain, "refresh refused", 0.0)
    await held.hold(app.redis, app.keys, job)
    await typed(app.redis.hset(app.keys.needs_approval, domain, "refresh refused"))
    assert await app.release_held() == 0
    await typed(app.redis.hdel(app.keys.needs_approval, domain))
    assert await app.release_held() == 1


async def test_jobs_of_a_shop_out_of_the_file_stay_held(app: WorkerContext) -> None:
    job = held.HeldJob("j", "f", [], app.keys.realtime_queue, "other.myshopify.com", "removed", 0.0)
    await held.hold(app.redis, app.keys, job)
    assert await app.release_held() == 0
    assert await app.blocked_shops() == {"other.myshopify.com": "not in the installations file"}
