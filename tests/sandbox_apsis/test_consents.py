"""Consent 2.0: consent on the profile per section, channel and topic; the v2 consents endpoints."""

from __future__ import annotations

from datetime import datetime

import pytest

from sandbox.apsis import KEYSPACE, SECTION, VIP_SECTION
from sandbox.apsis.account import Account
from tests.sandbox_apsis.conftest import EMAIL, SMS, Api, FakeClock

NEWS = "com.apsis1.topics.news"
OFFERS = "com.apsis1.topics.offers"
EVENTS = "com.apsis1.topics.events"
SMS_OFFERS = "com.apsis1.topics.sms-offers"
VIP_NEWS = "com.apsis1.topics.vip-news"
NEWSLETTER = "com.apsis1.consent-lists.newsletter"


async def _profile(api: Api, key: str = "1", **attributes: str) -> None:
    status, _, body = await api.patch_attributes(key, attributes or {"1002": "Åsa"})
    assert status == 204, body


def _assert_problem(answer: tuple[int, object, object], status: int, detail_part: str = "") -> None:
    got, headers, body = answer
    assert got == status, body
    assert headers["Content-Type"].startswith("application/problem+json")  # type: ignore[index]
    assert isinstance(body, dict)
    assert body["status"] == status and body["title"]
    assert detail_part in body["detail"], body["detail"]


async def test_created_updated_and_same_type(api: Api, clock: FakeClock) -> None:
    await _profile(api)
    status, _, body = await api.consent("1", NEWS, source="Shopify")
    assert (status, body) == (201, b"")
    clock.advance(5)
    assert (await api.consent("1", NEWS, "opt-out", reason="Unsubscribed in Shopify"))[0] == 204
    _assert_problem(await api.consent("1", NEWS, "opt-out"), 409, "not supported")
    assert (await api.consent("1", NEWS, "opt-in"))[0] == 204
    _assert_problem(await api.consent("1", NEWS, "opt-in"), 409, "already has consent type opt-in")

    record = api.account.profile_consents(KEYSPACE, "1", SECTION)[(EMAIL, NEWS)]
    assert (record.type, record.reason, record.modified_at) == ("opt-in", "Given in Shopify", clock.now)
    assert record.source == "One API"  # the last write named no source
    # Only accepted writes are logged, with what was sent.
    consent_writes = api.account.writes_of("consent")
    assert len(consent_writes) == 3
    first = consent_writes[0]
    assert first.params == {"keyspace": KEYSPACE, "profile_key": "1", "section": SECTION}
    assert first.summary == {
        "topic_discriminator": NEWS,
        "channel_discriminator": EMAIL,
        "type": "opt-in",
        "reason": "Given in Shopify",
        "source": "Shopify",
    }
    assert "source" not in consent_writes[1].summary
    assert api.account.request_count(status=409) == 2


async def test_get_lists_consents_with_source_reason_and_time(api: Api, clock: FakeClock) -> None:
    await _profile(api)
    await api.consent("1", NEWS, source="Shopify")
    clock.advance(1)
    await api.consent("1", OFFERS, "opt-out", reason="Said no")
    await api.consent("1", NEWS, channel=SMS)  # a topic of every channel, on SMS too
    await api.consent("1", SMS_OFFERS, channel=SMS)
    status, _, body = await api.consents("1")
    assert status == 200
    assert body["suppressions"] == []
    items = {(i["channel_discriminator"], i["topic_discriminator"]): i for i in body["items"]}
    assert set(items) == {(EMAIL, NEWS), (EMAIL, OFFERS), (SMS, NEWS), (SMS, SMS_OFFERS)}
    news = items[(EMAIL, NEWS)]
    assert news == {
        "topic_discriminator": NEWS,
        "channel_discriminator": EMAIL,
        "type": "opt-in",
        "source": "Shopify",
        "reason": "Given in Shopify",
        "modified_at": news["modified_at"],
    }
    assert news["modified_at"].endswith("Z")
    assert datetime.fromisoformat(news["modified_at"]).timestamp() == clock.now - 1
    assert items[(EMAIL, OFFERS)]["source"] == "One API"
    assert items[(EMAIL, OFFERS)]["reason"] == "Said no"

    _, _, opted_in = await api.consents("1", consent_types=("opt-in", "confirmed-opt-in"))
    got = {(i["channel_discriminator"], i["topic_discriminator"]) for i in opted_in["items"]}
    assert got == {(EMAIL, NEWS), (SMS, NEWS), (SMS, SMS_OFFERS)}
    _, _, opted_out = await api.consents("1", consent_types=("opt-out",))
    assert [i["topic_discriminator"] for i in opted_out["items"]] == [OFFERS]
    _assert_problem(await api.consents("1", consent_types=("maybe",)), 400, "consent_types")

    assert api.account.opted_in_topics(KEYSPACE, "1", SECTION, "email") == [NEWS]
    assert api.account.opted_in_topics(KEYSPACE, "1", SECTION, SMS) == [NEWS, SMS_OFFERS]
    assert api.account.opted_in_topics(KEYSPACE, "1", VIP_SECTION, "email") == []


