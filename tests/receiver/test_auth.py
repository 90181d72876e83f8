"""The OAuth install flow over real HTTP: receiver -> sandbox authorize page -> receiver callback.

The sandbox store approves at once and signs its redirect with the app's client secret, as Shopify
does; the callback exchanges the code at the sandbox's token endpoint. Every refusal answers a page
and leaves nothing behind: no token, no job, the state still usable (or spent, for a replay).
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis
import tomli_w
from aiohttp.test_utils import TestServer

from core.keys import Keys
from core.shopify_auth import TokenCipher, TokenStore
from mappings.installation import Installations
from mappings.installation_parse import parse_installations_toml
from receiver.app import create_app
from receiver.auth import state_key
from receiver.auth_verify import query_hmac, valid_shop_domain, verify_query
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store
from tests.ops.helpers import DEMO
from tests.receiver.helpers import queued_jobs

DOMAIN = "demo-store.myshopify.com"
CLIENT_ID = "sandbox-client-id"
SECRET = "sandbox-webhook-secret"  # the sandbox app's client secret
KEY = TokenCipher.generate_key()


def installations(shopify_url: str, mode: str = "oauth") -> Installations:
    """demo.toml's shop pointed at the sandbox with `[shop.auth] mode`, plus a static second shop."""
    document = tomllib.loads(DEMO.read_text())
    shop = document["shop"][0]
    shop["admin_url"] = shopify_url
    shop.pop("access_token", None)
    shop["auth"] = {"mode": mode, "client_id": CLIENT_ID, "client_secret": SECRET}
    static = {**tomllib.loads(DEMO.read_text())["shop"][0], "domain": "static-store.myshopify.com"}
    static.pop("auth", None)
    static["access_token"] = "shpat_static"
    document["shop"] = [shop, static]
    return parse_installations_toml(tomli_w.dumps(document), {}, source="test.toml")


