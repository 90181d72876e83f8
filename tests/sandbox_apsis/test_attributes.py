"""PATCH/GET profile attributes: merge-patch semantics and validation."""

from __future__ import annotations

import orjson

from sandbox.apsis import KEYSPACE, SECTION, VIP_SECTION
from tests.sandbox_apsis.conftest import Api


async def test_merge_patch_sets_overwrites_clears_and_keeps(api: Api) -> None:
    assert api.account.profile(KEYSPACE, "42") is None
    status, _, body = await api.patch_attributes("42", {"1001": "a@example.com", "1002": "Åsa", "1008": 3})
    assert (status, body) == (204, b"")
    assert (await api.get_attributes("42"))[2] == {"1001": "a@example.com", "1002": "Åsa", "1008": 3}

    status, _, _ = await api.patch_attributes("42", {"1002": "Björn", "1008": None, "1009": 12.5})
    assert status == 204
    status, _, attrs = await api.get_attributes("42")
    assert status == 200
    assert attrs == {"1001": "a@example.com", "1002": "Björn", "1009": 12.5}

    # Clearing something never set, and an empty patch, are fine and change nothing.
    assert (await api.patch_attributes("42", {"1005": None}))[0] == 204
    assert (await api.patch_attributes("42", {}))[0] == 204
    profile = api.account.profile(KEYSPACE, "42")
    assert profile is not None
    assert profile.attributes == {SECTION: {"1001": "a@example.com", "1002": "Björn", "1009": 12.5}}


async def test_sections_are_separate(api: Api) -> None:
    assert (await api.patch_attributes("7", {"1001": "x@example.com"}))[0] == 204
    assert (await api.patch_attributes("7", {"3001": "x@example.com"}, section=VIP_SECTION))[0] == 204
    profile = api.account.profile(KEYSPACE, "7")
    assert profile is not None
    assert profile.attributes == {SECTION: {"1001": "x@example.com"}, VIP_SECTION: {"3001": "x@example.com"}}
    # A version of another section is unknown here.
    status, _, body = await api.patch_attributes("7", {"3001": "x"})
    assert status == 400 and "3001" in body["detail"]


async def test_unknown_version_is_400_naming_it(api: Api) -> None:
    status, headers, body = await api.patch_attributes("1", {"1001": "a@example.com", "9999": "x"})
    assert status == 400
    assert headers["Content-Type"].startswith("application/problem+json")
    assert "9999" in body["detail"]
    assert api.account.profile(KEYSPACE, "1") is None  # nothing applied


async def test_deprecated_version_is_400(api: Api) -> None:
    status, _, body = await api.patch_attributes("1", {"901": "a@example.com"})
    assert status == 400
    assert "901" in body["detail"] and "deprecated" in body["detail"]
    api.account.deprecate_version(SECTION, "1003")
    status, _, body = await api.patch_attributes("1", {"1003": "Lindqvist"})
    assert status == 400 and "1003" in body["detail"]


async def test_unknown_section_or_keyspace_is_404(api: Api) -> None:
    status, _, body = await api.patch_attributes("1", {"1001": "a"}, section="com.apsis1.sections.nope")
    assert status == 404 and "com.apsis1.sections.nope" in body["detail"]
    status, _, body = await api.patch_attributes("1", {"1001": "a"}, keyspace="com.apsis1.keyspaces.nope")
    assert status == 404 and "com.apsis1.keyspaces.nope" in body["detail"]


async def test_body_over_100_kb_is_413(api: Api) -> None:
    value = "x" * (102_400 - len(b'{"1002":""}'))
    at_limit = orjson.dumps({"1002": value})
    assert len(at_limit) == 102_400
    assert (await api.patch_attributes("1", at_limit))[0] == 204
    over = orjson.dumps({"1002": value + "x"})
    status, headers, body = await api.patch_attributes("1", over)
    assert status == 413
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == 413


