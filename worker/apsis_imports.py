"""APSIS One profile imports (import v2): request an import, upload its CSV, read its status.

    imports = ApsisImports(client)                      # an `ApsisClient`: its session, token, limits
    ticket = await imports.create_import(section, spec)  # POST /v2/audience/sections/{s}/imports
    await imports.upload_file(ticket, path)              # multipart POST to the presigned URL
    status = await imports.import_status(section, ticket.import_id)

`create_import` and `import_status` go through the client's `request` (the account bucket, the
shared token, 401 renewal, the retry policy); `create_import` also takes a slot of the import
bucket (10 requests per minute per account, APSIS's limit, shared by every process). The upload
is not an APSIS API call: no token and no limiter, a streaming multipart POST of the ticket's
`upload_fields` plus `file` (the file is read in chunks, never whole).

Errors are `worker.errors` classes: a 429 (more than 3 pending imports, or over 10 requests a
minute) is `RateLimitedError` with `retry_after`; a 403 on the request is `ImportForbiddenError`
(the keyspace may not manage consent, or an attribute is not writable through it); an expired
upload URL is `UploadUrlExpiredError` (create the import again); a malformed answer is
`MalformedAnswerError`. Requesting an import is not idempotent: a retried request after a lost
answer may leave an import waiting for a file, which stops counting as pending once its upload
URL expires (see docs/APSIS.md).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aiohttp
import orjson

from core.logging import get_logger
from worker.apsis_client import ApsisClient
from worker.apsis_consent import ConsentForbiddenError
from worker.apsis_definitions import channel_discriminator
from worker.errors import (
    ApiError,
    AuthError,
    PayloadTooLargeError,
    PermanentApiError,
    TransientApiError,
)
from worker.ratelimit import Bucket
from worker.retry import call_with_retries

log = get_logger(__name__)

IMPORTS = "/v2/audience/sections/{section}/imports"
IMPORT_STATUS = "/audience/sections/{section}/imports/{import_id}"
UPLOAD_ROUTE = "<import upload URL>"  # the metrics and error label of the presigned upload

MAX_FILE_BYTES = 50 * 1024 * 1024  # "The maximum import file size is 50 MB"
MAX_PENDING_IMPORTS = 3  # "We allow three simultaneous imports per account"
IMPORT_REQUESTS_PER_MINUTE = 10
# Longest attribute value the sandbox imports (APSIS does not document one; docs/APSIS.md). Rows
# with a longer value are skipped by the import without a word, so refuse them before upload.
MAX_VALUE_CHARS = 1000
CONSENT_GIVEN = "true"  # what a consent column holds for a row that gets the mapping's consent
UPLOAD_EXPIRY_MARGIN = timedelta(seconds=5)  # do not start an upload this close to the expiry

ImportState = Literal["waiting_for_file", "queued", "in_progress", "completed", "error"]
IMPORT_STATES: tuple[ImportState, ...] = ("waiting_for_file", "queued", "in_progress", "completed", "error")
FINAL_STATES: frozenset[ImportState] = frozenset({"completed", "error"})
ConsentType = Literal["opt-in", "opt-out"]


class ImportForbiddenError(PermanentApiError):
    """403 on an import request: the keyspace may not manage consent (`manage_subscriptions`
    false), or an attribute mapped is not writable through the keyspace."""


class UploadUrlExpiredError(PermanentApiError):
    """The upload URL expired (before the upload, or storage answered 403 "expired"): the import
    has to be requested again, with a new ticket."""


class UploadRejectedError(PermanentApiError):
    """Storage refused the upload for another reason (a signature or policy mismatch)."""


class MalformedAnswerError(PermanentApiError):
    """APSIS answered 2xx with a body that is not what the reference describes."""


# --- the request ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentColumn:
    """One consent of a consent mapping: rows whose `field_selector` column holds `CONSENT_GIVEN`
    get `type` on `topic` through `channel` (`email`, `sms` or a full discriminator). The type is
    fixed per mapping, so opt-ins and opt-outs go in separate columns (or files).
    `resubscribe_if_opted_out=False`: an opt-in never overrides an existing opt-out."""

    field_selector: str
    topic: str
    channel: str
    type: ConsentType = "opt-in"
    resubscribe_if_opted_out: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "field_selector": self.field_selector,
            "channel_discriminator": channel_discriminator(self.channel),
            "topic_discriminator": self.topic,
            "type": self.type,
            "resubscribe_if_opted_out": self.resubscribe_if_opted_out,
        }


@dataclass(frozen=True, slots=True)
class ConsentMapping:
    """Consents sent to the address in column `address_field_selector` (email or E.164 phone)."""

    address_field_selector: str
    consents: tuple[ConsentColumn, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "address_field_selector": self.address_field_selector,
            "consents": [c.to_json() for c in self.consents],
        }


@dataclass(frozen=True, slots=True)
class ImportSpec:
    """What one import file holds: the profile key column of `keyspace`, attribute columns
    (column header -> attribute version id) and consent mappings. Field selectors are the CSV's
    column headers."""

    keyspace: str
    key_field: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    consents: Sequence[ConsentMapping] = ()
    update_existing_profiles: bool = True
    clear_existing_attributes: bool = False  # True: an empty cell clears the attribute

    @property
    def columns(self) -> list[str]:
        """Every column the file must have, key first (a header row in this order fits)."""
        names = [self.key_field, *self.attributes]
        for mapping in self.consents:
            names.append(mapping.address_field_selector)
            names.extend(c.field_selector for c in mapping.consents)
        return list(dict.fromkeys(names))

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "keyspace_mapping": {"keyspace_discriminator": self.keyspace, "field_selector": self.key_field},
            "options": {
                "update_existing_profiles": self.update_existing_profiles,
                "clear_existing_attributes": self.clear_existing_attributes,
            },
            "attribute_mappings": [
                {"field_selector": column, "attribute_version_id": version}
                for column, version in self.attributes.items()
            ],
        }
        if self.consents:
            body["consent_mappings"] = [m.to_json() for m in self.consents]
        return body


# --- the answers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportTicket:
    """An import waiting for its file: where to upload it, with which form fields, until when."""

    section: str
    import_id: str
    upload_url: str
    upload_fields: dict[str, str]
    expires_at: datetime  # aware, UTC

    def expired(self, now: datetime | None = None, margin: timedelta = UPLOAD_EXPIRY_MARGIN) -> bool:
        return (now or datetime.now(UTC)) + margin >= self.expires_at


@dataclass(frozen=True, slots=True)
class ImportStatus:
    import_id: str
    status: ImportState
    raw: dict[str, Any]  # the whole answer, for logs

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def pending(self) -> bool:
        """Counts against the 3 pending imports of the account (a file uploaded, not done)."""
        return self.status in ("queued", "in_progress")


def parse_ticket(section: str, data: Any) -> ImportTicket:
    if not isinstance(data, Mapping):
        raise _malformed(IMPORTS, "the import answer is not a JSON object")
    import_id, url, fields, expires = (
        data.get("import_id"),
        data.get("file_upload_url"),
        data.get("file_upload_body"),
        data.get("file_upload_url_expires_at"),
    )
    if not isinstance(import_id, str) or not import_id:
        raise _malformed(IMPORTS, "import_id missing")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _malformed(IMPORTS, "file_upload_url missing or not an http(s) URL")
    if not isinstance(fields, Mapping) or not all(isinstance(v, str | int | float) for v in fields.values()):
        raise _malformed(IMPORTS, "file_upload_body missing or not an object of strings")
    return ImportTicket(
        section=section,
        import_id=import_id,
        upload_url=url,
        upload_fields={str(k): str(v) for k, v in fields.items()},
        expires_at=_parse_time(expires, IMPORTS, "file_upload_url_expires_at"),
    )


def parse_status(import_id: str, data: Any) -> ImportStatus:
    result = data.get("result") if isinstance(data, Mapping) else None
    status = result.get("status") if isinstance(result, Mapping) else None
    if status not in IMPORT_STATES:
        raise _malformed(IMPORT_STATUS, f"result.status is {status!r}, not one of {', '.join(IMPORT_STATES)}")
    assert isinstance(data, Mapping)
    return ImportStatus(import_id=str(data.get("import_id") or import_id), status=status, raw=dict(data))


# --- the client -------------------------------------------------------------------------------

UploadSource = str | os.PathLike[str] | AsyncIterable[bytes]


class ApsisImports:
    """Import v2 over an `ApsisClient` (its session, token cache, limiter and retry policy)."""

    def __init__(
        self, client: ApsisClient, *, upload_timeout_s: float = 600.0, bucket: Bucket | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket or import_bucket(client)
        self.upload_timeout = aiohttp.ClientTimeout(total=upload_timeout_s, sock_connect=10, sock_read=120)

    async def create_import(self, section: str, spec: ImportSpec) -> ImportTicket:
        """Request an import; the ticket says where to upload its file and until when."""
        await self.client.limiter.acquire_bucket(self.bucket, max_wait_s=self.client.max_wait_s)
        try:
            answer = await self.client.request(
                "POST",
                IMPORTS,
                body=orjson.dumps(spec.to_json()),
                consent_route=True,  # a 403 here is the keyspace's, not the token's
                params={"section": section},
            )
        except (ConsentForbiddenError, AuthError) as exc:
            if exc.status != 403:
                raise
            raise ImportForbiddenError(
                "apsis",
                403,
                exc.title,
                f"{exc.detail}: the keyspace {spec.keyspace} may not manage consent (manage_subscriptions must"
                " be true) or an attribute mapped is not writable through it",
                method="POST",
                route=IMPORTS,
            ) from None
        assert answer is not None
        ticket = parse_ticket(section, _json(answer.body, IMPORTS))
        log.info("apsis_import_requested", section=section, import_id=ticket.import_id)
        return ticket

    async def import_status(self, section: str, import_id: str) -> ImportStatus:
        answer = await self.client.request(
            "GET", IMPORT_STATUS, params={"section": section, "import_id": import_id}
        )
        assert answer is not None
        return parse_status(import_id, _json(answer.body, IMPORT_STATUS))

    async def upload_file(self, ticket: ImportTicket, source: UploadSource, *, filename: str = "") -> None:
        """Multipart POST of the ticket's fields plus `file` to its URL; no bearer token.

        `source` is a path (retried inside the client's retry policy on transient failures) or an
        async iterable of bytes (sent once, chunked: it cannot be read twice)."""
        if ticket.expired():
            raise _expired(f"the upload URL of import {ticket.import_id} expired at {ticket.expires_at}")
        if isinstance(source, AsyncIterable):
            await self._upload_once(ticket, source, filename or f"{ticket.import_id}.csv")
            return
        path = Path(source)
        size = (await asyncio.to_thread(path.stat)).st_size
        if size > MAX_FILE_BYTES:
            raise PayloadTooLargeError(
                "apsis",
                None,
                "file too large",
                f"{size} bytes, the limit is {MAX_FILE_BYTES}",
                route=UPLOAD_ROUTE,
            )

        async def attempt() -> None:
            if ticket.expired():
                raise _expired(f"the upload URL of import {ticket.import_id} expired at {ticket.expires_at}")
            handle = await asyncio.to_thread(path.open, "rb")
            try:
                await self._upload_once(ticket, handle, filename or path.name)
            finally:
                handle.close()

        await call_with_retries(attempt, self.client.retry, api="apsis")
        log.info("apsis_import_uploaded", import_id=ticket.import_id, bytes=size)

    async def _upload_once(self, ticket: ImportTicket, payload: Any, filename: str) -> None:
        with aiohttp.MultipartWriter("form-data") as form:
            for name, value in ticket.upload_fields.items():
                part = form.append(value)
                part.set_content_disposition("form-data", name=name)
            part = form.append(payload, {"Content-Type": "text/csv"})
            part.set_content_disposition("form-data", name="file", filename=filename)
            try:
                async with self.client.session.post(
                    ticket.upload_url, data=form, timeout=self.upload_timeout
                ) as response:
                    status, body = response.status, await response.read()
            except TimeoutError as exc:
                raise TransientApiError("apsis", None, "timeout", "upload", route=UPLOAD_ROUTE) from exc
            except aiohttp.ClientError as exc:
                raise TransientApiError(
                    "apsis", None, "connection error", type(exc).__name__, route=UPLOAD_ROUTE
                ) from exc
        if status < 300:
            return
        raise upload_error(status, body)


def import_bucket(client: ApsisClient) -> Bucket:
    """The account's import requests, shared by every process: a burst of 2 and 8 a minute after
    it, so no 60-second window holds more than APSIS's 10."""
    burst = 2.0
    rate = (IMPORT_REQUESTS_PER_MINUTE - burst) / 60.0 * client.limits.safety
    return Bucket(f"apsis-imports:{client.account.client_id}", rate, burst, kind="apsis-imports")


def upload_error(status: int, body: bytes) -> ApiError:
    """Storage's answer (S3-style XML `<Error><Code>..</Code><Message>..</Message></Error>`)."""
    text = body[:2000].decode("utf-8", "replace")
    code = _between(text, "<Code>", "</Code>")
    message = _between(text, "<Message>", "</Message>") or text[:200].strip()
    if status == 403 and ("expired" in message.lower() or code == "ExpiredToken"):
        return _expired(message)
    if (status == 400 and code == "EntityTooLarge") or status == 413:
        return PayloadTooLargeError("apsis", status, code, message, method="POST", route=UPLOAD_ROUTE)
    if status in (408, 429) or status >= 500:
        return TransientApiError("apsis", status, code, message, method="POST", route=UPLOAD_ROUTE)
    return UploadRejectedError("apsis", status, code, message, method="POST", route=UPLOAD_ROUTE)


# --- helpers ----------------------------------------------------------------------------------


def _between(text: str, start: str, end: str) -> str:
    _, found, tail = text.partition(start)
    return tail.partition(end)[0].strip() if found else ""


def _expired(detail: str) -> UploadUrlExpiredError:
    return UploadUrlExpiredError(
        "apsis", 403, "upload URL expired", detail, method="POST", route=UPLOAD_ROUTE
    )


def _malformed(route: str, detail: str) -> MalformedAnswerError:
    return MalformedAnswerError("apsis", None, "malformed answer", detail, route=route)


def _json(body: bytes, route: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _malformed(route, "the answer is not JSON") from None


def _parse_time(value: Any, route: str, name: str) -> datetime:
    if not isinstance(value, str):
        raise _malformed(route, f"{name} missing")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _malformed(route, f"{name} is not an RFC 3339 time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