async def test_consents_belong_to_the_profile_and_section(api: Api) -> None:
    await _profile(api, "1")
    await _profile(api, "2")
    await api.patch_attributes("1", {"3001": "a@example.com"}, section=VIP_SECTION)
    await api.consent("1", NEWS)
    await api.consent("1", VIP_NEWS, section=VIP_SECTION)
    assert (await api.consents("2"))[2]["items"] == []
    assert [i["topic_discriminator"] for i in (await api.consents("1", section=VIP_SECTION))[2]["items"]] == [
        VIP_NEWS
    ]
    assert api.account.profile_consents(KEYSPACE, "2", SECTION) == {}
    # The email attribute changes: the consents stay on the profile.
    await api.patch_attributes("1", {"1001": "new@example.com"})
    assert api.account.opted_in_topics(KEYSPACE, "1", SECTION, "email") == [NEWS]


async def test_post_validation(api: Api) -> None:
    api.account.set_rate_limits(profile=None)  # many calls on one profile key
    await _profile(api)
    for kind in ("confirmed-opt-in", "pending-opt-in"):
        _assert_problem(await api.consent("1", NEWS, kind), 400, "not supported by the API yet")
    _assert_problem(await api.consent("1", NEWS, "maybe"), 400, "opt-in or opt-out")
    _assert_problem(await api.consent("1", NEWS, reason=None), 400, "reason is required")
    _assert_problem(await api.consent("1", NEWS, reason=""), 400, "reason is required")
    _assert_problem(await api.consent("1", NEWS, channel="com.apsis1.channels.pigeon"), 400, "channel")
    # A channel-specific topic on the other channel.
    _assert_problem(await api.consent("1", SMS_OFFERS), 400, f"specific to channel {SMS}")
    await api.patch_attributes("1", {"3001": "a@example.com"}, section=VIP_SECTION)
    _assert_problem(await api.consent("1", VIP_NEWS, channel=SMS, section=VIP_SECTION), 400, "specific")
    # A topic that is not a topic of the section, an unknown topic.
    _assert_problem(await api.consent("1", VIP_NEWS), 404, f"does not exist in section {SECTION}")
    _assert_problem(await api.consent("1", "com.apsis1.topics.nope"), 404, "topic")
    # The profile must exist: consent does not create it.
    _assert_problem(await api.consent("nobody", NEWS), 404, "profile nobody does not exist")
    assert api.account.profile(KEYSPACE, "nobody") is None
    _assert_problem(await api.consent("1", NEWS, section="com.apsis1.sections.nope"), 404, "section")
    _assert_problem(await api.consent("1", NEWS, keyspace="com.apsis1.keyspaces.nope"), 404, "keyspace")
    status, _, _ = await api.call(
        "POST", f"/v2/audience/keyspaces/{KEYSPACE}/profiles/1/sections/{SECTION}/consents", data=b"[1]"
    )
    assert status == 400
    assert api.account.writes_of("consent") == []
    assert api.account.profile_consents(KEYSPACE, "1", SECTION) == {}


async def test_body_over_100_kb_is_413(api: Api) -> None:
    await _profile(api)
    _assert_problem(await api.consent("1", NEWS, reason="x" * 102_400), 413, "over the limit")
    assert api.account.writes_of("consent") == []


async def test_get_of_missing_profile_is_404(api: Api) -> None:
    _assert_problem(await api.consents("nobody"), 404, "profile nobody does not exist")
    _assert_problem(await api.consents("1", section="com.apsis1.sections.nope"), 404, "section")