async def test_wrong_content_type_is_415(api: Api) -> None:
    path = f"/audience/keyspaces/{KEYSPACE}/profiles/1/sections/{SECTION}/attributes"
    status, _, body = await api.call("PATCH", path, json={"1001": "a@example.com"})  # application/json
    assert status == 415
    assert "merge-patch" in body["detail"]
    assert api.account.profile(KEYSPACE, "1") is None
    status, _, _ = await api.call(
        "PATCH",
        path,
        data=b'{"1002": "a"}',
        headers={"Content-Type": "application/merge-patch+json; charset=utf-8"},
    )
    assert status == 204


async def test_body_must_be_a_json_object(api: Api) -> None:
    assert (await api.patch_attributes("1", b"[1, 2]"))[0] == 400
    assert (await api.patch_attributes("1", b"{nope"))[0] == 400
    assert (await api.patch_attributes("1", b'"text"'))[0] == 400


async def test_get_attributes_of_missing_profile_is_404(api: Api) -> None:
    status, _, body = await api.get_attributes("404")
    assert status == 404
    assert body["status"] == 404


async def test_profile_key_with_reserved_characters(api: Api) -> None:
    assert (await api.patch_attributes("a%2Fb%20c", {"1001": "x@example.com"}))[0] == 204
    assert api.account.profile(KEYSPACE, "a/b c") is not None


async def test_strict_types_when_asked(api: Api) -> None:
    # Off by default: any JSON value is stored.
    assert (await api.patch_attributes("1", {"1008": "seven"}))[0] == 204
    api.account.strict_types = True
    good = {
        "1001": "a@example.com",
        "1008": 7,
        "1009": 12.5,
        "1010": "2024-03-01T10:00:00+01:00",
        "1011": "1990-02-28",
    }
    assert (await api.patch_attributes("1", good))[0] == 204
    bad_values: list[dict[str, object]] = [
        {"1008": "7"},
        {"1008": True},
        {"1009": "12.50"},
        {"1001": 5},
        {"1011": "1990-02-30"},
        {"1010": "soon"},
    ]
    for bad in bad_values:
        status, _, body = await api.patch_attributes("1", bad)
        assert status == 400, bad
        assert next(iter(bad)) in body["detail"]
    assert (await api.patch_attributes("1", {"1008": None}))[0] == 204


async def test_email_and_mobile_attributes_take_addresses(api: Api) -> None:
    api.account.set_rate_limits(profile=None)  # many calls on one profile key
    attributes = (await api.call("GET", f"/audience/sections/{SECTION}/attributes"))[2]["items"]
    current = {
        a["discriminator"]: [v["id"] for v in a["versions"] if v["deprecated_at"] is None] for a in attributes
    }
    assert current["com.apsis1.attributes.email"] == ["1001"]
    assert current["com.apsis1.attributes.mobile"] == ["1004"]
    good = {"1001": "Åsa.Lind+shop@example.co.uk", "1004": "+46701234567"}
    assert (await api.patch_attributes("1", good))[0] == 204
    assert (await api.patch_attributes("1", {"1004": "+12345678"}))[0] == 204  # 8 digits
    assert (await api.patch_attributes("1", {"1004": "+123456789012345"}))[0] == 204  # 15 digits
    bad_values: list[dict[str, object]] = [
        {"1001": "not an email"},
        {"1001": "a@b"},
        {"1001": ""},
        {"1001": 5},
        {"1004": "0701234567"},
        {"1004": "+46 70 123 45 67"},
        {"1004": "+1234567"},
        {"1004": "+1234567890123456"},
        {"1004": 46701234567},
        {"3001": "nope"},  # the email attribute of another section too
    ]
    for bad in bad_values:
        section, other = (VIP_SECTION, "3002") if "3001" in bad else (SECTION, "1002")
        status, headers, body = await api.patch_attributes("1", {other: "Åsa", **bad}, section=section)
        assert status == 400, bad
        assert headers["Content-Type"].startswith("application/problem+json")
        assert next(iter(bad)) in body["detail"]
    # Nothing of a refused patch applied; null clears as ever.
    assert (await api.get_attributes("1"))[2] == {**good, "1004": "+123456789012345"}
    assert (await api.patch_attributes("1", {"1001": None, "1004": None}))[0] == 204
    assert (await api.get_attributes("1"))[2] == {}
