"""POST profile events: validation and storage."""

from __future__ import annotations

import orjson

from sandbox.apsis import KEYSPACE, SECTION
from tests.sandbox_apsis.conftest import Api

ORDER = {"order_id": "5500000000001", "total": 99.5, "currency": "SEK"}


def event(
    version: str = "2001", time: object = "2024-10-01T12:00:00+02:00", data: object = ORDER
) -> dict[str, object]:
    return {"event_time": time, "version_id": version, "data": data}


async def test_events_are_stored_in_order(api: Api) -> None:
    body = {"items": [event(), event("2002", "2024-10-01T10:00:00.123Z", {"sku": "A-1", "qty": 2})]}
    status, _, answer = await api.post_events("42", body)
    assert (status, answer) == (204, b"")
    assert (await api.post_events("42", {"items": [event("2003")]}))[0] == 204
    profile = api.account.profile(KEYSPACE, "42")
    assert profile is not None
    assert [e["version_id"] for e in profile.events[SECTION]] == ["2001", "2002", "2003"]
    assert profile.events[SECTION][1]["data"] == {"sku": "A-1", "qty": 2}
    writes = api.account.writes_of("events")
    assert [w.summary["count"] for w in writes] == [2, 1]


async def test_bad_event_time_is_400(api: Api) -> None:
    for bad in ["2024-10-01", "2024-10-01T12:00:00", "yesterday", 1727776800, None, "2024-13-01T00:00:00Z"]:
        status, _, body = await api.post_events("1", {"items": [event(time=bad)]})
        assert status == 400, bad
        assert "event_time" in body["detail"]
    assert api.account.profile(KEYSPACE, "1") is None


async def test_unknown_or_deprecated_version_is_400(api: Api) -> None:
    status, _, body = await api.post_events("1", {"items": [event(), event("9999")]})
    assert status == 400 and "9999" in body["detail"]
    status, _, body = await api.post_events("1", {"items": [event("1901")]})
    assert status == 400 and "deprecated" in body["detail"]
    status, _, body = await api.post_events("1", {"items": [event("4001")]})  # the VIP section's
    assert status == 400
    assert api.account.profile(KEYSPACE, "1") is None  # all or nothing


async def test_shape_is_validated(api: Api) -> None:
    for body in [{"items": []}, {}, [], {"items": [event(data=[1])]}, {"items": ["x"]}]:
        assert (await api.post_events("1", body))[0] == 400, body
    assert (await api.post_events("1", b"{nope"))[0] == 400


async def test_body_over_100_kb_is_413(api: Api) -> None:
    big = {"items": [event(data={"blob": "x" * 102_400})]}
    status, _, body = await api.post_events("1", orjson.dumps(big))
    assert status == 413 and body["status"] == 413


async def test_unknown_section_is_404(api: Api) -> None:
    assert (await api.post_events("1", {"items": [event()]}, section="com.apsis1.sections.nope"))[0] == 404