async def test_keyspace_without_manage_subscriptions_refuses_consent(api: Api) -> None:
    await _profile(api)
    keyspaces = (await api.call("GET", "/audience/keyspaces"))[2]["items"]
    assert {k["discriminator"]: k["manage_subscriptions"] for k in keyspaces}[KEYSPACE] is True
    api.account.set_manage_subscriptions(KEYSPACE, False)
    keyspaces = (await api.call("GET", "/audience/keyspaces"))[2]["items"]
    assert {k["discriminator"]: k["manage_subscriptions"] for k in keyspaces}[KEYSPACE] is False
    _assert_problem(await api.consent("1", NEWS), 403, "manage_subscriptions is false")
    assert (await api.consents("1"))[0] == 200  # reading is allowed
    assert api.account.writes_of("consent") == []
    # Over HTTP, as `make run` and the reliability suite do.
    path = f"/_sandbox/keyspaces/{KEYSPACE}"
    status, _, body = await api.call("PATCH", path, json={"manage_subscriptions": True}, auth=False)
    assert status == 200 and body["manage_subscriptions"] is True
    assert (await api.consent("1", NEWS))[0] == 201
    assert (await api.call("PATCH", path, json={"manage_subscriptions": "no"}, auth=False))[0] == 400
    status, _, _ = await api.call(
        "PATCH", "/_sandbox/keyspaces/nope", json={"manage_subscriptions": False}, auth=False
    )
    assert status == 404
    with pytest.raises(KeyError):
        api.account.set_manage_subscriptions("nope", False)


async def test_suppressions_of_the_profiles_addresses(api: Api, clock: FakeClock) -> None:
    account = api.account
    await _profile(api, "1", **{"1001": "Asa@Example.com", "1004": "+46701234567"})
    await api.consent("1", NEWS)
    assert (await api.consents("1"))[2]["suppressions"] == []

    account.suppress("asa@example.com")  # email addresses match without case
    clock.advance(1)
    account.suppress("+46701234567")
    account.suppress("other@example.com", "email")
    assert account.suppressed("ASA@example.com") and not account.suppressed("nobody@example.com")
    status, _, body = await api.consents("1")
    assert status == 200
    assert [i["topic_discriminator"] for i in body["items"]] == [NEWS]  # consent stays as it is
    assert body["suppressions"] == [
        {
            "address": "Asa@Example.com",
            "channel_discriminator": EMAIL,
            "suppressed_at": body["suppressions"][0]["suppressed_at"],
        },
        {
            "address": "+46701234567",
            "channel_discriminator": SMS,
            "suppressed_at": body["suppressions"][1]["suppressed_at"],
        },
    ]
    times = [datetime.fromisoformat(s["suppressed_at"]).timestamp() for s in body["suppressions"]]
    assert times == [clock.now - 1, clock.now]
    # Addresses asked about, each once; unsuppressed ones are not listed.
    _, _, body = await api.consents(
        "1", suppression_addresses=("other@example.com", "free@example.com", "asa@example.com")
    )
    assert [s["address"] for s in body["suppressions"]] == [
        "Asa@Example.com",
        "+46701234567",
        "other@example.com",
    ]

    account.unsuppress("ASA@EXAMPLE.COM")
    account.unsuppress("never@example.com")  # nothing to lift: fine
    _, _, body = await api.consents("1")
    assert [s["address"] for s in body["suppressions"]] == ["+46701234567"]
    # A new email attribute: the suppression follows the address, not the profile.
    await api.patch_attributes("1", {"1001": "other@example.com", "1004": None})
    _, _, body = await api.consents("1")
    assert [s["address"] for s in body["suppressions"]] == ["other@example.com"]


async def test_profile_key_that_looks_like_an_address_is_checked(api: Api) -> None:
    api.account.add_keyspace("com.apsis1.keyspaces.email2")
    key = "jo@example.com"
    await api.patch_attributes(key, {"1002": "Jo"}, keyspace="com.apsis1.keyspaces.email2")
    api.account.suppress(key)
    _, _, body = await api.consents(key, keyspace="com.apsis1.keyspaces.email2")
    assert [(s["address"], s["channel_discriminator"]) for s in body["suppressions"]] == [(key, EMAIL)]


def test_suppress_needs_a_channel_for_an_unknown_shape(account: Account) -> None:
    with pytest.raises(ValueError, match="give the channel"):
        account.suppress("not an address")
    with pytest.raises(ValueError, match="unknown channel"):
        account.suppress("a@example.com", "pigeon")
    account.suppress("0701234567", "sms")
    assert account.suppressed("0701234567")


