"""Client credentials, access tokens and the rate limits of the simulated account."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any, Literal

import orjson

from sandbox.apsis.limits import SlidingWindow

DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"


class AccessMixin:
    """Tokens and limits, the part of `Account` the middleware consults before any handler."""

    clock: Callable[[], float]
    clients: dict[str, str]
    token_lifetime: float
    max_body: int
    tokens: dict[str, tuple[str, float]]  # token -> (client id, expires at)
    account_limiter: SlidingWindow
    profile_limiter: SlidingWindow
    token_limiter: SlidingWindow

    def _init_access(
        self,
        *,
        client_id: str,
        client_secret: str,
        token_lifetime: float,
        token_limit_per_minute: int | None,
        account_rate: int | None,
        profile_rate: int | None,
    ) -> None:
        self.clients = {client_id: client_secret}
        self.token_lifetime = token_lifetime
        self.tokens = {}
        self.account_limiter = SlidingWindow(account_rate, 1.0)
        self.profile_limiter = SlidingWindow(profile_rate, 1.0)
        self.token_limiter = SlidingWindow(token_limit_per_minute, 60.0)

    def _reset_access(self) -> None:
        self.tokens.clear()
        for limiter in (self.account_limiter, self.profile_limiter, self.token_limiter):
            limiter.reset()

    # ---- limits --------------------------------------------------------------------------

    def set_rate_limits(
        self,
        *,
        account: int | Literal["keep"] | None = "keep",
        profile: int | Literal["keep"] | None = "keep",
        token_per_minute: int | Literal["keep"] | None = "keep",
    ) -> None:
        """Change limits (and start their windows afresh); None or 0 disables one."""
        for limiter, value in (
            (self.account_limiter, account),
            (self.profile_limiter, profile),
            (self.token_limiter, token_per_minute),
        ):
            if value != "keep":
                limiter.limit = value or None
                limiter.reset()

    def disable_rate_limits(self) -> None:
        self.set_rate_limits(account=None, profile=None, token_per_minute=None)

    def limits_json(self) -> dict[str, Any]:
        return {
            "account_per_second": self.account_limiter.limit,
            "profile_per_second": self.profile_limiter.limit,
            "token_per_minute": self.token_limiter.limit,
            "token_lifetime": self.token_lifetime,
            "max_body": self.max_body,
        }

    # ---- tokens --------------------------------------------------------------------------

    def add_client(self, client_id: str, client_secret: str) -> None:
        self.clients[client_id] = client_secret

    def check_client(self, client_id: str, client_secret: str) -> bool:
        secret = self.clients.get(client_id)
        return secret is not None and secret == client_secret

    def issue_token(self, client_id: str) -> tuple[str, int]:
        """A JWT-shaped opaque token (not signed: nobody verifies it but the sandbox)."""
        now = self.clock()
        lifetime = self.token_lifetime
        header = _b64(b'{"alg":"none","typ":"JWT"}')
        payload = _b64(orjson.dumps({"sub": client_id, "iat": int(now), "exp": int(now + lifetime)}))
        token = f"{header}.{payload}.{_b64(os.urandom(24))}"
        self.tokens[token] = (client_id, now + lifetime)
        if len(self.tokens) > 1024:  # forget expired ones now and then
            self.tokens = {t: v for t, v in self.tokens.items() if v[1] > now}
        return token, int(lifetime)

    def token_valid(self, token: str) -> bool:
        entry = self.tokens.get(token)
        return entry is not None and entry[1] > self.clock()

    def revoke_tokens(self) -> int:
        """Every issued token stops working now (tokens expiring early); returns how many."""
        count = len(self.tokens)
        self.tokens.clear()
        return count


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
