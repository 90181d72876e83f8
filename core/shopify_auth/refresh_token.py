"""The refresh token grant: an expiring offline token's refresh token buys a new pair (access
token and a new refresh token). Store the new pair atomically before using it; since 2026-08 the
previous refresh token stays usable until the new one is first used, so a pair lost in flight
can be asked for again. A refused refresh is 400 `invalid_grant` (`GrantRefusedError`): the
merchant must approve the app again (shopify.dev, "About offline access tokens"; changelog
"More resilient refreshes for expiring offline access tokens")."""

from __future__ import annotations

import time

import aiohttp

from core.shopify_auth.grant import AuthShop, Clock, request_token
from core.shopify_auth.record import TokenRecord


async def refresh(
    session: aiohttp.ClientSession,
    shop: AuthShop,
    refresh_token: str,
    *,
    timeout_s: float = 10.0,
    clock: Clock = time.time,
) -> TokenRecord:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await request_token(session, shop, form, timeout_s=timeout_s, clock=clock)
