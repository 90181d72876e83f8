"""What a GraphQL answer's `errors` and a mutation's `userErrors` mean, as typed `ApiError`s (pure).

Shopify answers GraphQL with HTTP 200 and `errors` beside (possibly partial) `data`; partial data
is never used: any `errors` fails the call. By `errors[].extensions.code` and message:

- `THROTTLED`: transient (`RateLimitedError`), the caller waits for the points and retries;
- `INTERNAL_SERVER_ERROR`, `SERVICE_UNAVAILABLE`, `TIMEOUT`: transient;
- `MAX_COST_EXCEEDED` (requested cost above the single-query maximum): `CostTooHighError`,
  permanent for that page size (the page walkers ask for smaller pages);
- protected customer data refused ("not approved to access" / `ACCESS_DENIED` on name, email,
  phone or address fields): `ProtectedDataError`, permanent, naming what is missing, so no
  customer is ever written as if its refused email were empty;
- other `ACCESS_DENIED` (a missing scope): `AccessDeniedError`, permanent;
- anything else (an unknown field after a version change, a bad argument): `GraphQLError`,
  permanent, naming the path.

`userErrors` of a mutation: `UserErrorsError`, permanent, naming the fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.errors import PermanentApiError, RateLimitedError, TransientApiError

ROUTE = "/graphql.json"
SINGLE_QUERY_MAX = 1000.0  # points one query may request
TRANSIENT_CODES = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"})
# Fields that Level 2 protected customer data access guards.
PROTECTED_FIELDS = frozenset(
    {
        "firstName",
        "lastName",
        "displayName",
        "email",
        "phone",
        "defaultEmailAddress",
        "emailAddress",
        "defaultPhoneNumber",
        "phoneNumber",
        "defaultAddress",
        "addresses",
        "addressesV2",
        "billingAddress",
        "shippingAddress",
    }
)


class GraphQLError(PermanentApiError):
    """A GraphQL error that retrying cannot mend (unknown field, bad argument...)."""


class AccessDeniedError(PermanentApiError):
    """The app lacks an access scope for what was asked."""


class ProtectedDataError(AccessDeniedError):
    """Shopify refused protected customer data (name, email, phone, address): the app needs
    Level 2 protected customer data access for `fields`."""

    def __init__(self, fields: Sequence[str], message: str) -> None:
        self.fields = tuple(fields)
        detail = (
            f"protected customer data refused ({', '.join(self.fields) or 'customer fields'}):"
            f" request access to protected customer data fields for the app ({message})"
        )
        super().__init__("shopify", 200, "ACCESS_DENIED", detail, method="POST", route=ROUTE)


class CostTooHighError(PermanentApiError):
    """The query asks for more points than Shopify allows one query (or than the bucket holds)."""

    def __init__(self, requested: float, maximum: float) -> None:
        self.requested, self.maximum = requested, maximum
        detail = f"query cost {requested:g} is above the maximum of {maximum:g} points: ask for smaller pages"
        super().__init__("shopify", 200, "MAX_COST_EXCEEDED", detail, method="POST", route=ROUTE)


class UserErrorsError(PermanentApiError):
    """A mutation's `userErrors`: the input was refused (field and message of each)."""

    def __init__(self, mutation: str, errors: Sequence[Mapping[str, Any]]) -> None:
        self.errors = [dict(e) for e in errors]
        parts = []
        for error in errors:
            field = ".".join(str(f) for f in error.get("field") or []) or "input"
            parts.append(f"{field}: {error.get('message')}")
        super().__init__("shopify", 200, f"{mutation} refused", "; ".join(parts), method="POST", route=ROUTE)


def _code(error: Mapping[str, Any]) -> str:
    extensions = error.get("extensions")
    return str(extensions.get("code") or "") if isinstance(extensions, Mapping) else ""


def _path(error: Mapping[str, Any]) -> list[str]:
    return [str(p) for p in error.get("path") or [] if not isinstance(p, int)]


def is_throttled(errors: Any) -> bool:
    return isinstance(errors, list) and any(
        isinstance(e, Mapping) and _code(e) == "THROTTLED" for e in errors
    )


def _protected(error: Mapping[str, Any]) -> str | None:
    """The refused field when `error` is a protected-data refusal."""
    message = str(error.get("message") or "")
    path = _path(error)
    refused = "not approved to access" in message or "not approved to use" in message
    if not refused and _code(error) != "ACCESS_DENIED":
        return None
    hit = next((p for p in reversed(path) if p in PROTECTED_FIELDS), None)
    if hit is not None:
        return hit
    return "Customer" if refused and ("Customer" in message or "customer" in message) else None


def graphql_error(errors: Any, *, retry_after: float | None = None, requested: float = 0.0) -> Exception:
    """The typed error for an answer's `errors` (the first that decides wins: throttling, then
    protected data, then transient, then the first error)."""
    items = [e for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []
    if not items:
        return GraphQLError("shopify", 200, "GraphQL error", str(errors)[:300], method="POST", route=ROUTE)
    if is_throttled(items):
        return RateLimitedError(
            "shopify", 200, "THROTTLED", "query cost throttled", retry_after, method="POST", route=ROUTE
        )
    refused = [field for e in items if (field := _protected(e)) is not None]
    if refused:
        first = next(e for e in items if _protected(e) is not None)
        return ProtectedDataError(sorted(set(refused)), str(first.get("message") or "")[:200])
    codes = {_code(e) for e in items}
    message = "; ".join(
        f"{'.'.join(_path(e)) + ': ' if _path(e) else ''}{e.get('message')}" for e in items[:3]
    )[:500]
    if "MAX_COST_EXCEEDED" in codes:
        return CostTooHighError(requested, SINGLE_QUERY_MAX)
    if codes & TRANSIENT_CODES:
        code = sorted(codes & TRANSIENT_CODES)[0]
        return TransientApiError("shopify", 200, code, message, method="POST", route=ROUTE)
    if "ACCESS_DENIED" in codes:
        return AccessDeniedError("shopify", 200, "ACCESS_DENIED", message, method="POST", route=ROUTE)
    code = next((c for c in codes if c), "GraphQL error")
    return GraphQLError("shopify", 200, code, message, method="POST", route=ROUTE)


def check_user_errors(mutation: str, result: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """`result` (a mutation's payload) when its `userErrors` is empty, else `UserErrorsError`."""
    if not isinstance(result, Mapping):
        raise GraphQLError("shopify", 200, f"{mutation} answered nothing", "", method="POST", route=ROUTE)
    errors = result.get("userErrors") or []
    if errors:
        raise UserErrorsError(mutation, errors)
    return result
