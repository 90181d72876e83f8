"""Issue 23 item 8: expiring offline tokens under load. The demo shop connects through the
authorization code grant (`expiring=1`) with 10 s access tokens and rotating refresh tokens; four
worker processes share the one token through Redis while a full sync and live webhooks (API
version 2025-01: every customer webhook fetches the customer from Shopify) keep them busy. In the
middle, the token endpoint turns slow (it rotates, then answers 3 s later) and the worker holding
the renewal lock is SIGKILLed: its answer is lost, the refresh token it used stays usable (the
previous token's grace), another worker refreshes with it after the lock expires.

Held to: one refresh per expiry (no more refreshes than the run's length allows), no storm of
401s (a few per rotation at most: requests in flight with the token a refresh replaced), no
refresh token lost (no `invalid_grant`, no shop marked "needs approval", the stored refresh token
still active at the store), nothing lost (the usual end check)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import redis.asyncio as aioredis

from core.shopify_auth import ENV_VAR, TokenCipher, TokenStore, authorization_code
from mappings.installation import Limits, Shop
from reliability.report import Result
from reliability.scenarios.common import finish
from reliability.stack import DOMAIN, RunContext, Stack, StackConfig, orders_available
from reliability.traffic import Traffic
from sandbox.apsis.server import ApsisSandbox
from sandbox.installation import installation_document, installations_for, write_installation
from sandbox.shopify.oauth import OAUTH, TokenAuthority
from sandbox.shopify.server import ShopifySandbox

TOKEN_LIFE_S = 10.0
RENEW_EVERY_S = TOKEN_LIFE_S * 0.9  # renewed 10 % of its life ahead
WORKERS = 4
SLOW_S = 3.0
# A refresh revokes the token it replaces (one active expiring token per app and shop), so each
# request slot of each worker may meet one 401 per rotation (the token endpoint is slow here: the
# window is seconds) and then waits for the new token. More than that would be 401s feeding more
# 401s or more refreshes: a storm.
MAX_401_PER_REFRESH = WORKERS * Limits().shopify_concurrency


class TokenStack(Stack):
    """The usual pipeline, its shop in `oauth` mode, its workers given the token key."""

    def __init__(self, run: RunContext, name: str, config: StackConfig, token_key: str) -> None:
        super().__init__(run, name, config)
        self.token_key = token_key

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{ENV_VAR: self.token_key, **extra})

    @property
    def authority(self) -> TokenAuthority:
        return self.shopify.app[OAUTH]


@asynccontextmanager
async def token_stack(run: RunContext, name: str, config: StackConfig) -> AsyncIterator[TokenStack]:
    key = TokenCipher.generate_key()
    run.secrets.add(key)
    s = TokenStack(run, name, config, key)
    s.redis_server.start()
    s.redis = aioredis.Redis.from_url(s.redis_server.url)
    try:
        async with ApsisSandbox(s.account) as apsis, ShopifySandbox(s.store) as shopify:
            s.apsis, s.shopify = apsis, shopify
            document = installation_document(shopify.url, apsis.url, config.api_version)
            document["shop"][0].pop("access_token", None)
            document["shop"][0]["auth"] = {
                "mode": "oauth",
                "client_id": s.authority.config.client_id,
                "client_secret": s.store.webhook_secret,
            }
            s.shops_file = write_installation(run.log_dir / f"{name}-shops.toml", document)
            s.installations = installations_for(shopify.url, apsis.url, config.api_version)
            run.secrets.update({s.shop.apsis.client_secret, s.shop.webhook_secret})
            s.authority.config.access_ttl_s = TOKEN_LIFE_S
            await _connect(s, TokenCipher(key))
            try:
                for _ in range(WORKERS):
                    s.add_worker()
                s.add_receiver()
                await asyncio.gather(*(svc.ready() for svc in s.receivers + s.workers))
                yield s
            finally:
                for svc in s.receivers + s.workers:
                    await asyncio.to_thread(svc.stop)
                run.secrets.update(s.authority.access)  # the log scan looks for every token issued
                run.secrets.update(s.authority.refresh)
    finally:
        with contextlib.suppress(Exception):
            await s.redis.aclose()
        s.redis_server.stop()


async def _connect(s: TokenStack, cipher: TokenCipher) -> None:
    """The merchant approves at the authorize page; the code's pair is stored as the callback does."""
    shop: Shop = s.installations.shops[DOMAIN]
    oauth_shop = _with_auth(shop, s)
    params = {
        "client_id": s.authority.config.client_id,
        "redirect_uri": "https://app.example/cb",
        "state": "x",
    }
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{s.shopify.url}/admin/oauth/authorize", params=params, allow_redirects=False
        ) as r:
            code = dict(parse_qsl(urlsplit(r.headers["Location"]).query))["code"]
        record = await authorization_code.exchange(session, oauth_shop, code)
    await TokenStore(s.redis, s.keys, cipher).put(DOMAIN, record)


