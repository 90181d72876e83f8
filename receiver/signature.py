"""Shopify webhook signatures: base64(HMAC-SHA256(secret, raw body)), compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


def sign(secret: str | bytes, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of exactly these bytes.

    The header is decoded strictly: a hex digest or any non-base64 text is rejected before the
    comparison. The comparison itself (`hmac.compare_digest`) takes the same time wherever the
    first differing byte is.
    """
    if not header:
        return False
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    key = secret.encode() if isinstance(secret, str) else secret
    expected = hmac.new(key, body, hashlib.sha256).digest()
    return hmac.compare_digest(given, expected)