@dataclass
class Flow:
    shopify: ShopifySandbox
    receiver: TestServer
    http: aiohttp.ClientSession
    redis: aioredis.Redis
    keys: Keys

    @property
    def origin(self) -> str:
        return str(self.receiver.make_url("")).rstrip("/")

    async def install(self, shop: str = DOMAIN) -> aiohttp.ClientResponse:
        return await self.http.get(
            f"{self.origin}/auth/install", params={"shop": shop}, allow_redirects=False
        )

    async def approve(self) -> str:
        """/auth/install, then Shopify's authorize page: the callback URL it redirects to."""
        async with await self.install() as r:
            assert r.status == 302, await r.text()
            authorize = r.headers["Location"]
        async with self.http.get(authorize, allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            return r.headers["Location"]

    async def stored(self) -> Any:
        return await TokenStore(self.redis, self.keys, TokenCipher(KEY)).get(DOMAIN)

    async def install_jobs(self) -> list[dict[str, Any]]:
        return [job for job in await queued_jobs(self.redis, self.keys) if job["f"] == "install_shop"]


@pytest.fixture
async def flow(redis: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Flow]:
    monkeypatch.setenv("SHOPSYNC_TOKEN_KEY", KEY)
    monkeypatch.delenv("SHOPSYNC_PUBLIC_URL", raising=False)
    async with ShopifySandbox(Store(size=3)) as shopify:
        app = create_app(installations(shopify.url), redis, keys=keys, close_redis=False)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as http:
                yield Flow(shopify, server, http, redis, keys)
        finally:
            await server.close()


def resigned(url: str, **changes: str) -> str:
    """The callback URL with some parameters changed and signed again with the client secret."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    params.update(changes)
    params["hmac"] = query_hmac(params.items(), SECRET)
    return parts._replace(query=urlencode(params)).geturl()


async def test_install_approve_callback_stores_the_pair_and_enqueues_install(flow: Flow) -> None:
    async with await flow.install() as r:
        assert r.status == 302
        location = urlsplit(r.headers["Location"])
    query = dict(parse_qsl(location.query))
    assert location.path == "/admin/oauth/authorize"
    assert query["client_id"] == CLIENT_ID
    assert query["scope"].split(",")[:3] == ["read_customers", "read_orders", "read_products"]
    assert query["redirect_uri"] == f"{flow.origin}/auth/callback"
    assert len(query["state"]) >= 32
    assert await flow.redis.ttl(state_key(flow.keys, query["state"])) > 0

    callback = await flow.approve()
    assert callback.startswith(f"{flow.origin}/auth/callback?")
    async with flow.http.get(callback) as r:
        assert r.status == 200, await r.text()
        assert "connected" in (await r.text()).lower()

    record = await flow.stored()
    assert record is not None and record.refresh_token and record.expires_at > time.time()
    assert {"read_customers", "read_orders", "read_products"} <= record.scopes
    raw = await flow.redis.get(flow.keys.shopify_token(DOMAIN))
    assert record.access_token.encode() not in raw and record.refresh_token.encode() not in raw
    jobs = await flow.install_jobs()
    assert [job["a"] for job in jobs] == [[{"shop": DOMAIN, "address": f"{flow.origin}/webhooks/shopify"}]]


async def test_a_replayed_callback_is_refused_and_changes_nothing(flow: Flow) -> None:
    callback = await flow.approve()
    async with flow.http.get(callback) as r:
        assert r.status == 200
    first = await flow.stored()
    async with flow.http.get(callback) as r:
        assert r.status == 401
        assert "already used" in await r.text()
    assert await flow.stored() == first
    assert len(await flow.install_jobs()) == 1


async def test_a_forged_hmac_is_refused_and_the_state_stays_usable(flow: Flow) -> None:
    callback = await flow.approve()
    parts = urlsplit(callback)
    params = dict(parse_qsl(parts.query))
    forged = parts._replace(query=urlencode({**params, "hmac": "0" * 64})).geturl()
    async with flow.http.get(forged) as r:
        assert r.status == 401
        assert "signature" in await r.text()
    # A code swapped in without the secret: the signature no longer matches either.
    swapped = parts._replace(query=urlencode({**params, "code": "attacker-code"})).geturl()
    async with flow.http.get(swapped) as r:
        assert r.status == 401
    assert await flow.stored() is None and await flow.install_jobs() == []
    async with flow.http.get(callback) as r:  # the genuine callback still works
        assert r.status == 200


async def test_a_stale_timestamp_is_refused(flow: Flow) -> None:
    callback = await flow.approve()
    async with flow.http.get(resigned(callback, timestamp=str(int(time.time()) - 3600))) as r:
        assert r.status == 401
        assert "too old" in await r.text()
    assert await flow.stored() is None and await flow.install_jobs() == []


async def test_unknown_or_malformed_shops_are_refused(flow: Flow) -> None:
    for shop, status in (
        ("evil.example.com", 400),
        ("demo-store.myshopify.com.evil.test", 400),
        ("other-store.myshopify.com", 404),
        ("static-store.myshopify.com", 400),  # auth mode static: nothing to approve
    ):
        async with await flow.install(shop) as r:
            assert r.status == status, shop
            assert r.content_type == "text/html"
    callback = await flow.approve()
    async with flow.http.get(resigned(callback, shop="other-store.myshopify.com")) as r:
        assert r.status == 404
    async with flow.http.get(f"{flow.origin}/auth/callback?shop={DOMAIN}") as r:
        assert r.status == 400
        assert "lacks code" in await r.text()
    assert await flow.stored() is None and await flow.install_jobs() == []


async def test_a_refused_grant_or_a_down_token_endpoint_stores_nothing(flow: Flow) -> None:
    callback = await flow.approve()
    async with flow.http.get(resigned(callback, code="not-a-code")) as r:
        assert r.status == 400
        assert "refused" in await r.text()
    callback = await flow.approve()
    async with flow.http.post(f"{flow.shopify.url}/_sandbox/oauth", json={"down": True}) as r:
        assert r.status == 200
    async with flow.http.get(callback) as r:
        assert r.status == 502
        assert "token endpoint" in await r.text()
    assert await flow.stored() is None and await flow.install_jobs() == []


async def test_without_a_token_key_nobody_is_sent_to_approve(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOPSYNC_TOKEN_KEY")
    async with await flow.install() as r:
        assert r.status == 503
        assert "SHOPSYNC_TOKEN_KEY" in await r.text()


def test_query_hmac_accepts_shopify_s_signatures() -> None:
    params = {"code": "abc", "shop": DOMAIN, "state": "s", "timestamp": "1700000000", "host": "YWRtaW4="}
    raw = query_hmac(params.items(), SECRET)
    encoded = query_hmac(params.items(), SECRET, encoded=True)
    assert raw != encoded  # `host` ends in "=": the two forms differ, both are accepted
    for signature in (raw, encoded, raw.upper()):
        assert verify_query([*params.items(), ("hmac", signature)], SECRET)
    assert not verify_query([*params.items(), ("hmac", raw)], "another-secret")
    assert not verify_query(list(params.items()), SECRET)
    assert not verify_query([*params.items(), ("hmac", raw), ("hmac", raw)], SECRET)


@pytest.mark.parametrize(
    ("domain", "ok"),
    [
        ("demo-store.myshopify.com", True),
        ("a.myshopify.com", True),
        ("-bad.myshopify.com", False),
        ("demo.myshopify.com.evil.test", False),
        ("evil.com/x.myshopify.com", False),
        ("demo.myshopify.co", False),
        ("", False),
    ],
)
def test_shop_domains(domain: str, ok: bool) -> None:
    assert valid_shop_domain(domain) is ok
