"""Consents per channel and address, and the evaluations GET."""

from __future__ import annotations

from sandbox.apsis import SECTION, VIP_SECTION
from tests.sandbox_apsis.conftest import EMAIL, NEWSLETTER, SMS, Api, FakeClock

NEWS = "com.apsis1.topics.news"
OFFERS = "com.apsis1.topics.offers"
SMS_LIST = "com.apsis1.consent-lists.sms"
SMS_OFFERS = "com.apsis1.topics.sms-offers"


async def test_opt_in_then_opt_out(api: Api, clock: FakeClock) -> None:
    address = "asa+shop@example.com"
    assert (await api.evaluations(address))[2] == {"items": []}
    assert (await api.consent(address, NEWS))[0] == 204
    assert (await api.consent(address, OFFERS))[0] == 204
    status, _, body = await api.evaluations(address)
    assert status == 200
    assert [i["topic_discriminator"] for i in body["items"]] == [NEWS, OFFERS]
    item = body["items"][0]
    assert item["consent_list_discriminator"] == NEWSLETTER
    assert item["section_discriminator"] == SECTION
    assert api.account.opted_in_topics("email", address, SECTION, NEWSLETTER) == [NEWS, OFFERS]

    clock.advance(5)
    assert (await api.consent(address, NEWS, "opt-out"))[0] == 204
    assert [i["topic_discriminator"] for i in (await api.evaluations(address))[2]["items"]] == [OFFERS]
    assert api.account.opted_in_topics(EMAIL, address, SECTION, NEWSLETTER) == [OFFERS]

    records = {r.topic: r for r in api.account.consents("email", address)}
    assert records[NEWS].type == "opt-out"
    assert records[NEWS].opt_in_at == clock.now - 5
    assert records[NEWS].opt_out_at == clock.now
    assert records[OFFERS].type == "opt-in"


async def test_unchanged_consent_answers_200(api: Api) -> None:
    address = "same@example.com"
    assert (await api.consent(address, NEWS))[0] == 204
    assert (await api.consent(address, NEWS))[0] == 200
    assert len(api.account.writes_of("consent")) == 1


async def test_sms_consent_with_e164_address(api: Api) -> None:
    phone = "+46701234567"
    status, _, _ = await api.consent(phone, SMS_OFFERS, channel=SMS, consent_list=SMS_LIST)
    assert status == 204
    status, _, body = await api.evaluations(phone, channel=SMS, consent_list=SMS_LIST)
    assert [i["topic_discriminator"] for i in body["items"]] == [SMS_OFFERS]
    assert api.account.opted_in_topics("sms", phone, SECTION, SMS_LIST) == [SMS_OFFERS]


async def test_addresses_are_separate(api: Api) -> None:
    await api.consent("old@example.com", NEWS)
    assert (await api.evaluations("new@example.com"))[2]["items"] == []
    assert api.account.consents("email", "new@example.com") == []


async def test_validation(api: Api) -> None:
    checks = [
        (await api.consent("a@example.com", NEWS, channel="com.apsis1.channels.pigeon"), 404),
        (await api.consent("not-an-email", NEWS), 400),
        (await api.consent("0701234567", SMS_OFFERS, channel=SMS, consent_list=SMS_LIST), 400),
        (await api.consent("a@example.com", NEWS, section="com.apsis1.sections.nope"), 404),
        (await api.consent("a@example.com", NEWS, consent_list="com.apsis1.consent-lists.nope"), 400),
        (await api.consent("a@example.com", "com.apsis1.topics.nope"), 400),
        (await api.consent("a@example.com", NEWS, "maybe"), 400),
        # opt-in exists only on a topic
        (await api.consent("a@example.com", None, "opt-in", consent_list=None), 400),
        # a topic of another section
        (await api.consent("a@example.com", "com.apsis1.topics.vip-news"), 400),
        # an SMS topic over email
        (await api.consent("a@example.com", SMS_OFFERS, consent_list=SMS_LIST), 400),
    ]
    for (status, headers, body), expected in checks:
        assert status == expected, body
        assert headers["Content-Type"].startswith("application/problem+json")
    assert api.account.writes_of("consent") == []


async def test_opt_out_above_the_topic_wins_over_earlier_opt_ins(api: Api, clock: FakeClock) -> None:
    address = "b@example.com"
    await api.consent(address, NEWS)
    await api.consent(
        address,
        "com.apsis1.topics.vip-news",
        consent_list="com.apsis1.consent-lists.vip",
        section=VIP_SECTION,
    )
    clock.advance(1)
    # Section-level opt-out: no consent list or topic.
    assert (await api.consent(address, None, "opt-out", consent_list=None))[0] == 204
    assert (await api.evaluations(address))[2]["items"] == []
    vip = await api.evaluations(address, section=VIP_SECTION, consent_list="com.apsis1.consent-lists.vip")
    assert len(vip[2]["items"]) == 1  # another section is untouched
    # Account-level opt-out: nothing at all.
    assert (await api.consent(address, None, "opt-out", consent_list=None, section=None))[0] == 204
    vip = await api.evaluations(address, section=VIP_SECTION, consent_list="com.apsis1.consent-lists.vip")
    assert vip[2]["items"] == []


async def test_evaluations_of_unknown_list_or_section_is_404(api: Api) -> None:
    assert (await api.evaluations("a@example.com", consent_list="com.apsis1.consent-lists.nope"))[0] == 404
    assert (await api.evaluations("a@example.com", section="com.apsis1.sections.nope"))[0] == 404
    assert (await api.evaluations("nope", consent_list=NEWSLETTER))[0] == 400
