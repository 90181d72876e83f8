"""What the three grants share: the shop they ask for, one POST to the token endpoint, the answer.

Shopify's token endpoint is `POST {admin_url}/admin/oauth/access_token`, form-encoded; it answers
JSON `{access_token, scope, expires_in?, refresh_token?, refresh_token_expires_in?}` (shopify.dev,
see docs/SHOPIFY.md "Access tokens"). Outcomes:
- 200 with an `access_token`: a `TokenRecord` (expiries turned into epoch seconds);
- 400/401/403 (`invalid_grant`, `invalid_client`, ...) or any other 4xx but 429: `GrantRefusedError`
  (the merchant must approve again; asking again will not help);
- 429, 5xx, a timeout, a connection error, an answer without a token: `TokenUnavailableError`
  (transient: try again later).
The secrets travel in the body only; errors carry the OAuth error code, never a token or secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import aiohttp

from core.shopify_auth.record import TokenRecord

TOKEN_PATH = "/admin/oauth/access_token"
DEFAULT_TIMEOUT_S = 10.0
Clock = Callable[[], float]


class AuthSettings(Protocol):
    @property
    def mode(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> str: ...


class AuthShop(Protocol):
    """What a grant needs of an installation (`mappings.installation.Shop` is one)."""

    @property
    def domain(self) -> str: ...
    @property
    def admin_url(self) -> str: ...
    @property
    def access_token(self) -> str: ...
    @property
    def auth(self) -> AuthSettings: ...


class GrantRefusedError(Exception):
    """Shopify refused the grant (`invalid_grant`, `invalid_client`, ...): approval is needed."""

    def __init__(self, shop: str, status: int, error: str) -> None:
        self.shop, self.status, self.error = shop, status, error
        super().__init__(f"{shop}: token grant refused ({status} {error})")


class TokenUnavailableError(Exception):
    """No token for now (the endpoint timed out, answered 429/5xx, or another process's renewal
    took too long): transient, the job is tried again later."""

    def __init__(self, shop: str, reason: str) -> None:
        self.shop, self.reason = shop, reason
        super().__init__(f"{shop}: Shopify token unavailable ({reason})")


def token_url(shop: AuthShop) -> str:
    return shop.admin_url.rstrip("/") + TOKEN_PATH


async def request_token(
    session: aiohttp.ClientSession,
    shop: AuthShop,
    form: Mapping[str, str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    clock: Clock = time.time,
) -> TokenRecord:
    """POST `form` (plus the app's client id and secret) to the shop's token endpoint."""
    data = {"client_id": shop.auth.client_id, "client_secret": shop.auth.client_secret, **form}
    sent_at = clock()
    try:
        async with session.post(
            token_url(shop),
            data=data,
            headers={"Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            status = response.status
            body = await response.read()
    except TimeoutError:
        raise TokenUnavailableError(shop.domain, "token endpoint timed out") from None
    except aiohttp.ClientError as exc:
        raise TokenUnavailableError(
            shop.domain, f"token endpoint unreachable ({type(exc).__name__})"
        ) from None
    payload = _json(body)
    if status == 429 or status >= 500:
        raise TokenUnavailableError(shop.domain, f"token endpoint answered {status}")
    if status >= 400:
        raise GrantRefusedError(shop.domain, status, _error_code(payload, status))
    if not isinstance(payload, dict) or not isinstance(payload.get("access_token"), str):
        raise TokenUnavailableError(shop.domain, f"token endpoint answered {status} without a token")
    return parse_answer(payload, sent_at)


def parse_answer(payload: Mapping[str, Any], sent_at: float) -> TokenRecord:
    """Shopify's answer -> `TokenRecord`; lifetimes count from when the request was sent."""
    expires_in = _seconds(payload.get("expires_in"))
    refresh_in = _seconds(payload.get("refresh_token_expires_in"))
    refresh = payload.get("refresh_token")
    return TokenRecord(
        access_token=str(payload["access_token"]),
        expires_at=None if expires_in is None else sent_at + expires_in,
        refresh_token=str(refresh) if refresh else None,
        refresh_expires_at=None if refresh_in is None else sent_at + refresh_in,
        scope=str(payload.get("scope") or ""),
        issued_at=sent_at,
    )


def _seconds(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _json(body: bytes) -> Any:
    import json

    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _error_code(payload: Any, status: int) -> str:
    if isinstance(payload, dict):
        for key in ("error", "errors"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value[:100]
    return f"http_{status}"
