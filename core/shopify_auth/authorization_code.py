"""The authorization code grant's last step: the `code` Shopify sent to the callback is exchanged
for an offline token. With `expiring=1` the token lives 1 h and comes with a refresh token
(about 90 days, rotated at every refresh): required for public apps from 2027-01-01
(shopify.dev, "Authorization code grant", "About offline access tokens")."""

from __future__ import annotations

import time

import aiohttp

from core.shopify_auth.grant import AuthShop, Clock, request_token
from core.shopify_auth.record import TokenRecord


async def exchange(
    session: aiohttp.ClientSession,
    shop: AuthShop,
    code: str,
    *,
    timeout_s: float = 10.0,
    clock: Clock = time.time,
) -> TokenRecord:
    form = {"code": code, "expiring": "1"}
    return await request_token(session, shop, form, timeout_s=timeout_s, clock=clock)
