"""The import and report clients: edge cases against mocked HTTP (aioresponses), and one round
trip against the real APSIS sandbox on loopback (both with the real Redis limiter)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aioresponses import aioresponses
from redis.asyncio import Redis

from core.keys import Keys
from mappings.installation import ApsisAccount, Limits
from sandbox.apsis import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, KEYSPACE, SECTION, ApsisSandbox
from sandbox.apsis.imports import imports_of
from sandbox.apsis.reports import reports_of
from tests.clients.conftest import calls, make_account
from worker.apsis_client import ApsisClient
from worker.apsis_imports import (
    ApsisImports,
    ConsentColumn,
    ConsentMapping,
    ImportForbiddenError,
    ImportSpec,
    ImportTicket,
    MalformedAnswerError,
    UploadRejectedError,
    UploadUrlExpiredError,
)
from worker.apsis_reports import ApsisReports, ConsentReportSpec, ReportGoneError, ReportTicket
from worker.errors import NotFoundError, PayloadTooLargeError, RateLimitedError, TransientApiError
from worker.ratelimit import Bucket, RateLimiter
from worker.retry import NO_RETRY, RetryPolicy

BASE = "http://apsis.test"
KS = "com.apsis1.integrations.keyspaces.test.shopify"
SEC = "com.apsis1.sections.abc"
IMPORTS_URL = f"{BASE}/v2/audience/sections/{SEC}/imports"
UPLOAD_URL = "http://storage.test/bucket"
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05, budget_s=5)
SPEC = ImportSpec(
    keyspace=KS,
    key_field="key",
    attributes={"email": "1001", "first": "1002"},
    consents=(ConsentMapping("email", (ConsentColumn("news", "com.apsis1.topics.news", "email"),)),),
)


def later(seconds: float = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def ticket_answer(**changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "import_id": "imp-1",
        "file_upload_url": UPLOAD_URL,
        "file_upload_body": {"key": "imports/imp-1.csv", "policy": "cG9saWN5", "x-amz-signature": "abc"},
        "file_upload_url_expires_at": later(),
    }
    answer.update(changes)
    return answer


def token_ok(http: aioresponses) -> None:
    http.post(f"{BASE}/oauth/token", payload={"access_token": "tok", "expires_in": 86400}, repeat=True)


async def client_for(
    account: ApsisAccount, redis: Redis, keys: Keys, limiter: RateLimiter, retry: RetryPolicy
) -> ApsisClient:
    return ApsisClient(
        account, redis, limiter, keys, limits=Limits(), retry=retry, token_bucket=Bucket("t", 100, 10)
    )


@pytest.fixture
async def client(redis: Redis, keys: Keys, limiter: RateLimiter) -> AsyncIterator[ApsisClient]:
    async with await client_for(make_account(BASE), redis, keys, limiter, NO_RETRY) as c:
        yield c


# --- requesting an import ---------------------------------------------------------------------


async def test_create_import_sends_the_spec_and_reads_the_ticket(
    http: aioresponses, client: ApsisClient
) -> None:
    token_ok(http)
    http.post(IMPORTS_URL, status=201, payload=ticket_answer())
    ticket = await ApsisImports(client).create_import(SEC, SPEC)
    assert ticket.import_id == "imp-1" and ticket.upload_url == UPLOAD_URL
    assert ticket.upload_fields["key"] == "imports/imp-1.csv" and not ticket.expired()
    ((_, kwargs),) = calls(http, "POST", IMPORTS_URL)
    assert kwargs["headers"]["Authorization"] == "Bearer tok"
    sent = orjson.loads(kwargs["data"])
    assert sent["keyspace_mapping"] == {"keyspace_discriminator": KS, "field_selector": "key"}
    assert sent["attribute_mappings"] == [
        {"field_selector": "email", "attribute_version_id": "1001"},
        {"field_selector": "first", "attribute_version_id": "1002"},
    ]
    assert sent["consent_mappings"][0]["consents"][0] == {
        "field_selector": "news",
        "channel_discriminator": "com.apsis1.channels.email",
        "topic_discriminator": "com.apsis1.topics.news",
        "type": "opt-in",
        "resubscribe_if_opted_out": False,
    }
    assert SPEC.columns == ["key", "email", "first", "news"]


async def test_429_is_rate_limited_with_retry_after(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    http.post(
        IMPORTS_URL,
        status=429,
        headers={"Retry-After": "7"},
        payload={"title": "Too Many Requests", "detail": "pending import count limit"},
    )
    with pytest.raises(RateLimitedError) as caught:
        await ApsisImports(client).create_import(SEC, SPEC)
    assert caught.value.retry_after == 7


async def test_403_names_the_cause_and_fetches_no_new_token(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    http.post(IMPORTS_URL, status=403, payload={"title": "Forbidden", "status": 403, "detail": "no"})
    with pytest.raises(ImportForbiddenError) as caught:
        await ApsisImports(client).create_import(SEC, SPEC)
    assert "manage_subscriptions" in str(caught.value) and "not writable" in str(caught.value)
    assert len(calls(http, "POST", f"{BASE}/oauth/token")) == 1


@pytest.mark.parametrize(
    "answer",
    [
        ticket_answer(import_id=None),
        ticket_answer(file_upload_url="/relative"),
        ticket_answer(file_upload_body=["key"]),
        ticket_answer(file_upload_url_expires_at="tomorrow"),
        ticket_answer(file_upload_url_expires_at=None),
        [],
    ],
)
async def test_malformed_import_answers(http: aioresponses, client: ApsisClient, answer: Any) -> None:
    token_ok(http)
    http.post(IMPORTS_URL, status=201, payload=answer)
    with pytest.raises(MalformedAnswerError):
        await ApsisImports(client).create_import(SEC, SPEC)


async def test_import_status(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    url = f"{BASE}/audience/sections/{SEC}/imports/imp-1"
    http.get(url, payload={"import_id": "imp-1", "result": {"status": "in_progress"}})
    http.get(url, payload={"import_id": "imp-1", "result": {"status": "error"}})
    http.get(url, payload={"import_id": "imp-1", "result": {"status": "exploded"}})
    http.get(url, status=404, payload={"title": "Not Found", "detail": "import imp-1 does not exist"})
    imports = ApsisImports(client)
    first = await imports.import_status(SEC, "imp-1")
    assert first.status == "in_progress" and first.pending and not first.final
    second = await imports.import_status(SEC, "imp-1")
    assert second.status == "error" and second.final
    with pytest.raises(MalformedAnswerError):
        await imports.import_status(SEC, "imp-1")
    with pytest.raises(NotFoundError):
        await imports.import_status(SEC, "imp-1")


# --- uploading --------------------------------------------------------------------------------


def ticket(expires_in: float = 3600) -> ImportTicket:
    return ImportTicket(
        SEC,
        "imp-1",
        UPLOAD_URL,
        {"key": "k", "policy": "p"},
        datetime.now(UTC) + timedelta(seconds=expires_in),
    )


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "profiles.csv"
    path.write_text("key,email,first,news\n1,a@example.com,A,true\n")
    return path


async def test_upload_posts_the_fields_and_the_file_without_a_token(
    http: aioresponses, client: ApsisClient, csv_file: Path
) -> None:
    http.post(UPLOAD_URL, status=204)
    await ApsisImports(client).upload_file(ticket(), csv_file)
    ((_, kwargs),) = calls(http, "POST", UPLOAD_URL)
    assert "Authorization" not in (kwargs.get("headers") or {})
    names = [part.headers["Content-Disposition"] for part, _, _ in kwargs["data"]._parts]
    assert names[0].startswith('form-data; name="key"') and names[1].startswith('form-data; name="policy"')
    assert names[-1].startswith('form-data; name="file"')  # storage wants the file last


async def test_an_expired_ticket_is_not_sent(http: aioresponses, client: ApsisClient, csv_file: Path) -> None:
    with pytest.raises(UploadUrlExpiredError):
        await ApsisImports(client).upload_file(ticket(expires_in=1), csv_file)
    assert calls(http, "POST", UPLOAD_URL) == []


STORAGE_XML = '<?xml version="1.0"?><Error><Code>{}</Code><Message>{}</Message></Error>'


@pytest.mark.parametrize(
    ("status", "code", "message", "error"),
    [
        (403, "AccessDenied", "Invalid according to Policy: Policy expired.", UploadUrlExpiredError),
        (403, "SignatureDoesNotMatch", "signature", UploadRejectedError),
        (400, "EntityTooLarge", "too large", PayloadTooLargeError),
    ],
)
async def test_storage_refusals(
    http: aioresponses,
    client: ApsisClient,
    csv_file: Path,
    status: int,
    code: str,
    message: str,
    error: type[Exception],
) -> None:
    http.post(UPLOAD_URL, status=status, body=STORAGE_XML.format(code, message))
    with pytest.raises(error):
        await ApsisImports(client).upload_file(ticket(), csv_file)


async def test_a_transient_storage_failure_is_retried_from_the_file(
    http: aioresponses, redis: Redis, keys: Keys, limiter: RateLimiter, csv_file: Path
) -> None:
    http.post(UPLOAD_URL, status=503, body=STORAGE_XML.format("SlowDown", "Please reduce your request rate."))
    http.post(UPLOAD_URL, status=204)
    async with await client_for(make_account(BASE), redis, keys, limiter, FAST) as c:
        await ApsisImports(c).upload_file(ticket(), csv_file)
    assert len(calls(http, "POST", UPLOAD_URL)) == 2


# --- the consent report -----------------------------------------------------------------------

REPORT_SPEC = ConsentReportSpec(SEC, KS, ["com.apsis1.topics.news"], {"EmailConsent": "email"}, ["1002"])
POLL = f"{BASE}/audience/profiles/reports/consents/r1"


async def test_report_is_polled_until_ready_and_streamed(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    http.post(f"{BASE}/audience/profiles/reports/consents", status=201, payload={"poll_url": POLL})
    http.get(POLL, status=404, payload={"title": "Not Found"})
    http.get(
        POLL,
        status=200,
        body='profile_key,EmailConsent,1002\n1,a@example.com,"Ann\nSecond line"\n2,,"B, ""the"" one"\n',
    )
    reports = ApsisReports(client, poll_initial_s=0.01)
    report = await reports.request_consent_report(REPORT_SPEC)
    assert report.poll_url == POLL
    rows = [row async for row in reports.consent_rows(report, timeout_s=5)]
    assert rows == [
        {"profile_key": "1", "EmailConsent": "a@example.com", "1002": "Ann\nSecond line"},
        {"profile_key": "2", "EmailConsent": "", "1002": 'B, "the" one'},
    ]
    ((_, kwargs),) = calls(http, "POST", f"{BASE}/audience/profiles/reports/consents")
    assert orjson.loads(kwargs["data"])["channels"] == [
        {"field_name": "EmailConsent", "channel_discriminator": "com.apsis1.channels.email"}
    ]


async def test_report_gone_and_not_ready_in_time(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    http.get(POLL, status=410, payload={"title": "Gone"})
    reports = ApsisReports(client, poll_initial_s=0.01)
    with pytest.raises(ReportGoneError):
        [row async for row in reports.consent_rows(ReportTicket(POLL))]
    http.get(POLL, status=404, repeat=True)
    with pytest.raises(TransientApiError, match="not ready"):
        [row async for row in reports.consent_rows(ReportTicket(POLL), timeout_s=0.1)]


# --- against the real sandbox -----------------------------------------------------------------


async def test_import_and_report_against_the_sandbox(
    redis: Redis, keys: Keys, limiter: RateLimiter, tmp_path: Path
) -> None:
    async with ApsisSandbox() as sandbox:
        account = ApsisAccount(
            base_url=sandbox.url,
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            keyspace=KEYSPACE,
        )
        sandbox.account.add_keyspace("com.apsis1.keyspaces.readonly", manage_subscriptions=False)
        reports_of(sandbox.account).report_delay_s = 0.05
        async with await client_for(account, redis, keys, limiter, FAST) as client:
            imports = ApsisImports(client, bucket=Bucket("imports-test", 100, 10))
            spec = ImportSpec(
                keyspace=KEYSPACE,
                key_field="key",
                attributes={"email": "1001", "first": "1002"},
                consents=(
                    ConsentMapping("email", (ConsentColumn("news", "com.apsis1.topics.news", "email"),)),
                ),
            )
            path = tmp_path / "file.csv"
            path.write_text(
                ",".join(spec.columns)
                + "\n1,a@example.com,Ann,true\n2,bad-address,Bo,\n3,c@example.com,Cy,\n"
            )
            ticket = await imports.create_import(SECTION, spec)
            assert (await imports.import_status(SECTION, ticket.import_id)).status == "waiting_for_file"
            await imports.upload_file(ticket, path)
            for _ in range(400):
                status = await imports.import_status(SECTION, ticket.import_id)
                if status.final:
                    break
                await asyncio.sleep(0.05)
            assert status.status == "completed"
            assert sandbox.account.opted_in_topics(KEYSPACE, "1", SECTION, "email") == [
                "com.apsis1.topics.news"
            ]
            assert imports_of(sandbox.account).summary()["skipped_by_reason"] == {"malformed email": 1}
            with pytest.raises(ImportForbiddenError):
                await imports.create_import(
                    SECTION, ImportSpec("com.apsis1.keyspaces.readonly", "key", {"email": "1001"})
                )
            reports = ApsisReports(client, poll_initial_s=0.05)
            report = await reports.request_consent_report(
                ConsentReportSpec(SECTION, KEYSPACE, ["com.apsis1.topics.news"], {"Email": "email"}, ["1002"])
            )
            rows = [row async for row in reports.consent_rows(report, timeout_s=10)]
            assert rows == [
                {"profile_key": "1", "Email": "a@example.com", "1002": "Ann"},
                {"profile_key": "3", "Email": "", "1002": "Cy"},
            ]
            # an upload after the URL expired early (the sandbox's fault switch) is told apart
            second = await imports.create_import(SECTION, spec)
            imports_of(sandbox.account).expire_uploads()
            with pytest.raises(UploadUrlExpiredError):
                await imports.upload_file(second, path)
    assert re.fullmatch(r"[0-9a-f]+", ticket.import_id)
