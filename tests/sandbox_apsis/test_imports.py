"""Import v2 in the APSIS sandbox over real HTTP: the request's checks, the limits, the presigned
upload (no token, signature, expiry, size), processing over time, the same semantics as the
per-profile writes (no resubscribe after an opt-out), skipped rows and failed imports."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from sandbox.apsis import KEYSPACE, SECTION, ApsisSandbox
from sandbox.apsis.imports import ImportService, imports_of
from tests.sandbox_apsis.conftest import EMAIL, SMS, Api, FakeClock

NEWS = "com.apsis1.topics.news"
OFFERS = "com.apsis1.topics.offers"
SMS_OFFERS = "com.apsis1.topics.sms-offers"
EMAIL_V, FIRST_V, MOBILE_V, CITY_V, ORDERS_V = "1001", "1002", "1004", "1005", "1008"


def spec(
    *,
    consent_type: str = "opt-in",
    resubscribe: bool = False,
    update_existing: bool = True,
    clear_existing: bool = False,
    keyspace: str = KEYSPACE,
) -> dict[str, Any]:
    return {
        "keyspace_mapping": {"keyspace_discriminator": keyspace, "field_selector": "key"},
        "options": {"update_existing_profiles": update_existing, "clear_existing_attributes": clear_existing},
        "attribute_mappings": [
            {"field_selector": "email", "attribute_version_id": EMAIL_V},
            {"field_selector": "first", "attribute_version_id": FIRST_V},
            {"field_selector": "city", "attribute_version_id": CITY_V},
            {"field_selector": "orders", "attribute_version_id": ORDERS_V},
        ],
        "consent_mappings": [
            {
                "address_field_selector": "email",
                "consents": [
                    {
                        "field_selector": "news",
                        "channel_discriminator": EMAIL,
                        "topic_discriminator": NEWS,
                        "type": consent_type,
                        "resubscribe_if_opted_out": resubscribe,
                    }
                ],
            }
        ],
    }


HEADER = "key,email,first,city,orders,news\n"


def imports_path(section: str = SECTION) -> str:
    return f"/v2/audience/sections/{section}/imports"


async def request_import(api: Api, body: Any, section: str = SECTION) -> tuple[int, Any, Any]:
    return await api.call("POST", imports_path(section), json=body)


async def upload(
    session: aiohttp.ClientSession, ticket: dict[str, Any], data: bytes, fields: dict[str, str] | None = None
) -> tuple[int, str]:
    form = aiohttp.FormData()
    for name, value in (fields if fields is not None else ticket["file_upload_body"]).items():
        form.add_field(name, value)
    form.add_field("file", data, filename="profiles.csv", content_type="text/csv")
    async with session.post(ticket["file_upload_url"], data=form) as resp:  # no Authorization header
        return resp.status, await resp.text()


async def status_of(api: Api, import_id: str) -> str:
    code, _, body = await api.call("GET", f"/audience/sections/{SECTION}/imports/{import_id}")
    assert code == 200, body
    assert body["import_id"] == import_id
    return str(body["result"]["status"])


async def run_import(api: Api, body: dict[str, Any], csv_text: str) -> tuple[str, ImportService]:
    """Request, upload, wait until final; the import id and the service."""
    code, _, ticket = await request_import(api, body)
    assert code == 201, ticket
    status, text = await upload(api.session, ticket, csv_text.encode())
    assert status == 204, text
    service = imports_of(api.account)
    async with asyncio.timeout(20):
        await service.wait_idle()
    return ticket["import_id"], service


async def test_request_upload_and_completion(api: Api, sandbox: ApsisSandbox) -> None:
    code, _, ticket = await request_import(api, spec())
    assert code == 201, ticket
    assert set(ticket) == {"import_id", "file_upload_url", "file_upload_body", "file_upload_url_expires_at"}
    assert ticket["file_upload_url"].startswith(sandbox.url)
    assert {"key", "policy", "x-amz-signature"} <= set(ticket["file_upload_body"])
    assert await status_of(api, ticket["import_id"]) == "waiting_for_file"
    rows = HEADER + "c1,ann@example.com,Ann,Lund,3,true\nc2,bo@example.com,Bo,,0,\n"
    status, text = await upload(api.session, ticket, rows.encode())
    assert status == 204, text
    async with asyncio.timeout(20):
        await imports_of(api.account).wait_idle()
    assert await status_of(api, ticket["import_id"]) == "completed"
    ann = api.account.profile(KEYSPACE, "c1")
    assert ann is not None
    assert ann.attributes[SECTION] == {
        EMAIL_V: "ann@example.com",
        FIRST_V: "Ann",
        CITY_V: "Lund",
        ORDERS_V: 3,
    }
    assert api.account.opted_in_topics(KEYSPACE, "c1", SECTION, "email") == [NEWS]
    assert api.account.opted_in_topics(KEYSPACE, "c2", SECTION, "email") == []
    summary = imports_of(api.account).summary()
    assert summary["imports"]["completed"] == 1
    assert summary["rows_applied"] == 2 and summary["rows_skipped"] == 0
    assert summary["consents"] == {"written": 1}


async def test_unknown_import_and_section_are_404(api: Api) -> None:
    code, _, body = await api.call("GET", f"/audience/sections/{SECTION}/imports/nope")
    assert code == 404 and body["status"] == 404
    code, _, body = await request_import(api, spec(), section="com.apsis1.sections.none")
    assert code == 404, body


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        (lambda b: b["keyspace_mapping"].update(keyspace_discriminator="com.nope"), 404, "keyspace"),
        (
            lambda b: b["attribute_mappings"].append({"field_selector": "x", "attribute_version_id": "9999"}),
            400,
            "9999",
        ),
        (
            lambda b: b["attribute_mappings"].append({"field_selector": "x", "attribute_version_id": "901"}),
            400,
            "deprecated",
        ),
        (
            lambda b: b["consent_mappings"][0]["consents"][0].update(topic_discriminator="com.nope"),
            404,
            "topic",
        ),
        (
            lambda b: b["consent_mappings"][0]["consents"][0].update(topic_discriminator=SMS_OFFERS),
            400,
            "specific",
        ),
        (
            lambda b: b["consent_mappings"][0]["consents"][0].update(channel_discriminator="fax"),
            400,
            "channel",
        ),
        (lambda b: b["consent_mappings"][0]["consents"][0].update(type="confirmed-opt-in"), 400, "type"),
        (lambda b: b.pop("keyspace_mapping"), 400, "keyspace_mapping"),
    ],
)
async def test_bad_requests_are_refused_with_problem_json(
    api: Api, change: Any, status: int, words: str
) -> None:
    body = spec()
    change(body)
    code, headers, answer = await request_import(api, body)
    assert code == status, answer
    assert headers["Content-Type"].startswith("application/problem+json")
    assert words in answer["detail"]
    assert imports_of(api.account).records == {}


async def test_403_when_the_keyspace_may_not_manage_consent_or_an_attribute_is_read_only(api: Api) -> None:
    api.account.set_manage_subscriptions(KEYSPACE, False)
    code, _, body = await request_import(api, spec())
    assert code == 403 and "manage_subscriptions" in body["detail"]
    api.account.set_manage_subscriptions(KEYSPACE, True)
    imports_of(api.account).settings.read_only_attributes = {CITY_V}
    code, _, body = await request_import(api, spec())
    assert code == 403 and CITY_V in body["detail"]


async def test_at_most_three_pending_imports_then_429_until_one_is_no_longer_pending(
    api: Api, clock: FakeClock
) -> None:
    ids = []
    for _ in range(3):
        code, _, ticket = await request_import(api, spec())
        assert code == 201
        ids.append(ticket)
    code, headers, body = await request_import(api, spec())
    assert code == 429, body
    assert int(headers["Retry-After"]) >= 1 and "pending" in body["detail"]
    # an unused upload URL that expired no longer counts as pending
    imports_of(api.account).settings.upload_ttl_s = 3600
    clock.advance(3601)
    code, _, _ = await request_import(api, spec())
    assert code == 201
    assert imports_of(api.account).counters["429_pending"] == 1


async def test_ten_import_requests_a_minute(api: Api, clock: FakeClock) -> None:
    imports_of(api.account).settings.max_pending = 100
    for _ in range(10):
        code, _, body = await request_import(api, spec())
        assert code == 201, body
    code, headers, body = await request_import(api, spec())
    assert code == 429 and "per minute" in body["detail"]
    assert int(headers["Retry-After"]) >= 1
    clock.advance(60.5)
    code, _, _ = await request_import(api, spec())
    assert code == 201


async def test_upload_needs_no_token_but_the_signed_fields(api: Api) -> None:
    code, _, ticket = await request_import(api, spec())
    assert code == 201
    fields = dict(ticket["file_upload_body"])
    fields["x-amz-signature"] = "0" * 64
    status, text = await upload(api.session, ticket, (HEADER + "c1,a@example.com,A,,1,\n").encode(), fields)
    assert status == 403 and "SignatureDoesNotMatch" in text
    fields = {k: v for k, v in ticket["file_upload_body"].items() if k != "policy"}
    status, text = await upload(api.session, ticket, b"key\n", fields)
    assert status == 403 and "policy" in text
    assert await status_of(api, ticket["import_id"]) == "waiting_for_file"
    assert api.account.request_count("POST", "/_storage/apsis-imports", 403) == 2


async def test_expired_upload_url_is_403_like_storage(api: Api, clock: FakeClock) -> None:
    code, _, ticket = await request_import(api, spec())
    assert code == 201, ticket
    clock.advance(3600)
    status, text = await upload(api.session, ticket, (HEADER + "c1,a@example.com,A,,1,\n").encode())
    assert status == 403 and "Policy expired" in text
    assert await status_of(api, ticket["import_id"]) == "waiting_for_file"
    assert api.account.profile(KEYSPACE, "c1") is None


async def test_fault_switch_expires_upload_urls_early(api: Api) -> None:
    code, _, ticket = await request_import(api, spec())
    assert code == 201, ticket
    async with api.session.patch(
        api.sandbox.url + "/_sandbox/imports", json={"expire_uploads": True}
    ) as resp:
        assert (await resp.json())["expired_uploads"] == 1
    status, text = await upload(api.session, ticket, (HEADER + "c1,a@example.com,A,,1,\n").encode())
    assert status == 403 and "expired" in text
    assert imports_of(api.account).pending(api.account.clock()) == 0


async def test_file_over_the_size_limit_is_refused(api: Api) -> None:
    imports_of(api.account).settings.max_file_bytes = 1000
    code, _, ticket = await request_import(api, spec())
    assert code == 201, ticket
    status, text = await upload(api.session, ticket, (HEADER + "c1,a@example.com,A,,1,\n" * 100).encode())
    assert status == 400 and "EntityTooLarge" in text
    assert await status_of(api, ticket["import_id"]) == "waiting_for_file"


async def test_processing_takes_time_at_the_configured_rows_per_second(api: Api) -> None:
    service = imports_of(api.account)
    service.settings.rows_per_second = 400
    rows = "".join(f"p{n},p{n}@example.com,P,,{n},true\n" for n in range(400))
    code, _, ticket = await request_import(api, spec())
    assert code == 201, ticket
    started = time.monotonic()
    status, _ = await upload(api.session, ticket, (HEADER + rows).encode())
    assert status == 204
    seen = {await status_of(api, ticket["import_id"])}
    while "completed" not in seen:
        await asyncio.sleep(0.05)
        seen.add(await status_of(api, ticket["import_id"]))
        assert time.monotonic() - started < 20
    elapsed = time.monotonic() - started
    assert "in_progress" in seen
    assert 0.8 <= elapsed < 10, elapsed  # 400 rows at 400/s: about one second
    assert service.summary()["rows_applied"] == 400
    assert len(api.account.profile_keys(KEYSPACE)) == 400


async def test_rows_mean_what_the_per_profile_writes_mean(api: Api) -> None:
    # the same data, once through PATCH + consent POST (profile "a"), once through an import ("b")
    code, _, _ = await api.patch_attributes(
        "a", {EMAIL_V: "x@example.com", FIRST_V: "X", CITY_V: "Oslo", ORDERS_V: 7}
    )
    assert code == 204
    code, _, _ = await api.consent("a", NEWS)
    assert code == 201
    await run_import(api, spec(), HEADER + "b,x@example.com,X,Oslo,7,true\n")
    a, b = api.account.profile(KEYSPACE, "a"), api.account.profile(KEYSPACE, "b")
    assert a is not None and b is not None and a.attributes == b.attributes
    consent_a = api.account.profile_consents(KEYSPACE, "a", SECTION)
    consent_b = api.account.profile_consents(KEYSPACE, "b", SECTION)
    assert {k: r.type for k, r in consent_a.items()} == {k: r.type for k, r in consent_b.items()}
    kinds = [w.kind for w in api.account.writes_after(0, 100)]
    assert kinds == ["attributes", "consent", "attributes", "consent"]


async def test_an_import_never_resubscribes_an_opt_out_given_in_apsis(api: Api) -> None:
    await run_import(api, spec(), HEADER + "c1,c1@example.com,C,,1,true\n")
    api.account.set_consent(KEYSPACE, "c1", SECTION, "email", NEWS, "opt-out")
    await run_import(api, spec(), HEADER + "c1,c1@example.com,C,,1,true\n")
    assert api.account.profile_consents(KEYSPACE, "c1", SECTION)[(EMAIL, NEWS)].type == "opt-out"
    assert imports_of(api.account).totals.consents["kept_opt_out"] == 1
    # an opt-out import applies; resubscribe_if_opted_out = true would override
    await run_import(api, spec(resubscribe=True), HEADER + "c1,c1@example.com,C,,1,true\n")
    assert api.account.profile_consents(KEYSPACE, "c1", SECTION)[(EMAIL, NEWS)].type == "opt-in"
    await run_import(api, spec(consent_type="opt-out"), HEADER + "c1,c1@example.com,C,,1,yes\n")
    assert api.account.profile_consents(KEYSPACE, "c1", SECTION)[(EMAIL, NEWS)].type == "opt-out"


async def test_update_existing_and_clear_existing_options(api: Api) -> None:
    await run_import(api, spec(), HEADER + "c1,c1@example.com,Old,Lund,1,\n")
    await run_import(
        api,
        spec(update_existing=False),
        HEADER + "c1,c1@example.com,New,Malmo,2,\nc2,c2@example.com,Two,,2,\n",
    )
    c1 = api.account.profile(KEYSPACE, "c1")
    assert c1 is not None and c1.attributes[SECTION][FIRST_V] == "Old"
    assert api.account.profile(KEYSPACE, "c2") is not None  # new profiles are still created
    await run_import(api, spec(), HEADER + "c1,c1@example.com,Newer,,2,\n")  # empty city kept
    c1 = api.account.profile(KEYSPACE, "c1")
    assert c1 is not None and c1.attributes[SECTION][CITY_V] == "Lund"
    await run_import(api, spec(clear_existing=True), HEADER + "c1,c1@example.com,Newer,,2,\n")
    c1 = api.account.profile(KEYSPACE, "c1")
    assert c1 is not None and CITY_V not in c1.attributes[SECTION]


async def test_rows_apsis_would_refuse_are_skipped_without_a_word(api: Api) -> None:
    body = spec()
    body["attribute_mappings"].append({"field_selector": "mobile", "attribute_version_id": MOBILE_V})
    body["consent_mappings"].append(
        {
            "address_field_selector": "mobile",
            "consents": [
                {
                    "field_selector": "sms",
                    "channel_discriminator": SMS,
                    "topic_discriminator": SMS_OFFERS,
                    "type": "opt-in",
                }
            ],
        }
    )
    rows = (
        "key,email,first,city,orders,news,mobile,sms\n"
        "ok,ok@example.com,Ok,,1,true,+46701234567,true\n"
        "bad-email,not-an-email,B,,1,,,\n"
        "bad-phone,p@example.com,P,,1,,0701234,\n"
        f"too-long,l@example.com,{'x' * 1001},,1,,,\n"
        "bad-number,n@example.com,N,,many,,,\n"
        ",nokey@example.com,N,,1,,,\n"
    )
    import_id, service = await run_import(api, body, rows)
    assert await status_of(api, import_id) == "completed"
    assert api.account.profile_keys(KEYSPACE) == [(KEYSPACE, "ok")]
    assert api.account.opted_in_topics(KEYSPACE, "ok", SECTION, "sms") == [SMS_OFFERS]
    assert service.records[import_id].outcome.skipped == {
        "malformed email": 1,
        "malformed phone": 1,
        "value too long": 1,
        "value does not fit the attribute type": 1,
        "no profile key": 1,
    }
    code, _, answer = await api.call("GET", f"/audience/sections/{SECTION}/imports/{import_id}")
    assert code == 200
    assert answer == {"import_id": import_id, "result": {"status": "completed"}}  # no per-row result


async def test_an_import_can_fail_as_a_whole(api: Api) -> None:
    imports_of(api.account).settings.fail_next = 1
    import_id, service = await run_import(api, spec(), HEADER + "c1,c1@example.com,C,,1,true\n")
    assert await status_of(api, import_id) == "error"
    assert api.account.profile(KEYSPACE, "c1") is None
    # a file without a mapped column fails as a whole too
    import_id, _ = await run_import(api, spec(), "key,email\nc1,c1@example.com\n")
    assert await status_of(api, import_id) == "error"
    assert "first" in service.records[import_id].error
    assert service.summary()["imports"]["error"] == 2 and api.account.profile(KEYSPACE, "c1") is None


async def test_reset_forgets_imports(api: Api) -> None:
    await request_import(api, spec())
    async with api.session.post(api.sandbox.url + "/_sandbox/reset") as resp:
        assert resp.status == 200
    async with api.session.get(api.sandbox.url + "/_sandbox/imports") as resp:
        summary = await resp.json()
    assert summary["imports"]["waiting_for_file"] == 0 and summary["pending"] == 0
