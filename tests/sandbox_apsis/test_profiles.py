"""DELETE a profile, and what the default account defines."""

from __future__ import annotations

import tomllib
from pathlib import Path

from sandbox.apsis import KEYSPACE, SECTION, Account, ApsisSandbox, default_account
from tests.sandbox_apsis.conftest import Api

DEMO = Path(__file__).resolve().parents[2] / "mappings" / "demo.toml"


async def test_delete_removes_profile_and_events(api: Api) -> None:
    await api.patch_attributes("42", {"1001": "a@example.com"})
    event = {"event_time": "2024-10-01T12:00:00Z", "version_id": "2001", "data": {}}
    await api.post_events("42", {"items": [event]})
    await api.consent("42", "com.apsis1.topics.news")
    status, _, body = await api.call("DELETE", f"/audience/keyspaces/{KEYSPACE}/profiles/42")
    assert (status, body) == (204, b"")
    assert api.account.profile(KEYSPACE, "42") is None
    assert (await api.get_attributes("42"))[0] == 404
    # Consents belong to the profile and go with it.
    assert api.account.profile_consents(KEYSPACE, "42", SECTION) == {}
    # Deleting again: 404 (clients treat it as done).
    status, _, body = await api.call("DELETE", f"/audience/keyspaces/{KEYSPACE}/profiles/42")
    assert status == 404 and body["status"] == 404
    assert [w.kind for w in api.account.writes] == ["attributes", "events", "consent", "delete"]
    # A new write creates a fresh profile.
    await api.patch_attributes("42", {"1002": "New"})
    profile = api.account.profile(KEYSPACE, "42")
    assert profile is not None and profile.attributes == {SECTION: {"1002": "New"}} and profile.events == {}


async def test_delete_of_missing_profile_can_answer_204(api: Api) -> None:
    api.account.delete_missing_status = 204
    assert (await api.call("DELETE", f"/audience/keyspaces/{KEYSPACE}/profiles/nobody"))[0] == 204
    assert (await api.call("DELETE", "/audience/keyspaces/com.apsis1.keyspaces.nope/profiles/1"))[0] == 404


def _demo_shop() -> dict[str, object]:
    shop: dict[str, object] = tomllib.loads(DEMO.read_text())["shop"][0]
    return shop


async def test_default_account_serves_everything_demo_toml_references(api: Api) -> None:
    shop = _demo_shop()
    keyspaces = {k["discriminator"] for k in (await api.call("GET", "/audience/keyspaces"))[2]["items"]}
    assert shop["apsis"]["keyspace"] in keyspaces  # type: ignore[index]
    sections = {s["discriminator"] for s in (await api.call("GET", "/audience/sections"))[2]["items"]}
    for section in shop["section"]:  # type: ignore[attr-defined]
        s = section["discriminator"]
        assert s in sections
        attributes = (await api.call("GET", f"/audience/sections/{s}/attributes"))[2]["items"]
        current = {v["id"] for a in attributes for v in a["versions"] if v["deprecated_at"] is None}
        assert set(section["attributes"].values()) <= current
        events = (await api.call("GET", f"/audience/sections/{s}/events"))[2]["items"]
        current_events = {v["id"] for e in events for v in e["versions"] if v["deprecated_at"] is None}
        assert set(section["events"].values()) <= current_events
        topics = (await api.call("GET", f"/v2/audience/sections/{s}/topics"))[2]["items"]
        by_name = {t["discriminator"]: t for t in topics}
        for channel, consent in section["consents"].items():
            for topic in consent["topics"]:
                # The topic exists for the channel (in the folder named like the old consent list).
                if "consent_list" in consent:
                    assert by_name[topic]["folder_discriminator"] == consent["consent_list"]
                assert by_name[topic]["channel_discriminator"] in (None, f"com.apsis1.channels.{channel}")
        # Sections mapping a channel's consent have the attribute it sends to.
        discriminators = {a["discriminator"] for a in attributes}
        for channel in section["consents"]:
            assert f"com.apsis1.attributes.{ {'email': 'email', 'sms': 'mobile'}[channel] }" in discriminators


