"""`token_source(shop, ...)`: the `TokenSource` an installation's `[shop.auth]` mode calls for.

`static` -> `StaticToken(shop.access_token)`; `client_credentials` and `oauth` -> `MintedTokens`,
which needs the cipher (`TokenCipher.from_env()`): without one, `TokenKeyError` names the variable.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import redis.asyncio as aioredis

from core.keys import Keys
from core.shopify_auth.cipher import ENV_VAR, TokenCipher, TokenKeyError
from core.shopify_auth.grant import AuthShop
from core.shopify_auth.minted import MintedTokens
from core.shopify_auth.source import StaticToken, TokenSource

MINTED_MODES = frozenset({"client_credentials", "oauth"})


def is_minted(shop: AuthShop) -> bool:
    return shop.auth.mode in MINTED_MODES


def token_source(
    shop: AuthShop,
    redis: aioredis.Redis,
    keys: Keys,
    cipher: TokenCipher | None,
    session: aiohttp.ClientSession,
    **options: Any,
) -> TokenSource:
    if not is_minted(shop):
        return StaticToken(shop.access_token)
    if cipher is None:
        raise TokenKeyError(
            f"{ENV_VAR} is not set: {shop.domain} mints its Shopify tokens ({shop.auth.mode})"
        )
    return MintedTokens(shop, redis, keys, cipher, session, **options)
