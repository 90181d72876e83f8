"""Fixtures: an APSIS sandbox on a free loopback port with a frozen clock, and a small HTTP client.

The clock only moves when a test says so, so limits and expiry are tested without timing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from sandbox.apsis import KEYSPACE, SECTION, ApsisSandbox, default_account
from sandbox.apsis.account import Account

CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "sandbox-client",
    "client_secret": "sandbox-client-secret",
}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
EMAIL = "com.apsis1.channels.email"
SMS = "com.apsis1.channels.sms"


class FakeClock:
    def __init__(self, now: float = 1_760_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Api:
    """A thin client: raw aiohttp calls with a bearer token, answers as (status, headers, json)."""

    def __init__(self, session: aiohttp.ClientSession, sandbox: ApsisSandbox) -> None:
        self.session = session
        self.sandbox = sandbox
        self.token = ""

    @property
    def account(self) -> Account:
        return self.sandbox.account

    async def login(self) -> str:
        status, _, body = await self.call("POST", "/oauth/token", json=CREDENTIALS, auth=False)
        assert status == 200, body
        self.token = body["access_token"]
        return self.token

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, Any, Any]:
        all_headers = dict(headers or {})
        if auth and self.token:
            all_headers.setdefault("Authorization", f"Bearer {self.token}")
        async with self.session.request(
            method, self.sandbox.url + path, json=json, data=data, headers=all_headers
        ) as resp:
            raw = await resp.read()
            if resp.content_type in ("application/json", "application/problem+json") and raw:
                return resp.status, resp.headers, await resp.json(content_type=None)
            return resp.status, resp.headers, raw

    async def patch_attributes(
        self, key: str, body: Any, *, section: str = SECTION, keyspace: str = KEYSPACE
    ) -> tuple[int, Any, Any]:
        path = f"/audience/keyspaces/{keyspace}/profiles/{key}/sections/{section}/attributes"
        data = body if isinstance(body, bytes) else _dumps(body)
        return await self.call("PATCH", path, data=data, headers=MERGE_PATCH)

    async def get_attributes(self, key: str, *, section: str = SECTION) -> tuple[int, Any, Any]:
        return await self.call(
            "GET", f"/audience/keyspaces/{KEYSPACE}/profiles/{key}/sections/{section}/attributes"
        )

    async def post_events(self, key: str, body: Any, *, section: str = SECTION) -> tuple[int, Any, Any]:
        path = f"/audience/keyspaces/{KEYSPACE}/profiles/{key}/sections/{section}/events"
        data = body if isinstance(body, bytes) else _dumps(body)
        return await self.call("POST", path, data=data, headers={"Content-Type": "application/json"})

    async def consent(
        self,
        key: str,
        topic: str,
        kind: str = "opt-in",
        *,
        channel: str = EMAIL,
        section: str = SECTION,
        keyspace: str = KEYSPACE,
        reason: str | None = "Given in Shopify",
        source: str | None = None,
    ) -> tuple[int, Any, Any]:
        """`POST /v2/.../consents`; a None reason or source is left out of the body."""
        body = {
            "topic_discriminator": topic,
            "channel_discriminator": channel,
            "type": kind,
            "reason": reason,
            "source": source,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return await self.call("POST", consents_path(key, section=section, keyspace=keyspace), json=body)

    async def consents(
        self,
        key: str,
        *,
        section: str = SECTION,
        keyspace: str = KEYSPACE,
        consent_types: tuple[str, ...] = (),
        suppression_addresses: tuple[str, ...] = (),
    ) -> tuple[int, Any, Any]:
        """`GET /v2/.../consents` with repeated query parameters."""
        query = [("consent_types", t) for t in consent_types]
        query += [("suppression_addresses", a) for a in suppression_addresses]
        tail = "?" + urlencode(query) if query else ""
        return await self.call("GET", consents_path(key, section=section, keyspace=keyspace) + tail)


def consents_path(key: str, *, section: str = SECTION, keyspace: str = KEYSPACE) -> str:
    return f"/v2/audience/keyspaces/{keyspace}/profiles/{key}/sections/{section}/consents"


def _dumps(body: Any) -> bytes:
    import orjson

    return orjson.dumps(body)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def account(clock: FakeClock) -> Account:
    return default_account(clock=clock)


@pytest.fixture
async def sandbox(account: Account) -> AsyncIterator[ApsisSandbox]:
    async with ApsisSandbox(account) as running:
        yield running


@pytest.fixture
async def api(sandbox: ApsisSandbox) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        client = Api(session, sandbox)
        await client.login()
        yield client
