"""Shopify access tokens: where a client gets the token it sends as `X-Shopify-Access-Token`.

`TokenSource` is what the Shopify client needs (`source`); `token_source(shop, ...)` picks one by
the installation's `[shop.auth]` mode (`factory`):
- `StaticToken`: the static `access_token` of an existing admin-created custom app or private app;
- `MintedTokens` (`minted`): one token per shop shared by the pool through Redis, renewed ahead of
  expiry by one process at a time, from one small module per grant, as Shopify's shopify-app-js
  does: `client_credentials.mint`, `authorization_code.exchange`, `refresh_token.refresh` (all in
  `grant`: the shop they need, one POST to the token endpoint, `GrantRefusedError`,
  `TokenUnavailableError`).
`TokenRecord` (`record`) is the pair, kept encrypted (`cipher`: `TokenCipher`, `SHOPSYNC_TOKEN_KEY`)
in `TokenStore` (`store`), which also keeps the shops that need the merchant's approval again.
"""

from core.shopify_auth import authorization_code, client_credentials, refresh_token
from core.shopify_auth.cipher import ENV_VAR, TokenCipher, TokenKeyError
from core.shopify_auth.factory import MINTED_MODES, is_minted, token_source
from core.shopify_auth.grant import AuthShop, GrantRefusedError, TokenUnavailableError
from core.shopify_auth.minted import MintedTokens
from core.shopify_auth.record import TokenRecord
from core.shopify_auth.source import NeedsApprovalError, StaticToken, TokenSource
from core.shopify_auth.store import TokenStore

__all__ = [
    "ENV_VAR",
    "MINTED_MODES",
    "AuthShop",
    "GrantRefusedError",
    "MintedTokens",
    "NeedsApprovalError",
    "StaticToken",
    "TokenCipher",
    "TokenKeyError",
    "TokenRecord",
    "TokenSource",
    "TokenStore",
    "TokenUnavailableError",
    "authorization_code",
    "client_credentials",
    "is_minted",
    "refresh_token",
    "token_source",
]
