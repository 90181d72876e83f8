"""APSIS One's consent report export: request it, poll its URL until ready, stream its CSV rows.

    reports = ApsisReports(client)
    ticket = await reports.request_consent_report(ConsentReportSpec(section, keyspace, topics, ...))
    async for row in reports.consent_rows(ticket):       # dict: column header -> cell
        ...

The request is `POST /audience/profiles/reports/consents` (exports: 1 request per second per
account, drawn from a shared bucket); the answer's `poll_url` answers 404 until the report is
ready, then 200 with the CSV, 410 once it is gone (a day later, or an unknown id). Polling backs
off exponentially (as the reference asks) up to `poll_max_s`, within `timeout_s`; every poll is
an APSIS call (a process permit, the account bucket, the shared token, one renewal on 401) and
the download bucket (60 a minute). The CSV is parsed as it arrives, never held whole; the process
permit is held while the caller reads the rows.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from core.logging import get_logger
from worker.apsis_client import ApsisClient
from worker.apsis_definitions import channel_discriminator
from worker.errors import (
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
    error_from_response,
    parse_retry_after,
)
from worker.ratelimit import Bucket

log = get_logger(__name__)

CONSENT_REPORTS = "/audience/profiles/reports/consents"
REPORT_POLL = "<report poll URL>"  # the metrics and error label of the poll URL
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)


class ReportGoneError(PermanentApiError):
    """410: the report is no longer available (or the poll URL's id is invalid): request anew."""


class ReportTimeoutError(TransientApiError):
    """The report was not ready within the caller's `timeout_s`."""


@dataclass(frozen=True, slots=True)
class ConsentReportSpec:
    """Which profiles and columns: profile keys of `keyspace` with data in `section`; one column
    per `channels` entry (column name -> channel `email`/`sms`/full), holding the profile's address
    when it consented to any of `topics` on that channel; one column per attribute version id."""

    section: str
    keyspace: str
    topics: Sequence[str]
    channels: Mapping[str, str] = field(default_factory=dict)
    attribute_version_ids: Sequence[str] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "section_discriminator": self.section,
            "keyspace_discriminator": self.keyspace,
            "topic_discriminators": list(self.topics),
            "channels": [
                {"field_name": name, "channel_discriminator": channel_discriminator(channel)}
                for name, channel in self.channels.items()
            ],
            "attribute_version_ids": list(self.attribute_version_ids),
        }


@dataclass(frozen=True, slots=True)
class ReportTicket:
    poll_url: str


