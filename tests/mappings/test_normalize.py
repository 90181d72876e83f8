from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from mappings.normalize import (
    customer_id,
    normalize_customer,
    normalize_email_consent_update,
    normalize_sms_consent_update,
    normalize_tags_change,
    normalize_topic,
)
from mappings.normalize_graphql import normalize_bulk_customer
from mappings.snapshot import UNKNOWN, Consent, CustomerSnapshot, PayloadError, TagsChange, resolve
from tests.mappings import payloads as p

CID = p.CUSTOMER_ID


@pytest.mark.parametrize(
    ("payload", "email_state", "sms_state", "tags"),
    [
        (p.rest_2020_07(), "subscribed", UNKNOWN, ("vip", "newsletter")),
        (p.rest_2020_07(accepts_marketing=False), "not_subscribed", UNKNOWN, ("vip", "newsletter")),
        (p.rest_2021_10(), "subscribed", "subscribed", ("vip", "newsletter")),
        (p.rest_2022_04(accepts_marketing=True), "subscribed", "subscribed", ("vip", "newsletter")),
        (p.rest_2024_10(), "subscribed", "subscribed", ("vip", "newsletter")),
        (p.rest_2025_01(), UNKNOWN, UNKNOWN, UNKNOWN),
    ],
    ids=["2020-07", "2020-07-false", "2021-10", "2022-04", "2024-10", "2025-01"],
)
def test_customer_versions(payload: dict[str, Any], email_state: Any, sms_state: Any, tags: Any) -> None:
    s = normalize_customer(payload)
    assert s.id == CID
    assert s.email == "bob@example.com"
    assert s.phone == "+46701234567"
    assert s.first_name == "Bob"
    assert s.state == "enabled"
    assert s.verified_email is True
    assert s.tags == tags
    assert isinstance(s.updated_at, datetime) and s.updated_at.tzinfo is not None
    assert resolve(s, "email_marketing_consent.state") == email_state
    assert resolve(s, "sms_marketing_consent.state") == sms_state
    assert resolve(s, "default_address.country_code") == "SE"
    assert resolve(s, "note") == "VIP since 2019"


def test_2020_07_legacy_consent_details() -> None:
    s = normalize_customer(p.rest_2020_07())
    assert s.email_marketing_consent == Consent(
        "subscribed", "single_opt_in", datetime(2020, 6, 1, 14, 0, 5, tzinfo=UTC)
    )
    assert s.orders_count == 3
    assert s.total_spent == Decimal("199.65")
    assert "accepts_marketing" not in s.raw


def test_email_marketing_consent_wins_over_accepts_marketing() -> None:
    payload = p.rest_2022_04(
        accepts_marketing=True,
        email_marketing_consent={"state": "unsubscribed", "opt_in_level": None, "consent_updated_at": None},
    )
    assert resolve(normalize_customer(payload), "email_marketing_consent.state") == "unsubscribed"


def test_fields_left_out_are_unknown_not_empty() -> None:
    payload = p.rest_2025_01()
    del payload["orders_count"], payload["total_spent"]
    s = normalize_customer(payload)
    assert s.orders_count is UNKNOWN and s.total_spent is UNKNOWN
    assert {"tags", "email_marketing_consent", "sms_marketing_consent"}.isdisjoint(s.known_fields())


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"email": None}, "email", None),
        ({"email": "  "}, "email", None),
        ({"phone": None}, "phone", None),
        ({"tags": ""}, "tags", ()),
        ({"tags": None}, "tags", ()),
        ({"tags": "a, b,,a , c"}, "tags", ("a", "b", "c")),
        ({"default_address": None}, "default_address", None),
        ({"total_spent": "0.00"}, "total_spent", Decimal("0.00")),
        ({"orders_count": "7"}, "orders_count", 7),
        ({"state": "DISABLED"}, "state", "disabled"),
        ({"id": str(CID)}, "id", CID),
        ({"id": p.GID}, "id", CID),
        ({"accepts_marketing": None}, "email_marketing_consent", None),
        ({"updated_at": "2021-03-01T12:00:00"}, "updated_at", datetime(2021, 3, 1, 12, tzinfo=UTC)),
    ],
)
def test_customer_field_forms(overrides: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(normalize_customer(p.rest_2020_07(**overrides)), field) == expected


def test_wrapped_admin_api_resource() -> None:
    assert normalize_customer({"customer": p.rest_2024_10()}).id == CID


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "x@y.z"}, "id"),
        (p.rest_2024_10(id=True), "id"),
        (p.rest_2024_10(id="abc"), "id"),
        (p.rest_2024_10(id=-4), "id"),
        (p.rest_2024_10(id=1.5), "id"),
        (p.rest_2024_10(email=42), "email"),
        (p.rest_2024_10(tags=7), "tags"),
        (p.rest_2024_10(tags=["a", 1]), "tags"),
        (p.rest_2024_10(orders_count="many"), "orders_count"),
        (p.rest_2024_10(total_spent="lots"), "total_spent"),
        (p.rest_2024_10(total_spent="NaN"), "total_spent"),
        (p.rest_2024_10(updated_at="yesterday"), "updated_at"),
        (p.rest_2024_10(updated_at=5), "updated_at"),
        (p.rest_2024_10(verified_email="yes"), "verified_email"),
        (p.rest_2024_10(addresses="Main St"), "addresses"),
        (p.rest_2024_10(default_address=[1]), "default_address"),
        (p.rest_2024_10(email_marketing_consent={"state": "maybe"}), "email_marketing_consent.state"),
        (p.rest_2024_10(email_marketing_consent={"opt_in_level": None}), "email_marketing_consent.state"),
        (p.rest_2024_10(sms_marketing_consent="yes"), "sms_marketing_consent"),
    ],
)
def test_bad_customer_payloads_name_the_field(payload: Any, field: str) -> None:
    with pytest.raises(PayloadError) as info:
        normalize_customer(payload)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_not_an_object() -> None:
    with pytest.raises(PayloadError, match="payload: must be an object"):
        normalize_customer([1, 2])


