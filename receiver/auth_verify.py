"""The pure checks of the OAuth install flow: a shop domain, the callback's query HMAC, its age.

Shopify (shopify.dev, "Implement authorization code grant manually", step 3 "Security checks"):
the callback's `hmac` is the hex HMAC-SHA256, keyed with the app's client secret, of the other
query parameters sorted by name and joined as `name=value&...`; the shop must be a hostname ending
in `.myshopify.com`, matched by an anchored pattern ("Shop domain validation regex is not
anchored"). Shopify's libraries differ on whether the values are percent-encoded in that message
(`host`, base64 with `=`, is the one parameter where it matters), so both forms are accepted; each
is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from urllib.parse import urlencode

SHOP_DOMAIN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com$")
MAX_AGE_S = 300  # a callback's timestamp older than this is refused (a replayed link)
MAX_SKEW_S = 60  # ... and one this far in the future (clocks drift a little, not more)


def valid_shop_domain(domain: str) -> bool:
    return bool(SHOP_DOMAIN.match(domain))


def signed_message(pairs: Iterable[tuple[str, str]], *, encoded: bool) -> str:
    """The message Shopify signs: every parameter but `hmac` (and the legacy `signature`), sorted."""
    kept = sorted((k, v) for k, v in pairs if k not in ("hmac", "signature"))
    return urlencode(kept) if encoded else "&".join(f"{k}={v}" for k, v in kept)


def query_hmac(pairs: Iterable[tuple[str, str]], secret: str, *, encoded: bool = False) -> str:
    message = signed_message(pairs, encoded=encoded)
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def verify_query(pairs: Iterable[tuple[str, str]], secret: str) -> bool:
    """True when the query's `hmac` parameter signs the other parameters with `secret`."""
    items = list(pairs)
    given = [v for k, v in items if k == "hmac"]
    if len(given) != 1 or not secret:
        return False
    ok = False
    for encoded in (False, True):
        expected = query_hmac(items, secret, encoded=encoded)
        ok |= hmac.compare_digest(expected.encode(), given[0].lower().encode())
    return ok


def fresh(timestamp: str, now: float, max_age_s: float = MAX_AGE_S) -> bool:
    """The callback's `timestamp` (seconds since the epoch) is recent."""
    try:
        when = int(timestamp)
    except ValueError:
        return False
    return -MAX_SKEW_S <= now - when <= max_age_s
