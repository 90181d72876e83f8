"""Typed errors of the two API clients, and which of them are worth retrying.

Every failure of a Shopify or APSIS One call surfaces as an `ApiError` subclass:
`TransientApiError` (retry later: 408, 429, 5xx, connection errors, our own limiter saying the wait
is too long) or `PermanentApiError` (retrying cannot help: 400, 404, 409, 413, 415, ...).
`str()` of an error never contains an email address or phone number: APSIS repeats the address in
its `detail` and in consent URLs, so both are scrubbed for display (the raw `detail` stays on the
object for code that needs it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson

from core.logging import scrub_text

Api = Literal["apsis", "shopify"]

# APSIS documents 408, 429, 500, 501 and 503 as retryable; 502 and 504 come from gateways in
# front of either API and mean the same thing.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 501, 502, 503, 504})


class ApiError(Exception):
    """A failed call. `status` is None when no HTTP answer arrived (connection error, timeout)."""

    def __init__(
        self,
        api: Api,
        status: int | None,
        title: str = "",
        detail: str = "",
        retry_after: float | None = None,
        *,
        method: str = "",
        route: str = "",
    ) -> None:
        self.api = api
        self.status = status
        self.title = title
        self.detail = detail
        self.retry_after = retry_after
        self.method = method
        self.route = route
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f" {self.method} {self.route}" if self.route else ""
        status = self.status if self.status is not None else "no answer"
        text = ": ".join(part for part in (self.title, self.detail) if part)
        tail = f" (retry after {self.retry_after:g} s)" if self.retry_after is not None else ""
        return scrub_text(f"{self.api}{where}: {status}{': ' + text if text else ''}{tail}")


class TransientApiError(ApiError):
    """Worth retrying later; the job turns it into arq `Retry` once the client's budget is spent."""


class PermanentApiError(ApiError):
    """Retrying the same request cannot succeed."""


class RateLimitedError(TransientApiError):
    """429 from the API: a limit shared with someone we do not see was exceeded."""


class LimiterTimeoutError(TransientApiError):
    """Our own limiter would make this request wait longer than the caller allows."""


class AuthError(PermanentApiError):
    """Credentials rejected (token endpoint 401, or 401/403 again after a fresh token)."""


class NotFoundError(PermanentApiError):
    """404: the resource does not exist."""


class PayloadTooLargeError(PermanentApiError):
    """The body cannot be sent under the API's size limit, even split (one item is too big)."""


def is_transient(exc: BaseException) -> bool:
    """Would retrying later plausibly succeed?"""
    return isinstance(exc, TransientApiError)


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (Shopify and APSIS send seconds, maybe fractional); None if unusable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(
    api: Api,
    status: int,
    body: bytes,
    *,
    retry_after: float | None = None,
    method: str = "",
    route: str = "",
) -> ApiError:
    """The typed error for an HTTP answer that is not a success.

    APSIS answers problem JSON `{title, status, detail}`; Shopify answers `{"errors": ...}`;
    anything else (an HTML error page from a proxy) leaves title empty and a short detail.
    """
    title, detail = _problem_text(body)
    cls: type[ApiError]
    if status == 429:
        cls = RateLimitedError
    elif status in TRANSIENT_STATUSES:
        cls = TransientApiError
    elif status in (401, 403):
        cls = AuthError
    elif status == 404:
        cls = NotFoundError
    elif status == 413:
        cls = PayloadTooLargeError
    else:
        cls = PermanentApiError
    return cls(api, status, title, detail, retry_after, method=method, route=route)


def _problem_text(body: bytes) -> tuple[str, str]:
    try:
        data: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return "", body[:200].decode("utf-8", "replace").strip()
    if isinstance(data, Mapping):
        if "title" in data or "detail" in data:
            return str(data.get("title") or ""), str(data.get("detail") or "")
        if "errors" in data:  # Shopify: a string, a list, or {field: [messages]}
            return "", _flatten(data["errors"])
        if "error" in data:  # OAuth-style token endpoint errors
            return str(data["error"]), str(data.get("error_description") or "")
    return "", _flatten(data) if data is not None else ""


def _flatten(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_flatten(v) for v in value)
    return str(value)