class ApsisReports:
    def __init__(self, client: ApsisClient, *, poll_initial_s: float = 0.5, poll_max_s: float = 30.0) -> None:
        self.client = client
        safety = client.limits.safety
        name = client.account.client_id
        self.export_bucket = Bucket(f"apsis-exports:{name}", 1.0 * safety, 1.0, kind="apsis-exports")
        self.download_bucket = Bucket(f"apsis-downloads:{name}", 1.0 * safety, 1.0, kind="apsis-downloads")
        self.poll_initial_s = poll_initial_s
        self.poll_max_s = poll_max_s

    async def request_consent_report(self, spec: ConsentReportSpec) -> ReportTicket:
        await self.client.limiter.acquire_bucket(self.export_bucket, max_wait_s=self.client.max_wait_s)
        answer = await self.client.request("POST", CONSENT_REPORTS, body=orjson.dumps(spec.to_json()))
        assert answer is not None
        try:
            data = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            data = None
        url = data.get("poll_url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise PermanentApiError(
                "apsis", answer.status, "malformed answer", "poll_url missing", route=CONSENT_REPORTS
            )
        log.info("apsis_report_requested", section=spec.section)
        return ReportTicket(url)

    async def consent_rows(
        self, ticket: ReportTicket, *, timeout_s: float = 600.0
    ) -> AsyncGenerator[dict[str, str], None]:
        """The report's rows once it is ready (polled with backoff until `timeout_s`). Close it
        (`contextlib.aclosing`) when leaving early: its download holds a request permit."""
        deadline = time.monotonic() + timeout_s
        delay = self.poll_initial_s
        while True:
            try:
                async with contextlib.aclosing(self._download(ticket)) as rows:
                    async for row in rows:
                        yield row
                return
            except _NotReadyError:
                pass
            except RateLimitedError as exc:
                delay = max(delay, exc.retry_after or 1.0)
            except TransientApiError as exc:
                if isinstance(exc, _StartedError):
                    raise exc.cause from None  # rows were handed out: a retry would repeat them
                log.warning("apsis_report_poll_failed", status=exc.status, detail=exc.detail)
            if time.monotonic() + delay > deadline:
                raise ReportTimeoutError(
                    "apsis", None, "report not ready", f"not ready within {timeout_s:g} s", route=REPORT_POLL
                )
            await asyncio.sleep(delay)
            delay = min(self.poll_max_s, delay * 2)

    async def _download(self, ticket: ReportTicket) -> AsyncGenerator[dict[str, str], None]:
        client = self.client
        async with client.request_permit("GET", REPORT_POLL):
            for attempt in range(2):
                for bucket in (self.download_bucket, client.account_bucket):
                    await client.limiter.acquire_bucket(bucket, max_wait_s=client.max_wait_s)
                token = await client.tokens.get()
                headers = {
                    "Authorization": f"Bearer {token}",
                    "Accept": "text/csv",
                    "Accept-Encoding": "gzip",
                }
                try:
                    async with client.session.get(
                        ticket.poll_url, headers=headers, timeout=DOWNLOAD_TIMEOUT
                    ) as resp:
                        if resp.status == 401 and attempt == 0:
                            await client.tokens.invalidate(token)
                            continue
                        if resp.status == 404:
                            raise _NotReadyError("apsis", 404, route=REPORT_POLL)
                        if resp.status == 410:
                            raise ReportGoneError(
                                "apsis", 410, "Gone", "the report is no longer available", route=REPORT_POLL
                            )
                        if resp.status >= 400:
                            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                            if resp.status == 429:
                                await client.limiter.hold(self.download_bucket, retry_after or 1.0)
                            raise error_from_response(
                                "apsis",
                                resp.status,
                                await resp.read(),
                                retry_after=retry_after,
                                route=REPORT_POLL,
                            )
                        started = False
                        try:
                            async for row in _csv_rows(resp.content):
                                started = True
                                yield row
                        except (aiohttp.ClientError, TimeoutError) as exc:
                            cause = TransientApiError(
                                "apsis", None, "download cut off", type(exc).__name__, route=REPORT_POLL
                            )
                            if started:
                                raise _StartedError(cause) from exc
                            raise cause from exc
                        return
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise TransientApiError(
                        "apsis", None, "connection error", type(exc).__name__, route=REPORT_POLL
                    ) from exc
            raise TransientApiError(
                "apsis", 401, "Unauthorized", "a fresh token was refused", route=REPORT_POLL
            )


class _NotReadyError(TransientApiError):
    pass


class _StartedError(TransientApiError):
    def __init__(self, cause: TransientApiError) -> None:
        super().__init__(cause.api, cause.status, cause.title, cause.detail, route=cause.route)
        self.cause = cause


async def _csv_rows(stream: aiohttp.StreamReader) -> AsyncIterator[dict[str, str]]:
    """CSV records as dicts by header, parsed as the bytes arrive (quoted newlines kept)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")("replace")
    header: list[str] | None = None
    pending = ""
    text = ""
    eof = False
    while not eof:
        chunk = await stream.read(1 << 16)
        eof = not chunk
        text += decoder.decode(chunk, final=eof)
        lines = text.split("\n")
        text = "" if eof else lines.pop()
        for line in lines:
            pending += line + "\n"
            if pending.count('"') % 2:  # inside a quoted field: the record goes on
                continue
            record, pending = pending, ""
            if not record.strip():
                continue
            cells = next(csv.reader([record.rstrip("\r\n")]))
            if header is None:
                header = cells
                continue
            yield dict(zip(header, cells, strict=False))
