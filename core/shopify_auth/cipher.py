"""Tokens at rest are encrypted: `TokenCipher` is Fernet (AES-128-CBC + HMAC-SHA256, from
`cryptography`) keyed by the environment variable `SHOPSYNC_TOKEN_KEY`: a Fernet key (urlsafe base64
of 32 bytes, `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`)
or any random secret of at least 32 characters, such as the one Heroku generates for an app.json
`"generator": "secret"`, hashed (SHA-256) into the key.

`TokenCipher.from_env()` raises `TokenKeyError` with one line naming the variable when it is unset
or not such a key; the processes call it at start-up when an installation mints its tokens.
A value that does not decrypt (another key, or tampered) raises `TokenKeyError` too.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken

ENV_VAR = "SHOPSYNC_TOKEN_KEY"
MIN_SECRET_CHARS = 32


class TokenKeyError(ValueError):
    """The token encryption key is missing, malformed, or not the one the tokens were stored with."""


class TokenCipher:
    def __init__(self, key: str | bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            secret = key.encode() if isinstance(key, str) else key
            if len(secret.strip()) < MIN_SECRET_CHARS:
                raise TokenKeyError(
                    f"{ENV_VAR} is not a valid key (a Fernet key, urlsafe base64 of 32 bytes, or a "
                    f"random secret of at least {MIN_SECRET_CHARS} characters)"
                ) from exc
            # A platform's generated secret (hex, base64, ...): its hash is the key.
            self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.strip()).digest()))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenCipher:
        value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
        if not value:
            raise TokenKeyError(
                f"{ENV_VAR} is not set: shops that mint their Shopify tokens need it to encrypt "
                f"them at rest (a Fernet key, or a random secret of at least {MIN_SECRET_CHARS} characters)"
            )
        return cls(value)

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise TokenKeyError(
                f"a stored Shopify token does not decrypt with {ENV_VAR} (another key?)"
            ) from exc
