"""The last audit's result on `/admin/status` (core.status.collect), `/metrics` and `shopsync status`."""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from core.keys import Keys
from core.status import collect
from receiver.scrape import gauges

SHOP = "demo-store.myshopify.com"
RESULT = {"at": 1.0, "customers": 50, "missing": 1, "extra": 2, "attribute": 3, "consent": 0, "repaired": {}}


async def test_last_audit_in_status_and_metrics(redis: aioredis.Redis, keys: Keys) -> None:
    assert (await collect(redis, keys, shops=[SHOP]))["audits"] == {}
    await redis.set(keys.audit(SHOP), orjson.dumps(RESULT))
    assert (await collect(redis, keys, shops=[SHOP]))["audits"] == {SHOP: RESULT}
    assert (await collect(redis, keys, shop=SHOP))["audits"] == {SHOP: RESULT}
    text = await gauges(redis, keys, [SHOP])
    assert f'shopsync_audit_drift{{shop="{SHOP}",kind="extra"}} 2\n' in text
    assert f'shopsync_audit_drift{{shop="{SHOP}",kind="consent"}} 0' in text
