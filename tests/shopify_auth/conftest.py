"""Fixtures: the sandbox store over real HTTP with a clock the test moves, a cipher, shops to mint for."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from core.shopify_auth import TokenCipher
from sandbox.shopify import ShopifySandbox, Store
from sandbox.shopify.oauth import OAUTH, TokenAuthority

CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-webhook-secret"


@dataclass(frozen=True)
class Auth:
    mode: str
    client_id: str = CLIENT_ID
    client_secret: str = field(default=CLIENT_SECRET, repr=False)


@dataclass(frozen=True)
class FakeShop:
    domain: str
    admin_url: str
    auth: Auth
    access_token: str = ""


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher(TokenCipher.generate_key())


@pytest.fixture
async def sandbox(clock: Clock) -> AsyncIterator[ShopifySandbox]:
    async with ShopifySandbox(Store(seed=3, size=5, products=2, clock=clock)) as running:
        yield running


@pytest.fixture
def authority(sandbox: ShopifySandbox) -> TokenAuthority:
    return sandbox.app[OAUTH]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def shop_for(sandbox: ShopifySandbox, mode: str, **auth: str) -> FakeShop:
    return FakeShop(domain=sandbox.store.domain, admin_url=sandbox.url, auth=Auth(mode, **auth))
