"""Each grant against the sandbox store over HTTP: answers, rotation with grace, refusals, faults."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest

from core.shopify_auth import (
    GrantRefusedError,
    TokenUnavailableError,
    authorization_code,
    client_credentials,
    refresh_token,
)
from sandbox.shopify import ShopifySandbox
from sandbox.shopify.oauth import TokenAuthority, callback_hmac
from tests.shopify_auth.conftest import CLIENT_ID, CLIENT_SECRET, Clock, shop_for


async def admin_status(session: aiohttp.ClientSession, sandbox: ShopifySandbox, token: str) -> int:
    async with session.post(
        f"{sandbox.url}/admin/api/2026-10/graphql.json",
        json={"query": "{ shop { name } }"},
        headers={"X-Shopify-Access-Token": token},
    ) as resp:
        return resp.status


async def approve(
    session: aiohttp.ClientSession, sandbox: ShopifySandbox, state: str = "s1"
) -> dict[str, str]:
    """The merchant approves at the authorize page; the callback's query."""
    params = {
        "client_id": CLIENT_ID,
        "scope": "read_customers,read_orders",
        "redirect_uri": "https://app/cb",
        "state": state,
    }
    async with session.get(
        f"{sandbox.url}/admin/oauth/authorize", params=params, allow_redirects=False
    ) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    assert location.startswith("https://app/cb?")
    return dict(parse_qsl(urlsplit(location).query))


async def test_client_credentials(
    session: aiohttp.ClientSession, sandbox: ShopifySandbox, authority: TokenAuthority, clock: Clock
) -> None:
    record = await client_credentials.mint(session, shop_for(sandbox, "client_credentials"))
    assert record.refresh_token is None
    assert record.expires_at is not None and 86_000 < record.expires_at - clock() <= 86_400
    assert "read_customers" in record.scopes
    assert authority.counters["client_credentials"] == 1
    assert await admin_status(session, sandbox, record.access_token) == 200
    clock.offset = 86_401  # the sandbox's clock too: the token expired
    assert await admin_status(session, sandbox, record.access_token) == 401
    assert authority.counters["unauthorized_expired"] == 1


async def test_client_credentials_wrong_secret_is_refused(
    session: aiohttp.ClientSession, sandbox: ShopifySandbox
) -> None:
    with pytest.raises(GrantRefusedError) as caught:
        await client_credentials.mint(session, shop_for(sandbox, "client_credentials", client_secret="wrong"))
    assert (caught.value.status, caught.value.error) == (401, "invalid_client")
    assert "wrong" not in str(caught.value)


async def test_authorize_code_exchange_and_refresh_rotation(
    session: aiohttp.ClientSession, sandbox: ShopifySandbox, authority: TokenAuthority
) -> None:
    query = await approve(session, sandbox)
    assert query["shop"] == sandbox.store.domain and query["state"] == "s1"
    assert query["hmac"] == callback_hmac(query, CLIENT_SECRET)
    shop = shop_for(sandbox, "oauth")

    first = await authorization_code.exchange(session, shop, query["code"])
    assert first.refresh_token and first.scope == "read_customers,read_orders"
    assert first.expires_at is not None and first.refresh_expires_at is not None
    assert 3_500 < first.expires_at - first.issued_at <= 3_600
    assert first.refresh_expires_at - first.issued_at == 7_776_000
    with pytest.raises(GrantRefusedError, match="invalid_grant"):  # a code is single use
        await authorization_code.exchange(session, shop, query["code"])

    second = await refresh_token.refresh(session, shop, first.refresh_token)
    assert second.refresh_token not in (None, first.refresh_token)
    assert await admin_status(session, sandbox, first.access_token) == 401  # one active expiring token
    assert await admin_status(session, sandbox, second.access_token) == 200

    # The answer was lost: the previous refresh token still works until its replacement is used.
    retried = await refresh_token.refresh(session, shop, first.refresh_token)
    assert retried.refresh_token not in (first.refresh_token, second.refresh_token)
    assert authority.counters["refresh_token_retry"] == 1
    with pytest.raises(GrantRefusedError):  # the replacement nobody stored is gone
        await refresh_token.refresh(session, shop, second.refresh_token or "")
    assert retried.refresh_token
    third = await refresh_token.refresh(session, shop, retried.refresh_token)
    with pytest.raises(GrantRefusedError) as caught:  # its replacement used: retired
        await refresh_token.refresh(session, shop, first.refresh_token)
    assert (caught.value.status, caught.value.error) == (400, "invalid_grant")
    assert await admin_status(session, sandbox, third.access_token) == 200


async def test_token_endpoint_down_or_slow_is_transient(
    session: aiohttp.ClientSession, sandbox: ShopifySandbox, authority: TokenAuthority
) -> None:
    shop = shop_for(sandbox, "client_credentials")
    authority.config.down = True
    with pytest.raises(TokenUnavailableError, match="503"):
        await client_credentials.mint(session, shop)
    authority.config.down = False
    authority.config.slow_s = 2.0
    with pytest.raises(TokenUnavailableError, match="timed out"):
        await client_credentials.mint(session, shop, timeout_s=0.2)