async def test_default_account_has_deprecated_versions_beside_current_ones(api: Api) -> None:
    attributes = (await api.call("GET", f"/audience/sections/{SECTION}/attributes"))[2]["items"]
    email = next(a for a in attributes if a["discriminator"] == "com.apsis1.attributes.email")
    assert [(v["id"], v["deprecated_at"] is None) for v in email["versions"]] == [
        ("901", False),
        ("1001", True),
    ]
    events = (await api.call("GET", f"/audience/sections/{SECTION}/events"))[2]["items"]
    order = next(e for e in events if e["name"] == "Order")
    assert [v["id"] for v in order["versions"] if v["deprecated_at"] is None] == ["2001"]


async def test_definitions_404s(api: Api) -> None:
    assert (await api.call("GET", "/audience/sections/nope/attributes"))[0] == 404
    assert (await api.call("GET", "/v2/audience/sections/nope/topics"))[0] == 404
    status, headers, body = await api.call("GET", "/audience/nothing")
    assert status == 404 and headers["Content-Type"].startswith("application/problem+json")
    status, headers, body = await api.call("PUT", "/audience/sections")
    assert status == 405 and body["status"] == 405


async def test_credentials_match_demo_toml() -> None:
    apsis = _demo_shop()["apsis"]
    account = default_account()
    assert account.check_client(apsis["client_id"], apsis["client_secret"])  # type: ignore[index]


async def test_server_starts_and_stops_cleanly() -> None:
    import aiohttp

    sandbox = ApsisSandbox(Account())
    async with sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:") and sandbox.port > 0
        async with aiohttp.ClientSession() as session, session.get(sandbox.url + "/_sandbox") as resp:
            assert resp.status == 200
        url = sandbox.url
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(url + "/_sandbox") as resp:
                raise AssertionError(f"still answering: {resp.status}")
        except aiohttp.ClientConnectionError:
            pass


async def test_custom_account_definitions() -> None:
    import aiohttp

    from sandbox.apsis import Attribute, Event, Folder, Section, Topic, Version
    from sandbox.apsis.account import definitions_of

    section = Section(
        "com.apsis1.sections.custom",
        attributes=[
            Attribute(
                "com.apsis1.attributes.x", "X", versions=[Version("1", "2020-01-01T00:00:00Z"), Version("2")]
            )
        ],
        folders=[Folder("f", topics=[Topic("t"), Topic("t-sms", channel="com.apsis1.channels.sms")])],
        events=[Event("e", "E", versions=[Version("10")])],
    )
    account = Account(definitions_of([section], keyspaces=["ks"]), client_id="me", client_secret="secret")
    account.add_keyspace("ks2")
    async with ApsisSandbox(account) as sandbox, aiohttp.ClientSession() as session:
        api = Api(session, sandbox)
        creds = {"grant_type": "client_credentials", "client_id": "me", "client_secret": "secret"}
        status, _, token = await api.call("POST", "/oauth/token", json=creds, auth=False)
        assert status == 200
        api.token = token["access_token"]
        keyspaces = (await api.call("GET", "/audience/keyspaces"))[2]["items"]
        assert [k["discriminator"] for k in keyspaces] == ["ks", "ks2"]
        assert all(k["manage_subscriptions"] for k in keyspaces)
        topics = (await api.call("GET", f"/v2/audience/sections/{section.discriminator}/topics"))[2]["items"]
        assert [
            (t["discriminator"], t["folder_discriminator"], t["channel_discriminator"]) for t in topics
        ] == [
            ("t", "f", None),
            ("t-sms", "f", "com.apsis1.channels.sms"),
        ]
        assert (await api.patch_attributes("p", {"2": "v"}, section=section.discriminator, keyspace="ks2"))[
            0
        ] == 204
        assert (await api.patch_attributes("p", {"1": "v"}, section=section.discriminator, keyspace="ks"))[
            0
        ] == 400
        account.add_section(Section("com.apsis1.sections.late"))
        sections = (await api.call("GET", "/audience/sections"))[2]["items"]
        assert [s["discriminator"] for s in sections] == [
            "com.apsis1.sections.custom",
            "com.apsis1.sections.late",
        ]
    assert account.profile("ks2", "p") is not None
