"""One shop's Shopify token pair, and when it is due for renewal.

`TokenRecord` is what the grants answer and what `TokenStore` keeps (encrypted, as one value):
the access token, when it expires, the refresh token (authorization code grant with expiring
offline tokens only) and its expiry, and the granted scopes. `renew_at` is the moment a token
should be minted or refreshed again: 5 minutes before expiry, or 10 % of the token's life before
it when that is shorter (a 10 s sandbox token is renewed 1 s ahead, a 24 h one 5 min ahead).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

AHEAD_S = 300.0
AHEAD_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class TokenRecord:
    access_token: str
    expires_at: float | None  # epoch seconds; None: the token does not expire (static)
    refresh_token: str | None
    refresh_expires_at: float | None
    scope: str
    issued_at: float = 0.0  # when it was minted (epoch seconds): the token's life is measured from it

    def __repr__(self) -> str:  # never show a token
        return f"TokenRecord(expires_at={self.expires_at}, refresh={'yes' if self.refresh_token else 'no'}, scope={self.scope!r})"

    @property
    def renew_at(self) -> float | None:
        """When to mint or refresh again (None: never)."""
        if self.expires_at is None:
            return None
        life = self.expires_at - self.issued_at if self.issued_at else AHEAD_S / AHEAD_SHARE
        return self.expires_at - min(AHEAD_S, max(life, 0.0) * AHEAD_SHARE)

    def fresh(self, now: float) -> bool:
        """True while the token needs no renewal."""
        renew_at = self.renew_at
        return renew_at is None or now < renew_at

    def usable(self, now: float) -> bool:
        """True while the token is not yet expired (worth sending while another process renews it)."""
        return self.expires_at is None or now < self.expires_at

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(s.strip() for s in self.scope.split(",") if s.strip())

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> TokenRecord:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            access_token=str(data["access_token"]),
            expires_at=_opt_float(data.get("expires_at")),
            refresh_token=data.get("refresh_token") or None,
            refresh_expires_at=_opt_float(data.get("refresh_expires_at")),
            scope=str(data.get("scope", "")),
            issued_at=float(data.get("issued_at") or 0.0),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
