"""A shop whose Shopify app needs approval again is shown on `shopsync status`, `/admin/status` and
`/metrics`; the mark goes when the shop is connected again."""

from __future__ import annotations

import redis.asyncio as aioredis

from core.keys import Keys
from core.shopify_auth import TokenCipher, TokenRecord, TokenStore
from mappings.installation import Installations
from tests.ops.helpers import DEMO, cli_env, run_cli
from tests.receiver.helpers import running_receiver

DOMAIN = "demo-store.myshopify.com"
GAUGE = f'shopsync_shop_needs_approval{{shop="{DOMAIN}"}}'


async def test_needs_approval_is_shown_everywhere_until_connected(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys, redis_url: str
) -> None:
    store = TokenStore(redis, keys, TokenCipher(TokenCipher.generate_key()))
    auth = {"Authorization": "Bearer s3cret"}
    async with running_receiver(demo_installations, redis, keys, admin_token="s3cret") as (_, http):
        async with http.get("/metrics") as r:
            assert f"{GAUGE} 0" in await r.text()
        await store.mark_needs_approval(DOMAIN, "refresh refused: invalid_grant")
        async with http.get("/metrics") as r:
            assert f"{GAUGE} 1" in await r.text()
        async with http.get("/admin/status", headers=auth) as r:
            assert (await r.json())["needs_approval"] == {DOMAIN: "refresh refused: invalid_grant"}

        env = cli_env(redis_url, keys, DEMO)
        done = await run_cli(["status"], env)
        assert done.code == 0, done.stderr
        assert f"{DOMAIN}: needs approval (refresh refused: invalid_grant)" in done.stdout
        assert f"/auth/install?shop={DOMAIN}" in done.stdout.replace("\n", "")
        done = await run_cli(["status", "--json"], env)
        assert '"needs_approval"' in done.stdout

        await store.put(DOMAIN, TokenRecord("shpat_x", None, None, None, "read_customers"))
        async with http.get("/metrics") as r:
            assert f"{GAUGE} 0" in await r.text()
        async with http.get("/admin/status", headers=auth) as r:
            assert (await r.json())["needs_approval"] == {}
        done = await run_cli(["status"], env)
        assert "needs approval" not in done.stdout