async def test_consent_given_in_apsis(api: Api, clock: FakeClock) -> None:
    account = api.account
    await _profile(api)
    account.set_consent(KEYSPACE, "1", SECTION, "email", NEWS, "confirmed-opt-in")
    record = account.profile_consents(KEYSPACE, "1", SECTION)[(EMAIL, NEWS)]
    assert (record.type, record.source, record.reason, record.modified_at) == (
        "confirmed-opt-in",
        "APSIS One",
        "Given in APSIS",
        clock.now,
    )
    assert account.writes_of("consent") == []
    assert account.opted_in_topics(KEYSPACE, "1", SECTION, "email") == [NEWS]
    # A confirmed opt-in cannot go back to a plain opt-in; an opt-out is fine.
    _assert_problem(await api.consent("1", NEWS), 409, "from confirmed-opt-in to opt-in")
    assert (await api.consent("1", NEWS, "opt-out"))[0] == 204
    # An unsubscribe link in a message.
    account.set_consent(KEYSPACE, "1", SECTION, SMS, SMS_OFFERS, "opt-out", source="SMS", reason="STOP")
    assert (await api.consent("1", SMS_OFFERS, channel=SMS))[0] == 204
    account.set_consent(KEYSPACE, "1", SECTION, "email", OFFERS, "pending-opt-in")
    assert (await api.consent("1", OFFERS))[0] == 204

    with pytest.raises(KeyError):
        account.set_consent(KEYSPACE, "nobody", SECTION, "email", NEWS, "opt-in")
    assert account.profile(KEYSPACE, "nobody") is None
    with pytest.raises(KeyError):
        account.set_consent(KEYSPACE, "1", SECTION, "email", VIP_NEWS, "opt-in")
    with pytest.raises(KeyError):
        account.set_consent(KEYSPACE, "1", "com.apsis1.sections.nope", "email", NEWS, "opt-in")
    with pytest.raises(ValueError, match="specific to channel"):
        account.set_consent(KEYSPACE, "1", SECTION, "email", SMS_OFFERS, "opt-in")
    with pytest.raises(ValueError, match="type"):
        account.set_consent(KEYSPACE, "1", SECTION, "email", NEWS, "maybe")
    with pytest.raises(ValueError, match="channel"):
        account.set_consent(KEYSPACE, "1", SECTION, "pigeon", NEWS, "opt-in")


async def test_delete_removes_the_consents(api: Api) -> None:
    await _profile(api, "42", **{"1001": "a@example.com"})
    await api.consent("42", NEWS)
    api.account.set_consent(KEYSPACE, "42", SECTION, "sms", SMS_OFFERS, "opt-in")
    assert (await api.call("DELETE", f"/audience/keyspaces/{KEYSPACE}/profiles/42"))[0] == 204
    assert api.account.profile_consents(KEYSPACE, "42", SECTION) == {}
    _assert_problem(await api.consents("42"), 404, "does not exist")
    await _profile(api, "42", **{"1001": "a@example.com"})  # the same customer comes back
    assert (await api.consents("42"))[2] == {"items": [], "suppressions": []}
    assert (await api.consent("42", NEWS))[0] == 201  # created afresh
    assert [w.kind for w in api.account.writes] == [
        "attributes",
        "consent",
        "delete",
        "attributes",
        "consent",
    ]


async def test_topics_with_folder_and_channel(api: Api) -> None:
    status, _, body = await api.call("GET", f"/v2/audience/sections/{SECTION}/topics")
    assert status == 200
    assert body["items"] == [
        {
            "discriminator": NEWS,
            "name": "News",
            "folder_discriminator": NEWSLETTER,
            "channel_discriminator": None,
        },
        {
            "discriminator": OFFERS,
            "name": "Offers",
            "folder_discriminator": NEWSLETTER,
            "channel_discriminator": None,
        },
        {
            "discriminator": EVENTS,
            "name": "Events",
            "folder_discriminator": NEWSLETTER,
            "channel_discriminator": None,
        },
        {
            "discriminator": SMS_OFFERS,
            "name": "SMS offers",
            "folder_discriminator": "com.apsis1.consent-lists.sms",
            "channel_discriminator": SMS,
        },
    ]
    _, _, vip = await api.call("GET", f"/v2/audience/sections/{VIP_SECTION}/topics")
    assert [(t["discriminator"], t["channel_discriminator"]) for t in vip["items"]] == [(VIP_NEWS, EMAIL)]
    _assert_problem(await api.call("GET", "/v2/audience/sections/nope/topics"), 404, "section nope")


