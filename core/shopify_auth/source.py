"""The token a Shopify client sends, behind one small interface."""

from __future__ import annotations

from typing import Protocol


class NeedsApprovalError(Exception):
    """No token can be had until the merchant approves the app again (a refused refresh:
    `invalid_grant`, or the app was uninstalled). Jobs wait; nothing is dead-lettered."""

    def __init__(self, shop: str, reason: str) -> None:
        self.shop, self.reason = shop, reason
        super().__init__(f"{shop}: needs approval ({reason})")


class TokenSource(Protocol):
    async def token(self) -> str:
        """A token valid now (minted or refreshed ahead of expiry by one process at a time)."""
        ...

    async def invalidate(self, token: str) -> None:
        """Shopify answered 401 to `token`: the next `token()` mints or refreshes once."""
        ...


class StaticToken:
    """A static access token from the installations file; a 401 cannot be mended by us."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token

    async def invalidate(self, token: str) -> None:
        return None