@pytest.mark.parametrize(
    "state", ["subscribed", "not_subscribed", "pending", "unsubscribed", "redacted", "invalid"]
)
def test_email_consent_topic(state: str) -> None:
    s = normalize_email_consent_update(p.email_consent_topic(state))
    assert s.id == CID
    assert s.email == "bob@example.com"
    assert isinstance(s.email_marketing_consent, Consent)
    assert s.email_marketing_consent.state == state
    assert s.email_marketing_consent.updated_at == datetime(2025, 2, 2, 10, tzinfo=UTC)
    assert s.known_fields() == {"id", "email", "email_marketing_consent"}


@pytest.mark.parametrize("state", ["subscribed", "not_subscribed", "pending", "unsubscribed", "redacted"])
def test_sms_consent_topic(state: str) -> None:
    s = normalize_sms_consent_update(p.sms_consent_topic(state))
    assert s.phone == "+46701234567"
    assert isinstance(s.sms_marketing_consent, Consent)
    assert s.sms_marketing_consent.state == state
    assert s.known_fields() == {"id", "phone", "sms_marketing_consent"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email_address": "a@b.c", "email_marketing_consent": None}, "customer_id"),
        ({"customer_id": CID, "email_address": "a@b.c"}, "email_marketing_consent"),
        ({"customer_id": "x", "email_marketing_consent": None}, "customer_id"),
    ],
)
def test_bad_email_consent_topic(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadError) as info:
        normalize_email_consent_update(payload)
    assert info.value.field == field


def test_bad_sms_consent_topic() -> None:
    with pytest.raises(PayloadError) as info:
        normalize_sms_consent_update({"phone": "+4670", "sms_marketing_consent": None})
    assert info.value.field == "id"


@pytest.mark.parametrize(
    ("topic", "payload", "added", "removed"),
    [
        ("customer.tags_added", p.tags_topic(["vip", "gold"]), ("vip", "gold"), ()),
        ("customer.tags_removed", p.tags_topic(["vip"]), (), ("vip",)),
        ("customer.tags_added", {**p.tags_topic([]), "tags": "vip, gold"}, ("vip", "gold"), ()),
        ("customer.tags_added", {"customer_id": CID, "tags": ["x"]}, ("x",), ()),
    ],
)
def test_tags_topics(
    topic: str, payload: dict[str, Any], added: tuple[str, ...], removed: tuple[str, ...]
) -> None:
    change = normalize_tags_change(topic, payload)
    assert change.customer_id == CID
    assert (change.added, change.removed) == (added, removed)


def test_tags_topic_errors() -> None:
    with pytest.raises(PayloadError, match="customerId"):
        normalize_tags_change("customer.tags_added", {"tags": ["a"]})
    with pytest.raises(PayloadError, match="tags"):
        normalize_tags_change("customer.tags_added", {"customerId": p.GID})
    with pytest.raises(PayloadError, match="topic"):
        normalize_tags_change("customers/update", p.tags_topic(["a"]))


@pytest.mark.parametrize(
    ("tags", "change", "expected"),
    [
        (("a", "b"), TagsChange(1, added=("c",)), ("a", "b", "c")),
        (("a", "b"), TagsChange(1, added=("A",)), ("a", "b")),
        (("a", "b"), TagsChange(1, removed=("A",)), ("b",)),
        ((), TagsChange(1, removed=("a",)), ()),
        (UNKNOWN, TagsChange(1, added=("a",)), UNKNOWN),
    ],
)
def test_tags_change_apply(tags: Any, change: TagsChange, expected: Any) -> None:
    assert change.apply(tags) == expected


