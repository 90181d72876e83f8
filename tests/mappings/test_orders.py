from __future__ import annotations

import json
from typing import Any

import pytest

from mappings.installation import EventMapping, Section
from mappings.orders import (
    EventItem,
    ProductInfo,
    batches,
    guest_attributes,
    guest_email,
    guest_profile_key,
    guest_sections,
    is_settled_purchase,
    order_customer_id,
    order_events,
    order_product_ids,
    plan_order,
    product_info,
)
from mappings.snapshot import PayloadError
from tests.mappings import payloads as p

SECTION = Section("sec.main", events=EventMapping(order="2001", order_line="2002"))
PRODUCTS = {632910392: ProductInfo(632910392, "ipod-nano", "https://cdn.example/ipod.png", "Music", "Apple")}
URL = "https://demo-store.example/"


def test_order_and_line_events() -> None:
    items = order_events(SECTION, p.order(), PRODUCTS, URL)
    assert [i.version_id for i in items] == ["2001", "2002", "2002"]
    assert {i.event_time for i in items} == {"2024-11-05T18:00:05Z"}
    assert items[0].data == {
        "order_id": "820982911946154508",
        "order_name": "#9999",
        "order_number": 1234,
        "created_at": "2024-11-05T18:00:00Z",
        "currency": "SEK",
        "total": 403.0,
        "subtotal": 388.0,
        "discounts": 20.0,
        "shipping": 15.0,
        "tax": 77.6,
        "item_count": 4,
        "financial_status": "paid",
        "discount_codes": "TENOFF",
    }
    assert items[1].data == {
        "order_id": "820982911946154508",
        "product_id": "632910392",
        "variant_id": "39072857",
        "sku": "IPOD-1",
        "title": "IPod Nano - 8gb",
        "variant_title": "green",
        "quantity": 2,
        "price": 199.0,
        "line_total": 388.0,
        "vendor": "Apple",
        "product_type": "Music",
        "product_url": "https://demo-store.example/products/ipod-nano",
        "image_url": "https://cdn.example/ipod.png",
    }


def test_unknown_product_and_custom_line() -> None:
    order = p.order(lines=1)
    order["line_items"].append(p.line_item(5, product_id=None, variant_id=None, sku="", vendor="Local"))
    items = order_events(SECTION, order, {}, URL)
    assert items[1].data["product_url"] is None and items[1].data["vendor"] is None
    assert items[2].data["product_id"] is None and items[2].data["vendor"] == "Local"
    assert order_product_ids(order) == [632910392]


@pytest.mark.parametrize(
    ("events", "versions"),
    [(EventMapping(order="1"), ["1"]), (EventMapping(order_line="2"), ["2", "2"]), (EventMapping(), [])],
)
def test_only_mapped_kinds(events: EventMapping, versions: list[str]) -> None:
    section = Section("s", events=events)
    assert [i.version_id for i in order_events(section, p.order(), PRODUCTS, URL)] == versions


def test_shipping_from_shipping_lines_for_older_payloads() -> None:
    order = p.order()
    del order["total_shipping_price_set"]
    order["shipping_lines"] = [{"price": "5.00"}, {"price": "2.50"}]
    assert order_events(SECTION, order, {}, URL)[0].data["shipping"] == 7.5


@pytest.mark.parametrize(
    ("order", "field"),
    [
        ({"created_at": "2024-01-01T00:00:00Z"}, "id"),
        (p.order(processed_at=None, created_at=None), "created_at"),
        (p.order(total_price="free"), "total_price"),
        (p.order(line_items="x"), "line_items"),
        (p.order(line_items=[p.line_item(quantity="2")]), "line_items[0].quantity"),
    ],
)
def test_bad_orders(order: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadError) as info:
        order_events(SECTION, order, {}, URL)
    assert info.value.field == field


def test_customer_of_order() -> None:
    assert order_customer_id(p.order()) == p.CUSTOMER_ID
    assert order_customer_id(p.order(customer=None)) is None
    with pytest.raises(PayloadError, match=r"customer\.id"):
        order_customer_id(p.order(customer={"email": "x"}))


