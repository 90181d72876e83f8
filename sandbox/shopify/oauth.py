"""The store's OAuth side, as Shopify answers it: the token endpoint with its three grants, the
authorize page, which tokens the Admin API accepts, and control switches.

- `POST /admin/oauth/access_token` (form-encoded, JSON accepted too), with the sandbox app's
  `client_id` and `client_secret` (the store's webhook secret: a Dev Dashboard app signs its
  webhooks with its client secret):
  - `grant_type=client_credentials` -> `{access_token, scope, expires_in}` (24 h);
  - `code=...` (from the authorize page, single use) -> with `expiring=1` `{access_token,
    expires_in: 3600, refresh_token, refresh_token_expires_in: 7776000 (90 days), scope}`,
    without it a non-expiring `{access_token, scope}`;
  - `grant_type=refresh_token` -> a new pair. Rotation as since 2026-08: the used refresh token
    stays usable until its replacement is first used (a retry answers another new pair and
    replaces the unused one); using the replacement retires it. Issuing an expiring token revokes
    the shop's previous expiring access token (one active per app and shop).
  - a wrong client id or secret: 401 `invalid_client`; an unknown, used, retired or expired code
    or refresh token: 400 `invalid_grant`; no or another grant type: 400.
- `GET /admin/oauth/authorize?client_id&scope&redirect_uri&state`: approves at once and redirects
  to `redirect_uri` with `code, hmac, host, shop, state, timestamp`; `hmac` is the hex
  HMAC-SHA256 of the other parameters sorted and joined as `k=v&...`, keyed with the client secret.
- `authorized(app, token)`: the Admin API's check (the store's static token, or a minted token
  not yet expired); an expired one is counted and answered 401 like any wrong token.
- Control: `GET /_sandbox/oauth` (config and counters), `POST /_sandbox/oauth` (`access_ttl_s`,
  `refresh_ttl_s`, `slow_s`: the endpoint answers that much later, after doing its work, so a
  client killed meanwhile loses the answer; `down`: 503), `POST /_sandbox/oauth/revoke` (every
  token and refresh token dropped: an uninstall, so refreshes get `invalid_grant`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from sandbox.shopify.appkeys import STORE
from sandbox.shopify.store import Store

CLIENT_CREDENTIALS_TTL_S = 86_400.0  # 24 h
EXPIRING_TTL_S = 3_600.0  # 1 h
REFRESH_TTL_S = 7_776_000.0  # 90 days
CODE_TTL_S = 600.0
GRACE_LIMIT_S = 30 * 86_400.0  # a used refresh token's recovery window, from its first use
# Served without an access token (the Admin API's middleware lets them through).
PUBLIC_PATHS = frozenset({"/admin/oauth/access_token", "/admin/oauth/authorize"})


@dataclass
class OAuthConfig:
    client_id: str = "sandbox-client-id"
    access_ttl_s: float | None = None  # None: Shopify's (24 h client credentials, 1 h expiring)
    refresh_ttl_s: float | None = None  # None: 90 days
    slow_s: float = 0.0
    down: bool = False


@dataclass
class _Refresh:
    expires_at: float
    scope: str
    first_used_at: float | None = None  # when it was first exchanged
    successor: str | None = None  # the refresh token its last use answered
    retired: bool = False


@dataclass
class TokenAuthority:
    """Every token the store has issued, and the grants' counters (`counters[grant]`)."""

    store: Store
    clock: Callable[[], float] = time.time
    config: OAuthConfig = field(default_factory=OAuthConfig)
    access: dict[str, float | None] = field(default_factory=dict)  # token -> expires_at (None: never)
    codes: dict[str, tuple[str, float]] = field(default_factory=dict)  # code -> (scope, expires_at)
    refresh: dict[str, _Refresh] = field(default_factory=dict)
    expiring_token: str | None = None  # the one active expiring access token
    counters: Counter[str] = field(default_factory=Counter)

    @property
    def client_secret(self) -> str:
        return self.store.webhook_secret

    def authorized(self, token: str) -> bool:
        if token and hmac.compare_digest(token.encode(), self.store.access_token.encode()):
            return True
        if token not in self.access:
            self.counters["unauthorized_unknown"] += 1
            return False
        expires_at = self.access[token]
        if expires_at is not None and self.clock() >= expires_at:
            self.counters["unauthorized_expired"] += 1
            return False
        return True

    def scope(self, requested: str = "") -> str:
        return requested or ",".join(sorted(self.store.granted_scopes))

    def issue_code(self, scope: str) -> str:
        code = secrets.token_hex(16)
        self.codes[code] = (self.scope(scope), self.clock() + CODE_TTL_S)
        return code

    def grant(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """One token request -> (status, JSON answer)."""
        if form.get("client_id") != self.config.client_id or not hmac.compare_digest(
            form.get("client_secret", "").encode(), self.client_secret.encode()
        ):
            return self._refuse(401, "invalid_client", "client authentication failed")
        grant_type = form.get("grant_type", "authorization_code" if "code" in form else "")
        if grant_type == "client_credentials":
            self.counters["client_credentials"] += 1
            token = self._access(self.config.access_ttl_s or CLIENT_CREDENTIALS_TTL_S)
            ttl = self.config.access_ttl_s or CLIENT_CREDENTIALS_TTL_S
            return 200, {"access_token": token, "scope": self.scope(), "expires_in": int(ttl)}
        if grant_type == "authorization_code":
            return self._exchange(form.get("code", ""), form.get("expiring") == "1")
        if grant_type == "refresh_token":
            return self._refresh(form.get("refresh_token", ""))
        return self._refuse(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    def revoke_all(self) -> None:
        self.access.clear()
        self.codes.clear()
        self.refresh.clear()
        self.expiring_token = None

    # --- grants ---------------------------------------------------------------------------------

    def _exchange(self, code: str, expiring: bool) -> tuple[int, dict[str, Any]]:
        entry = self.codes.pop(code, None)  # single use
        if entry is None or self.clock() >= entry[1]:
            return self._refuse(400, "invalid_grant", "the authorization code is invalid or was used")
        self.counters["authorization_code"] += 1
        scope = entry[0]
        if not expiring:
            token = "shpat_" + secrets.token_hex(16)
            self.access[token] = None
            return 200, {"access_token": token, "scope": scope}
        return 200, self._pair(scope)

    def _refresh(self, token: str) -> tuple[int, dict[str, Any]]:
        now = self.clock()
        entry = self.refresh.get(token)
        if entry is None or entry.retired or now >= entry.expires_at:
            return self._refuse(400, "invalid_grant", "the refresh token is invalid, expired or retired")
        if entry.first_used_at is not None and now - entry.first_used_at >= GRACE_LIMIT_S:
            return self._refuse(400, "invalid_grant", "the refresh token's recovery window ended")
        for other in self.refresh.values():  # using a replacement retires the token it replaced
            if other.successor == token:
                other.retired = True
        if entry.successor is not None:  # a retry: the unused replacement goes, a new one comes
            self.counters["refresh_token_retry"] += 1
            self.refresh.pop(entry.successor, None)
        self.counters["refresh_token"] += 1
        entry.first_used_at = entry.first_used_at or now
        answer = self._pair(entry.scope, entry.expires_at)
        entry.successor = str(answer["refresh_token"])
        return 200, answer

    def _pair(self, scope: str, refresh_cap: float | None = None) -> dict[str, Any]:
        ttl = self.config.access_ttl_s or EXPIRING_TTL_S
        if self.expiring_token is not None:  # one active expiring token per app and shop
            self.access.pop(self.expiring_token, None)
        access = self.expiring_token = self._access(ttl, prefix="shpat_exp_")
        refresh = "shprt_" + secrets.token_hex(16)
        refresh_ttl = self.config.refresh_ttl_s or REFRESH_TTL_S
        self.refresh[refresh] = _Refresh(expires_at=self.clock() + refresh_ttl, scope=scope)
        return {
            "access_token": access,
            "expires_in": int(ttl),
            "refresh_token": refresh,
            "refresh_token_expires_in": int(refresh_ttl),
            "scope": scope,
        }

    def _access(self, ttl: float, prefix: str = "shpat_cc_") -> str:
        token = prefix + secrets.token_hex(16)
        self.access[token] = self.clock() + ttl
        return token

    def _refuse(self, status: int, error: str, description: str) -> tuple[int, dict[str, Any]]:
        self.counters[error] += 1
        return status, {"error": error, "error_description": description}


OAUTH: web.AppKey[TokenAuthority] = web.AppKey("shopify_oauth", TokenAuthority)


def callback_hmac(params: Mapping[str, str], secret: str) -> str:
    """Shopify's callback signature: hex HMAC-SHA256 of the sorted `k=v` pairs but `hmac`."""
    message = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "hmac")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def authorized(app: web.Application, token: str) -> bool:
    return app[OAUTH].authorized(token)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def access_token(request: web.Request) -> web.Response:
    authority = request.app[OAUTH]
    if authority.config.down:
        authority.counters["unavailable"] += 1
        return _json({"errors": "Service Unavailable"}, 503)
    if request.content_type == "application/json":
        try:
            raw = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raw = None
        form = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    else:
        form = {k: str(v) for k, v in (await request.post()).items()}
    status, answer = authority.grant(form)
    if authority.config.slow_s > 0:
        await asyncio.sleep(authority.config.slow_s)  # the work is done; the answer is late
    return _json(answer, status)


async def authorize(request: web.Request) -> web.StreamResponse:
    authority = request.app[OAUTH]
    query = request.query
    redirect_uri = query.get("redirect_uri", "")
    if query.get("client_id") != authority.config.client_id or not redirect_uri:
        return web.Response(
            status=400, text="Oauth error invalid_request: unknown client_id or no redirect_uri"
        )
    params = {
        "code": authority.issue_code(query.get("scope", "")),
        "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvc2FuZGJveA",
        "shop": authority.store.domain,
        "state": query.get("state", ""),
        "timestamp": str(int(authority.clock())),
    }
    params["hmac"] = callback_hmac(params, authority.client_secret)
    separator = "&" if "?" in redirect_uri else "?"
    raise web.HTTPFound(redirect_uri + separator + urlencode(params))


async def control_get(request: web.Request) -> web.Response:
    authority = request.app[OAUTH]
    return _json(
        {
            "config": asdict(authority.config),
            "counters": dict(authority.counters),
            "active_refresh_tokens": sum(1 for r in authority.refresh.values() if not r.retired),
        }
    )


async def control_post(request: web.Request) -> web.Response:
    authority = request.app[OAUTH]
    try:
        data = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        return _json({"error": "body is not JSON"}, 400)
    if not isinstance(data, dict):
        return _json({"error": "body must be a JSON object"}, 400)
    known = set(asdict(authority.config))
    unknown = set(data) - known
    if unknown:
        return _json({"error": f"unknown keys: {sorted(unknown)}; known: {sorted(known)}"}, 422)
    for key, value in data.items():
        setattr(authority.config, key, value)
    return await control_get(request)


async def control_revoke(request: web.Request) -> web.Response:
    request.app[OAUTH].revoke_all()
    return await control_get(request)


def add_routes(app: web.Application) -> None:
    """Register the OAuth routes (before the Admin API's catch-all) and the token authority."""
    app[OAUTH] = TokenAuthority(app[STORE], clock=app[STORE].clock)
    r = app.router
    r.add_post("/admin/oauth/access_token", access_token)
    r.add_get("/admin/oauth/authorize", authorize)
    r.add_get("/_sandbox/oauth", control_get)
    r.add_post("/_sandbox/oauth", control_post)
    r.add_post("/_sandbox/oauth/revoke", control_revoke)