def _with_auth(shop: Shop, s: TokenStack) -> Shop:
    from dataclasses import replace

    from mappings.installation import ShopAuth

    auth = ShopAuth(
        mode="oauth", client_id=s.authority.config.client_id, client_secret=s.store.webhook_secret
    )
    return replace(shop, access_token="", auth=auth)


async def _kill_the_refresher(s: TokenStack, result: Result, wait_s: float) -> None:
    """Slow the token endpoint, SIGKILL the worker whose process holds the renewal lock."""
    s.authority.config.slow_s = SLOW_S
    lock = s.keys.shopify_token_lock(DOMAIN)
    deadline = time.monotonic() + wait_s
    holder = None
    while time.monotonic() < deadline:
        raw = await s.redis.get(lock)
        if raw is not None:
            holder = raw.decode()
            break
        await asyncio.sleep(0.05)
    pid = int(holder.rsplit(":", 1)[-1]) if holder else -1
    victim = next((w for w in s.workers if w.running and w.pid == pid), None)
    if victim is None:
        s.authority.config.slow_s = 0.0
        result.fail(f"no worker took the renewal lock within {wait_s:g} s (holder {holder!r})")
        return
    await asyncio.sleep(SLOW_S / 3)  # the endpoint has rotated; the answer is still on its way
    victim.kill(signal.SIGKILL)
    s.authority.config.slow_s = 0.0
    result.faults = f"SIGKILL {victim.name} in the middle of a refresh (token endpoint {SLOW_S:g} s slow)"
    await asyncio.sleep(2.0)
    victim.start()
    await victim.ready()


async def token_rotation(run: RunContext) -> Result:
    result = Result("token-rotation")
    started = time.monotonic()
    load_s = 15.0 if run.short else 30.0
    config = StackConfig(customers=300, workers=0, api_version="2025-01")
    async with token_stack(run, "token-rotation", config) as s:
        s.subscribe()
        minted_from = time.monotonic()
        sync_id = await s.start_full_sync()
        async with Traffic(s.store, 10.0, orders=orders_available()) as traffic:
            await asyncio.sleep(load_s / 3)
            await _kill_the_refresher(s, result, wait_s=2 * TOKEN_LIFE_S)
            await asyncio.sleep(load_s / 3)
        result.load = f"10 changes/s + full sync, {WORKERS} workers, {TOKEN_LIFE_S:g} s tokens"
        await finish(s, result, settle_s=90.0, all_customers=sync_id is not None)
        result.inputs = traffic.changes
        counters = dict(s.authority.counters)
        minted_s = time.monotonic() - minted_from
        refreshes = counters.get("refresh_token", 0)
        retries = counters.get("refresh_token_retry", 0)
        unauthorized = counters.get("unauthorized_expired", 0) + counters.get("unauthorized_unknown", 0)
        allowed = math.ceil(minted_s / RENEW_EVERY_S) + 1 + retries
        result.figures.update(
            refreshes=refreshes,
            refresh_retries_after_the_kill=retries,
            allowed_refreshes=allowed,
            shopify_401=unauthorized,
            invalid_grant=counters.get("invalid_grant", 0),
            token_seconds=round(minted_s, 1),
        )
        result.expect(
            refreshes <= allowed, f"{refreshes} refreshes in {minted_s:.0f} s: more than one per expiry"
        )
        result.expect(
            unauthorized <= MAX_401_PER_REFRESH * max(refreshes, 1),
            f"{unauthorized} Shopify 401s for {refreshes} refreshes: a storm",
        )
        result.expect(not counters.get("invalid_grant"), "a refresh token was refused: one was lost")
        marked = await TokenStore(s.redis, s.keys, TokenCipher(s.token_key)).shops_needing_approval()
        result.expect(not marked, f"shops marked needs approval: {marked}")
        stored = await TokenStore(s.redis, s.keys, TokenCipher(s.token_key)).get(DOMAIN)
        entry = s.authority.refresh.get(stored.refresh_token or "") if stored else None
        result.expect(
            entry is not None and not entry.retired, "the stored refresh token is not the store's active one"
        )
        if not retries:
            result.notes.append(
                "the killed worker's refresh reached the store after the kill or not at all: no grace retry needed"
            )
    result.seconds = round(time.monotonic() - started, 1)
    return result
