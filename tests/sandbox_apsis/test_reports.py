"""The consent report export in the APSIS sandbox over real HTTP: request (1 per second), poll
(404 until ready), CSV download (plain and gzip), 410 once gone, checks of the body."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import pytest

from sandbox.apsis import KEYSPACE, SECTION
from sandbox.apsis.reports import reports_of
from tests.sandbox_apsis.conftest import EMAIL, Api, FakeClock

NEWS = "com.apsis1.topics.news"
OFFERS = "com.apsis1.topics.offers"
REPORTS = "/audience/profiles/reports/consents"


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "section_discriminator": SECTION,
        "keyspace_discriminator": KEYSPACE,
        "topic_discriminators": [NEWS],
        "channels": [{"field_name": "EmailConsent", "channel_discriminator": EMAIL}],
        "attribute_version_ids": ["1002", "1008"],
    }
    base.update(changes)
    return base


async def seed(api: Api) -> None:
    for key, email, first in (
        ("1", "a@example.com", "A"),
        ("2", "b@example.com", "B"),
        ("3", "c@example.com", "C"),
    ):
        code, _, _ = await api.patch_attributes(key, {"1001": email, "1002": first, "1008": int(key)})
        assert code == 204
    assert (await api.consent("1", NEWS))[0] == 201
    assert (await api.consent("2", NEWS, "opt-out"))[0] == 201
    assert (await api.consent("3", OFFERS))[0] == 201


async def poll(api: Api, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    path = url.removeprefix(api.sandbox.url)
    status, resp_headers, raw = await api.call("GET", path, headers=headers)
    return status, resp_headers, raw


async def test_request_poll_and_download(api: Api) -> None:
    await seed(api)
    reports_of(api.account).report_delay_s = 0.3
    code, _, answer = await api.call("POST", REPORTS, json=body())
    assert code == 201, answer
    status, _, problem = await poll(api, answer["poll_url"])
    assert status == 404 and problem["status"] == 404  # not ready yet
    await asyncio.sleep(0.5)
    status, headers, raw = await poll(api, answer["poll_url"])
    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    assert rows == [
        {"profile_key": "1", "EmailConsent": "a@example.com", "1002": "A", "1008": "1"},
        {"profile_key": "2", "EmailConsent": "", "1002": "B", "1008": "2"},
        {"profile_key": "3", "EmailConsent": "", "1002": "C", "1008": "3"},
    ]
    # the same report again, gzip-compressed on request
    async with api.session.get(
        answer["poll_url"],
        headers={"Authorization": f"Bearer {api.token}", "Accept-Encoding": "gzip"},
    ) as resp:
        assert resp.status == 200 and resp.headers.get("Content-Encoding") == "gzip"
        assert list(csv.DictReader(io.StringIO(await resp.text()))) == rows


async def test_single_channel_column_and_any_of_the_topics(api: Api) -> None:
    await seed(api)
    reports_of(api.account).report_delay_s = 0
    code, _, answer = await api.call(
        "POST",
        REPORTS,
        json=body(channels=None, channel_discriminator=EMAIL, topic_discriminators=[NEWS, OFFERS]),
    )
    assert code == 201, answer
    await asyncio.sleep(0.1)
    status, _, raw = await poll(api, answer["poll_url"])
    assert status == 200
    rows = {
        r["profile_key"]: r["com.apsis1.attributes.email"] for r in csv.DictReader(io.StringIO(raw.decode()))
    }
    assert rows == {"1": "a@example.com", "2": "", "3": "c@example.com"}


async def test_one_export_request_per_second(api: Api, clock: FakeClock) -> None:
    assert (await api.call("POST", REPORTS, json=body()))[0] == 201
    code, headers, problem = await api.call("POST", REPORTS, json=body())
    assert code == 429 and headers["Retry-After"] == "1" and "1 per second" in problem["detail"]
    clock.advance(1.0)
    assert (await api.call("POST", REPORTS, json=body()))[0] == 201


async def test_gone_after_a_day_and_for_an_unknown_id(api: Api, clock: FakeClock) -> None:
    reports_of(api.account).report_delay_s = 0
    code, _, answer = await api.call("POST", REPORTS, json=body())
    assert code == 201
    await asyncio.sleep(0.1)
    assert (await poll(api, answer["poll_url"]))[0] == 200
    clock.advance(86_400)
    await api.login()  # the token expired too
    assert (await poll(api, answer["poll_url"]))[0] == 410
    assert (await api.call("GET", REPORTS + "/nope"))[0] == 410


async def test_poll_needs_the_bearer_token(api: Api) -> None:
    code, _, answer = await api.call("POST", REPORTS, json=body())
    assert code == 201
    async with api.session.get(answer["poll_url"]) as resp:
        assert resp.status == 401


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"section_discriminator": "com.nope"}, 404),
        ({"keyspace_discriminator": "com.nope"}, 404),
        ({"topic_discriminators": []}, 400),
        ({"topic_discriminators": ["com.nope"]}, 404),
        ({"channels": [{"field_name": "X", "channel_discriminator": "fax"}]}, 400),
        ({"attribute_version_ids": ["9999"]}, 400),
    ],
)
async def test_bad_report_requests(api: Api, clock: FakeClock, changes: dict[str, Any], status: int) -> None:
    code, _, problem = await api.call("POST", REPORTS, json=body(**changes))
    assert code == status, problem
    assert reports_of(api.account).reports == {}