def test_batches_stay_under_the_limit() -> None:
    items = order_events(SECTION, p.order(lines=300), PRODUCTS, URL)
    groups = batches(items)
    assert len(groups) > 1
    assert [i for g in groups for i in g] == items
    for group in groups:
        body = json.dumps({"items": [i.to_json() for i in group]}, separators=(",", ":"), ensure_ascii=False)
        assert len(body.encode()) <= 100_000
    big = EventItem("2024-01-01T00:00:00Z", "1", {"x": "y" * 200})
    assert batches([big, big], limit=100) == [(big,), (big,)]
    assert batches([]) == []


def test_plan_order_per_synced_section() -> None:
    shop = p.demo_shop()
    posts = plan_order(shop, ["com.apsis1.sections.sandbox-vip"], p.CUSTOMER_ID, p.order(), PRODUCTS, URL)
    assert [(post.section, post.profile_key, len(post.items)) for post in posts] == [
        ("com.apsis1.sections.sandbox-vip", str(p.CUSTOMER_ID), 3)
    ]
    assert plan_order(shop, [], p.CUSTOMER_ID, p.order(), PRODUCTS, URL) == []


def test_plan_order_keys_each_item_within_its_order() -> None:
    shop = p.demo_shop()
    order = p.order(lines=300)
    order["line_items"][5].pop("id")
    posts = plan_order(shop, ["com.apsis1.sections.sandbox"], p.CUSTOMER_ID, order, PRODUCTS, URL)
    assert len(posts) > 1
    assert all(len(post.keys) == len(post.items) for post in posts)
    keys = [k for post in posts for k in post.keys]
    assert keys[:3] == ["order", "line:466157050", "line:466157051"]
    assert "line#5" in keys and len(set(keys)) == 301
    items = [i for post in posts for i in post.items]
    assert items == order_events(shop.sections[0], order, PRODUCTS, URL)


def test_guests_by_email() -> None:
    shop = p.demo_shop()
    assert guest_email(p.order(customer=None, email=" Bob@Example.COM ")) == "bob@example.com"
    assert guest_email(p.order(customer=None, email=None, contact_email="c@example.com")) == "c@example.com"
    assert guest_email(p.order(customer=None, email="", contact_email=None)) is None
    assert guest_profile_key("Bob@Example.com") == "guest:bob@example.com"
    assert guest_sections(shop) == ["com.apsis1.sections.sandbox"]  # the VIP section has conditions
    assert guest_attributes(shop, "bob@example.com") == {
        "com.apsis1.sections.sandbox": {"1001": "bob@example.com"}
    }
    posts = plan_order(shop, guest_sections(shop), "guest:bob@example.com", p.order(customer=None), {}, URL)
    assert {post.profile_key for post in posts} == {"guest:bob@example.com"}


@pytest.mark.parametrize(
    ("changes", "topic", "settled"),
    [
        ({}, "orders/paid", True),
        ({"financial_status": "partially_refunded"}, "orders/paid", True),
        ({"financial_status": "pending"}, "orders/paid", False),
        ({"financial_status": "authorized"}, "orders/paid", False),
        ({"financial_status": "refunded"}, "orders/paid", False),
        ({"financial_status": "voided"}, "orders/paid", False),
        ({"cancelled_at": "2024-11-06T00:00:00Z"}, "orders/paid", False),
        ({"financial_status": "pending"}, "orders/create", True),
        ({"financial_status": "refunded"}, "orders/create", False),
        ({"cancelled_at": "2024-11-06T00:00:00Z"}, "orders/create", False),
    ],
)
def test_which_past_orders_a_backfill_sends(changes: dict[str, Any], topic: str, settled: bool) -> None:
    assert is_settled_purchase(p.order(**changes), topic) is settled


def test_product_info_from_a_rest_product() -> None:
    product = {
        "id": 632910392,
        "handle": "ipod-nano",
        "product_type": "Music",
        "vendor": "Apple",
        "image": {"src": "https://cdn.example/main.png"},
        "images": [{"src": "https://cdn.example/first.png"}],
    }
    assert product_info(product) == ProductInfo(
        632910392, "ipod-nano", "https://cdn.example/main.png", "Music", "Apple"
    )
    del product["image"]
    assert product_info(product).image_url == "https://cdn.example/first.png"
    assert product_info({"id": "1", "product_type": "", "images": []}) == ProductInfo(1)
    with pytest.raises(PayloadError, match="id"):
        product_info({"handle": "x"})
