"""Inspection: the Python API and the same over `/_sandbox/`."""

from __future__ import annotations

from sandbox.apsis import KEYSPACE, SECTION
from tests.sandbox_apsis.conftest import Api, FakeClock

PATCH_ROUTE = "/audience/keyspaces/{keyspace}/profiles/{profile_key}/sections/{section}/attributes"


async def _traffic(api: Api, clock: FakeClock) -> None:
    await api.patch_attributes("1", {"1001": "a@example.com"})
    clock.advance(1)
    await api.consent("1", "com.apsis1.topics.news")
    clock.advance(1)
    await api.post_events(
        "1", {"items": [{"event_time": "2024-10-01T12:00:00Z", "version_id": "2001", "data": {"id": 1}}]}
    )
    await api.patch_attributes("2", {"9999": "x"})  # refused: not a write
    await api.call("DELETE", f"/audience/keyspaces/{KEYSPACE}/profiles/1")


async def test_write_log_in_order(api: Api, clock: FakeClock) -> None:
    start = clock()
    await _traffic(api, clock)
    writes = list(api.account.writes)
    assert [(w.seq, w.kind) for w in writes] == [
        (1, "attributes"),
        (2, "consent"),
        (3, "events"),
        (4, "delete"),
    ]
    assert writes[0].params == {"keyspace": KEYSPACE, "profile_key": "1", "section": SECTION}
    assert writes[0].summary == {"1001": "a@example.com"}
    assert writes[0].at == start
    assert writes[1].params == {"keyspace": KEYSPACE, "profile_key": "1", "section": SECTION}
    assert writes[1].summary["type"] == "opt-in"
    assert writes[1].summary["topic_discriminator"] == "com.apsis1.topics.news"
    assert writes[2].summary == {"count": 1, "version_ids": ["2001"]}
    assert writes[2].at == start + 2


async def test_request_counts(api: Api, clock: FakeClock) -> None:
    await _traffic(api, clock)
    account = api.account
    assert account.requests[("PATCH", PATCH_ROUTE, 204)] == 1
    assert account.requests[("PATCH", PATCH_ROUTE, 400)] == 1
    assert account.request_count(method="PATCH") == 2
    assert account.request_count(route="/oauth/token", status=200) == 1
    assert account.request_count() == 6


async def test_profile_view_is_a_copy(api: Api) -> None:
    await api.patch_attributes("5", {"1001": "a@example.com"})
    view = api.account.profile(KEYSPACE, "5")
    assert view is not None
    view.attributes[SECTION]["1001"] = "changed"
    again = api.account.profile(KEYSPACE, "5")
    assert again is not None and again.attributes[SECTION]["1001"] == "a@example.com"
    assert api.account.profile_keys() == [(KEYSPACE, "5")]


async def test_sandbox_http_inspection(api: Api, clock: FakeClock) -> None:
    await api.patch_attributes("7", {"1001": "a@example.com", "1002": "Åsa"})
    await api.consent("7", "com.apsis1.topics.offers")
    await api.consent("7", "com.apsis1.topics.sms-offers", channel="com.apsis1.channels.sms")

    status, _, summary = await api.call("GET", "/_sandbox", auth=False)
    assert status == 200 and summary["profiles"] == 1 and summary["writes"] == 3
    assert summary["profiles_with_consents"] == 1 and summary["suppressions"] == 0
    assert "GET /_sandbox/profiles/{keyspace}/{profile_key}" in summary["routes"]

    _, _, profile = await api.call("GET", f"/_sandbox/profiles/{KEYSPACE}/7", auth=False)
    assert profile["attributes"] == {SECTION: {"1001": "a@example.com", "1002": "Åsa"}}
    assert (await api.call("GET", f"/_sandbox/profiles/{KEYSPACE}/8", auth=False))[0] == 404

    _, _, listing = await api.call("GET", f"/_sandbox/profiles?keyspace={KEYSPACE}", auth=False)
    assert listing == {"total": 1, "items": [{"keyspace": KEYSPACE, "key": "7"}]}

    _, _, consents = await api.call("GET", f"/_sandbox/consents/{KEYSPACE}/7/{SECTION}", auth=False)
    assert [c["topic_discriminator"] for c in consents["items"]] == [
        "com.apsis1.topics.offers",
        "com.apsis1.topics.sms-offers",
    ]
    assert consents["opted_in"] == {
        "com.apsis1.channels.email": ["com.apsis1.topics.offers"],
        "com.apsis1.channels.sms": ["com.apsis1.topics.sms-offers"],
    }
    _, _, none = await api.call("GET", f"/_sandbox/consents/{KEYSPACE}/8/{SECTION}", auth=False)
    assert none == {"items": [], "opted_in": {}}

    _, _, requests = await api.call("GET", "/_sandbox/requests", auth=False)
    assert {"method": "PATCH", "route": PATCH_ROUTE, "status": 204, "count": 1} in requests["items"]

    _, _, writes = await api.call("GET", "/_sandbox/writes?after=1&limit=1", auth=False)
    assert [w["seq"] for w in writes["items"]] == [2]
    assert writes["items"][0]["kind"] == "consent"

    _, _, definitions = await api.call("GET", "/_sandbox/definitions", auth=False)
    assert SECTION in [s["discriminator"] for s in definitions["sections"]]

    _, _, limits = await api.call("GET", "/_sandbox/limits", auth=False)
    assert limits["account_per_second"] == 100 and limits["profile_per_second"] == 10
    assert limits["token_per_minute"] == 10

    assert (await api.call("POST", "/_sandbox/reset", auth=False))[0] == 200
    assert api.account.profile(KEYSPACE, "7") is None
    assert list(api.account.writes) == []
    assert (await api.call("GET", "/audience/sections"))[0] == 401  # tokens went too


def test_write_log_polling_and_bound() -> None:
    from sandbox.apsis import default_account

    account = default_account(max_write_log=50)
    for i in range(120):
        account.patch_attributes(KEYSPACE, str(i), SECTION, {"1001": f"{i}@example.com"})
    assert len(account.writes) == 50  # the oldest are dropped
    assert [w.seq for w in account.writes_after(0, 3)] == [71, 72, 73]
    assert [w.seq for w in account.writes_after(75, 2)] == [76, 77]
    assert [w.seq for w in account.writes_after(110)] == list(range(111, 121))
    assert account.writes_after(120) == []
    assert account.summary()["writes"] == 120