CONSENT_1_CALLS = [
    ("POST", f"/audience/channels/{EMAIL}/addresses/a@example.com/consents"),
    ("GET", f"/audience/channels/{EMAIL}/addresses/a@example.com/consents"),
    (
        "GET",
        f"/audience/channels/{EMAIL}/addresses/a@example.com/consents"
        f"/sections/{SECTION}/consent-lists/{NEWSLETTER}/evaluations",
    ),
    ("GET", f"/audience/sections/{SECTION}/consent-lists"),
    ("GET", f"/audience/sections/{SECTION}/consent-lists/{NEWSLETTER}/topics"),
    ("POST", f"/audience/keyspaces/{KEYSPACE}/profiles/1/sections/{SECTION}/subscriptions"),
    ("DELETE", f"/audience/keyspaces/{KEYSPACE}/profiles/1/sections/{SECTION}/subscriptions"),
    ("GET", f"/audience/keyspaces/{KEYSPACE}/profiles/1/sections/{SECTION}/subscriptions"),
]


async def test_consent_1_endpoints_are_blocked(api: Api) -> None:
    await _profile(api)
    assert api.account.consent_1_requests() == 0
    for method, path in CONSENT_1_CALLS:
        status, headers, body = await api.call(method, path, json={"type": "opt-in"})
        assert status == 403, (method, path)
        assert headers["Content-Type"].startswith("application/problem+json")
        assert {k: body[k] for k in ("title", "status", "detail")} == {
            "title": "Forbidden",
            "status": 403,
            "detail": "Consent 1.0 endpoints are blocked for this account: it has been migrated to "
            "Consent 2.0 (use /v2/.../consents)",
        }
    assert api.account.consent_1_requests() == len(CONSENT_1_CALLS)
    assert api.account.request_count(status=403) == len(CONSENT_1_CALLS)
    route = "/audience/sections/{section}/consent-lists"
    assert api.account.request_count(method="GET", route=route, status=403) == 1
    assert (
        api.account.writes_of("consent") == [] and api.account.profile_consents(KEYSPACE, "1", SECTION) == {}
    )
    # Still an API route: no token, no answer.
    api.token = ""
    assert (await api.call("GET", f"/audience/sections/{SECTION}/consent-lists"))[0] == 401


async def test_control_routes_for_consents_and_suppressions(api: Api) -> None:
    await _profile(api, "7", **{"1001": "c@example.com"})
    base = f"/_sandbox/consents/{KEYSPACE}/7/{SECTION}"
    status, _, body = await api.call(
        "POST",
        base,
        json={"channel": "email", "topic": NEWS, "type": "opt-out", "reason": "Link"},
        auth=False,
    )
    assert status == 200
    assert (body["type"], body["source"], body["reason"]) == ("opt-out", "APSIS One", "Link")
    await api.call("POST", base, json={"channel": "sms", "topic": SMS_OFFERS, "type": "opt-in"}, auth=False)
    _, _, body = await api.call("GET", base, auth=False)
    assert [(i["channel_discriminator"], i["topic_discriminator"], i["type"]) for i in body["items"]] == [
        (EMAIL, NEWS, "opt-out"),
        (SMS, SMS_OFFERS, "opt-in"),
    ]
    assert body["opted_in"] == {SMS: [SMS_OFFERS]}
    assert api.account.writes_of("consent") == []
    bad = {"channel": "email", "topic": SMS_OFFERS, "type": "opt-in"}
    assert (await api.call("POST", base, json=bad, auth=False))[0] == 400
    missing = f"/_sandbox/consents/{KEYSPACE}/nobody/{SECTION}"
    assert (await api.call("POST", missing, json={**bad, "topic": NEWS}, auth=False))[0] == 404
    assert (await api.call("POST", base, json={"channel": "email"}, auth=False))[0] == 400

    status, _, _ = await api.call(
        "POST", "/_sandbox/suppressions", json={"address": "c@example.com"}, auth=False
    )
    assert status == 200 and api.account.suppressed("c@example.com")
    bad_address = {"address": "nope"}
    assert (await api.call("POST", "/_sandbox/suppressions", json=bad_address, auth=False))[0] == 400
    _, _, listing = await api.call("GET", "/_sandbox/suppressions", auth=False)
    assert [(s["address"], s["channel_discriminator"]) for s in listing["items"]] == [
        ("c@example.com", EMAIL)
    ]
    _, _, one = await api.call("GET", "/_sandbox/suppressions/C@example.com", auth=False)
    assert one == {"address": "C@example.com", "suppressed": True}
    assert (await api.consents("7"))[2]["suppressions"][0]["address"] == "c@example.com"
    assert (await api.call("DELETE", "/_sandbox/suppressions/c@example.com", auth=False))[0] == 200
    assert not api.account.suppressed("c@example.com")

    assert (await api.call("POST", "/_sandbox/reset", auth=False))[0] == 200
    api.account.suppress("+46700000000")
    api.account.reset_state()
    assert not api.account.suppressed("+46700000000")
    assert api.account.summary()["profiles_with_consents"] == 0
