"""The client credentials grant: an app of the merchant's own organization (a Dev Dashboard app)
asks the store it is installed on for a token with its client id and secret. The token lives
24 h and comes without a refresh token: ask again (shopify.dev, "Using the client credentials
grant")."""

from __future__ import annotations

import time

import aiohttp

from core.shopify_auth.grant import AuthShop, Clock, request_token
from core.shopify_auth.record import TokenRecord


async def mint(
    session: aiohttp.ClientSession, shop: AuthShop, *, timeout_s: float = 10.0, clock: Clock = time.time
) -> TokenRecord:
    form = {"grant_type": "client_credentials"}
    return await request_token(session, shop, form, timeout_s=timeout_s, clock=clock)