@pytest.mark.parametrize("line", [p.bulk_line(), p.bulk_line_v2()], ids=["bulk", "bulk-v2"])
def test_bulk_lines(line: dict[str, Any]) -> None:
    s = normalize_bulk_customer(line)
    assert s.id == CID
    assert s.email == "bob@example.com"
    assert s.phone == "+46701234567"
    assert s.tags == ("vip", "newsletter")
    assert s.state == "enabled"
    assert s.orders_count == 3
    assert s.total_spent == Decimal("199.65") and s.currency == "SEK"
    assert resolve(s, "default_address.country_code") == "SE"
    assert resolve(s, "default_address.id") == 1053317290
    assert resolve(s, "email_marketing_consent.state") == "subscribed"
    assert resolve(s, "note") == "VIP since 2019"
    assert s.updated_at == datetime(2024, 11, 5, 19, tzinfo=UTC)


def test_bulk_v2_sms_state() -> None:
    assert resolve(normalize_bulk_customer(p.bulk_line_v2()), "sms_marketing_consent.state") == "unsubscribed"


def test_bulk_rest_and_webhook_agree() -> None:
    """A full sync from a bulk export and a 2024-10 webhook give the same typed values."""
    bulk = normalize_bulk_customer(p.bulk_line())
    rest = normalize_customer(p.rest_2024_10())
    for name in (
        "id",
        "email",
        "phone",
        "first_name",
        "tags",
        "state",
        "orders_count",
        "total_spent",
        "updated_at",
    ):
        assert getattr(bulk, name) == getattr(rest, name), name


def test_bulk_child_line_and_missing_id() -> None:
    with pytest.raises(PayloadError, match="__parentId"):
        normalize_bulk_customer({"id": "gid://shopify/Order/1", "__parentId": p.GID})
    with pytest.raises(PayloadError, match="id"):
        normalize_bulk_customer({"email": "a@b.c"})
    with pytest.raises(PayloadError, match="marketingState"):
        normalize_bulk_customer(p.bulk_line(emailMarketingConsent={"marketingState": "MAYBE"}))


@pytest.mark.parametrize(
    ("topic", "payload", "kind"),
    [
        ("customers/create", p.rest_2024_10(), CustomerSnapshot),
        ("customers/update", p.rest_2025_01(), CustomerSnapshot),
        ("customers/disable", p.rest_2020_07(), CustomerSnapshot),
        ("customers_email_marketing_consent/update", p.email_consent_topic(), CustomerSnapshot),
        ("customers_marketing_consent/update", p.sms_consent_topic(), CustomerSnapshot),
        ("customer.tags_added", p.tags_topic(["a"]), TagsChange),
        ("customer.tags_removed", p.tags_topic(["a"]), TagsChange),
    ],
)
def test_normalize_topic(topic: str, payload: dict[str, Any], kind: type) -> None:
    assert isinstance(normalize_topic(topic, payload), kind)


def test_normalize_topic_rejects_other_topics() -> None:
    with pytest.raises(PayloadError, match="topic"):
        normalize_topic("orders/paid", {"id": 1})


@pytest.mark.parametrize(
    "payload",
    [
        {"id": CID},
        {"customer_id": CID},
        {"customerId": p.GID},
        {"shop_id": 1, "shop_domain": "x", "customer": {"id": CID, "email": "a@b.c"}, "orders_to_redact": []},
    ],
)
def test_customer_id(payload: dict[str, Any]) -> None:
    assert customer_id(payload) == CID


def test_customer_id_missing() -> None:
    with pytest.raises(PayloadError, match="id"):
        customer_id({"shop_id": 1})


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (p.rest_2020_07(), True),
        (p.rest_2020_07(accepts_marketing=False), False),
        (p.rest_2024_10(), True),
        (p.rest_2024_10(email_marketing_consent={"state": "pending", "opt_in_level": None}), False),
        (p.rest_2024_10(email_marketing_consent=None), None),
        (p.rest_2025_01(), UNKNOWN),
    ],
)
def test_legacy_accepts_marketing_path_on_every_version(payload: dict[str, Any], expected: Any) -> None:
    assert resolve(normalize_customer(payload), "accepts_marketing") == expected


def test_absent_default_address_with_an_address_list_is_known_empty() -> None:
    from mappings.normalize import normalize_customer

    no_address = normalize_customer({"id": 1, "addresses": []})
    assert no_address.default_address is None
    with_default = normalize_customer({"id": 1, "addresses": [{"id": 5, "city": "Oslo", "default": True}]})
    address = with_default.default_address
    assert address is not None and address is not UNKNOWN and address["city"] == "Oslo"
    trimmed = normalize_customer({"id": 1})
    assert trimmed.default_address is UNKNOWN
