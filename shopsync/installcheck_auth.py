"""`shopsync check`, the auth half: can a Shopify token be had in the shop's `[shop.auth]` mode, and
does it carry the scopes the sync needs?

- `static`: nothing to ask here; the first GraphQL call of the Shopify check says whether the
  token answers, and the scopes come from the API.
- `client_credentials`: mint a token now (`client_credentials.mint`): refused (wrong id or secret,
  app not installed on the store) or unreachable is one problem line each.
- `oauth`: a token pair must be stored (`TokenStore`): none, or the shop marked "needs approval",
  is a problem that says to open `/auth/install?shop=DOMAIN` on the receiver.
For the minted modes the granted scopes (the token's `scope`) must include `read_customers`,
`read_orders` and `read_products`. `check_auth` adds its lines to the report and answers whether
the rest of the Shopify check can run (False: it would only fail again on the token).
"""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp
import redis.asyncio as aioredis

from core.keys import Keys
from core.shopify_auth import (
    ENV_VAR,
    GrantRefusedError,
    StaticToken,
    TokenCipher,
    TokenKeyError,
    TokenRecord,
    TokenSource,
    TokenStore,
    TokenUnavailableError,
    client_credentials,
    is_minted,
    token_source,
)
from mappings.installation import DEFAULT_SCOPES, Shop

REQUIRED_SCOPES = DEFAULT_SCOPES  # read_customers, read_orders, read_products
MINT_TIMEOUT_S = 10.0


class Lines(Protocol):
    checked: list[str]
    problems: list[str]


async def check_auth(shop: Shop, client: Any, report: Lines) -> bool:
    """Add the auth lines for `shop` to `report`; True when a token can be had. `client` is the
    check's Shopify client (its Redis, keys and HTTP session are reused)."""
    mode = shop.auth.mode
    if mode == "static":
        return True
    if _cipher() is None:
        report.problems.append(
            f"Shopify: {ENV_VAR} is not set (or not a key): {shop.domain} ({mode}) keeps its token"
            " encrypted with it; set the same key on every process"
        )
        return False
    record = (
        await _minted(shop, client, report)
        if mode == "client_credentials"
        else await _stored(shop, client, report)
    )
    if record is None:
        return False
    granted = record.scopes | {"read_" + s[len("write_") :] for s in record.scopes if s.startswith("write_")}
    missing = [s for s in REQUIRED_SCOPES if s not in granted]
    for scope in missing:
        report.problems.append(
            f"Shopify: the app's token lacks {scope}: add it to [access_scopes] (shopsync app-config"
            f" {shop.domain} --address URL), deploy the app and approve the new scopes on the store"
        )
    if not missing:
        report.checked.append(f"Shopify: the token's scopes include {', '.join(REQUIRED_SCOPES)}")
    return not missing


async def _minted(shop: Shop, client: Any, report: Lines) -> TokenRecord | None:
    try:
        record = await client_credentials.mint(_session(client), shop, timeout_s=MINT_TIMEOUT_S)
    except GrantRefusedError as exc:
        report.problems.append(
            f"Shopify: the client credentials grant is refused ({exc.status} {exc.error}): set"
            f" [shop.auth] client_id and client_secret of {shop.domain} to the Dev Dashboard app's,"
            " and install the app on the store (the grant serves only your organization's own stores)"
        )
        return None
    except TokenUnavailableError as exc:
        report.problems.append(
            f"Shopify: no token from {shop.admin_url}/admin/oauth/access_token ({exc.reason})"
        )
        return None
    report.checked.append("Shopify: the client credentials grant answers with a token")
    return record


async def _stored(shop: Shop, client: Any, report: Lines) -> TokenRecord | None:
    install = f"open /auth/install?shop={shop.domain} on the receiver and approve the app"
    try:
        cipher = TokenCipher.from_env()
    except TokenKeyError:
        report.problems.append(
            f"Shopify: {ENV_VAR} is not set (or not a key): the stored token cannot be read"
        )
        return None
    store = TokenStore(client.redis, _keys(client), cipher)
    try:
        record, reason = await store.read(shop.domain)
    except TokenKeyError:
        report.problems.append(
            f"Shopify: the stored token does not decrypt with {ENV_VAR}: set the key it was stored with, or {install}"
        )
        return None
    if reason is not None:
        report.problems.append(f"Shopify: {shop.domain} needs approval ({reason}): {install}")
        return None
    if record is None:
        report.problems.append(f"Shopify: {shop.domain} is not connected yet (needs approval): {install}")
        return None
    report.checked.append("Shopify: a token pair is stored (authorization code grant)")
    return record


def check_tokens(
    shop: Shop, redis: aioredis.Redis, keys: Keys, session: aiohttp.ClientSession
) -> TokenSource:
    """The token source of the check's Shopify client: the pool's own for minted modes (the same
    stored token the workers use); without a token key, an empty one (`check_auth` says why)."""
    cipher = _cipher()
    if is_minted(shop) and cipher is None:
        return StaticToken("")
    return token_source(shop, redis, keys, cipher, session)


def _cipher() -> TokenCipher | None:
    try:
        return TokenCipher.from_env()
    except TokenKeyError:
        return None


def _session(client: Any) -> aiohttp.ClientSession:
    session: aiohttp.ClientSession = client.session
    return session


def _keys(client: Any) -> Keys:
    keys: Keys = client.keys
    return keys
