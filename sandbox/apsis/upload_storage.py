"""The presigned upload of import files, as S3-style storage answers it (not the APSIS API host).

`presign` gives the form fields of a browser-style POST upload: `key`, a base64 `policy` (its
expiration and conditions), `x-amz-algorithm`, `x-amz-credential`, `x-amz-date` and
`x-amz-signature` (HMAC-SHA256 of the policy under the sandbox's secret). `receive` reads a
multipart POST: the fields first, then `file`, streamed to disk in chunks. Storage errors are
S3's XML `<Error><Code/><Message/></Error>`: a missing field or bad signature 403
`SignatureDoesNotMatch`/`AccessDenied`, an expired policy 403 `AccessDenied` "Invalid according
to Policy: Policy expired.", a file over the policy's content-length-range 400 `EntityTooLarge`.
Success is 204 No Content (S3's default `success_action_status`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from sandbox.apsis.values import iso

STORAGE_PREFIX = "/_storage"
UPLOAD_ROUTE = STORAGE_PREFIX + "/apsis-imports"
REQUIRED_FIELDS = ("key", "policy", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature")
CHUNK = 1 << 16
MAX_FIELD_BYTES = 16_384


class StorageError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{self.message}</Message></Error>"
        )
        return web.Response(status=self.status, text=body, content_type="application/xml")


@dataclass(frozen=True, slots=True)
class Received:
    key: str
    path: Path
    size: int


class UploadStorage:
    def __init__(self) -> None:
        self.secret = secrets.token_bytes(32)
        self.directory = Path(tempfile.mkdtemp(prefix="apsis-sandbox-imports-"))

    def presign(self, key: str, expires_at: float, max_bytes: int, now: float) -> dict[str, str]:
        policy = {
            "expiration": iso(expires_at),
            "conditions": [{"key": key}, ["content-length-range", 0, max_bytes]],
        }
        encoded = base64.b64encode(orjson.dumps(policy)).decode()
        date = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        return {
            "key": key,
            "policy": encoded,
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-credential": f"SANDBOXKEY/{date[:8]}/eu-west-1/s3/aws4_request",
            "x-amz-date": date,
            "x-amz-signature": self._sign(encoded),
        }

    def _sign(self, policy: str) -> str:
        return hmac.new(self.secret, policy.encode(), hashlib.sha256).hexdigest()

    def check(self, fields: dict[str, str], now: float) -> tuple[str, int]:
        """The key and the maximum size the fields allow; `StorageError` when they do not hold."""
        missing = [name for name in REQUIRED_FIELDS if name not in fields]
        if missing:
            raise StorageError(403, "AccessDenied", f"Missing required form field(s): {', '.join(missing)}")
        if not hmac.compare_digest(self._sign(fields["policy"]), fields["x-amz-signature"]):
            raise StorageError(
                403, "SignatureDoesNotMatch", "The request signature we calculated does not match"
            )
        policy = _decode_policy(fields["policy"])
        expiration = datetime.fromisoformat(str(policy["expiration"]).replace("Z", "+00:00")).timestamp()
        if now >= expiration:
            raise StorageError(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        key, max_bytes = "", 0
        for condition in policy["conditions"]:
            if isinstance(condition, dict) and "key" in condition:
                key = str(condition["key"])
            elif isinstance(condition, list) and condition[:1] == ["content-length-range"]:
                max_bytes = int(condition[2])
        if fields["key"] != key:
            raise StorageError(
                403, "AccessDenied", "Invalid according to Policy: Policy Condition failed: key"
            )
        return key, max_bytes

    async def receive(self, request: web.Request, now: float) -> Received:
        """Read the form: fields, then `file` streamed to disk. The rest of an refused body is
        drained, so the client reads the answer rather than a reset connection."""
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):
            raise StorageError(400, "MalformedPOSTRequest", "The body is not multipart/form-data") from None
        fields: dict[str, str] = {}
        while True:
            part = await reader.next()
            if part is None:
                raise StorageError(
                    400, "InvalidArgument", "POST requires exactly one file upload per request"
                )
            if not isinstance(part, BodyPartReader):
                raise StorageError(400, "MalformedPOSTRequest", "nested multipart is not supported")
            if part.name == "file":
                break
            raw = await part.read()
            if len(raw) > MAX_FIELD_BYTES:
                raise StorageError(400, "MalformedPOSTRequest", f"form field {part.name} is too large")
            fields[str(part.name)] = raw.decode("utf-8", "replace")
        try:
            key, max_bytes = self.check(fields, now)
        except StorageError:
            await _drain(request)
            raise
        path = self.directory / f"{secrets.token_hex(8)}.csv"
        size = 0
        with path.open("wb") as out:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    break
                out.write(chunk)
        if size > max_bytes:
            path.unlink(missing_ok=True)
            await _drain(request)
            raise StorageError(
                400,
                "EntityTooLarge",
                f"Your proposed upload exceeds the maximum allowed size ({max_bytes} bytes)",
            )
        return Received(key, path, size)

    def remove(self, path: Path | None) -> None:
        if path is not None:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        for leftover in self.directory.glob("*"):
            leftover.unlink(missing_ok=True)
        os.rmdir(self.directory)


def _decode_policy(encoded: str) -> dict[str, Any]:
    try:
        policy = orjson.loads(base64.b64decode(encoded))
    except (ValueError, orjson.JSONDecodeError):
        raise StorageError(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.") from None
    if not isinstance(policy, dict) or "expiration" not in policy or "conditions" not in policy:
        raise StorageError(400, "InvalidPolicyDocument", "Invalid Policy: missing expiration or conditions")
    return policy


async def _drain(request: web.Request) -> None:
    while await request.content.read(CHUNK):
        pass
