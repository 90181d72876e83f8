"""Fixtures: an APSIS sandbox on a free loopback port with a frozen clock, and a small HTTP client.

The clock only moves when a test says so, so limits and expiry are tested without timing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

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
NEWSLETTER = "com.apsis1.consent-lists.newsletter"
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
        address: str,
        topic: str | None,
        kind: str = "opt-in",
        *,
        channel: str = EMAIL,
        consent_list: str | None = NEWSLETTER,
        section: str | None = SECTION,
    ) -> tuple[int, Any, Any]:
        body = {
            "section_discriminator": section,
            "consent_list_discriminator": consent_list,
            "topic_discriminator": topic,
            "type": kind,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return await self.call(
            "POST", f"/audience/channels/{channel}/addresses/{_quote(address)}/consents", json=body
        )

    async def evaluations(
        self, address: str, *, channel: str = EMAIL, consent_list: str = NEWSLETTER, section: str = SECTION
    ) -> tuple[int, Any, Any]:
        path = (
            f"/audience/channels/{channel}/addresses/{_quote(address)}/consents"
            f"/sections/{section}/consent-lists/{consent_list}/evaluations"
        )
        return await self.call("GET", path)


def _dumps(body: Any) -> bytes:
    import orjson

    return orjson.dumps(body)


def _quote(address: str) -> str:
    from urllib.parse import quote

    return quote(address, safe="@")


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
