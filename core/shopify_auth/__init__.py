"""Shopify access tokens: where a client gets the token it sends as `X-Shopify-Access-Token`.

`TokenSource` is what the Shopify client needs; `StaticToken` serves an installation's static
`access_token` (an existing admin-created custom app or private app). The minted kinds (client
credentials, authorization code with expiring offline tokens and a rotating refresh token) live
beside it in this package, one small module per grant.
"""

from core.shopify_auth.source import NeedsApprovalError, StaticToken, TokenSource

__all__ = ["NeedsApprovalError", "StaticToken", "TokenSource"]
