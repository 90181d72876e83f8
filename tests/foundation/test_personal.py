"""What operators see of a job: the customer's data masked by field name, JSON bodies parsed."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.personal import mask_personal
from sandbox.shopify import Store, serialize_customer

CASES = [
    ({"first_name": "Jane"}, lambda out: out["first_name"].startswith("J***")),
    ({"lastName": "Doe"}, lambda out: out["lastName"].startswith("D***")),
    ({"email": "jane@example.com"}, lambda out: out["email"].startswith("j***@e***.com#")),
    ({"phone": "+46701234567"}, lambda out: out["phone"].startswith("+***67#")),
    (
        {"address1": "Storgatan 1", "zip": "11122", "country_code": "SE"},
        lambda out: out["country_code"] == "SE",
    ),
    (
        {"latitude": 59.3, "id": 42, "tags": "vip"},
        lambda out: out == {"latitude": "***", "id": 42, "tags": "vip"},
    ),
    ({"name": None, "note": ""}, lambda out: out == {"name": None, "note": ""}),
    ({"text": "write to jane@example.com"}, lambda out: "jane@" not in out["text"]),
    ("not json {", lambda out: out == "not json {"),
    ({"browser_ip": "203.0.113.9"}, lambda out: out["browser_ip"].startswith("2***")),
    (
        {"properties": [{"name": "Engraving", "value": "For Jane Doe"}]},
        lambda out: out["properties"][0]["value"].startswith("F***") and "Jane" not in str(out),
    ),
]


@pytest.mark.parametrize(("value", "holds"), CASES)
def test_cases(value: object, holds: object) -> None:
    assert holds(mask_personal(value))  # type: ignore[operator]


def test_short_range_values_keep_no_hash_to_look_up() -> None:
    assert mask_personal({"zip": "12345", "city": "Malmö"}) == {"zip": "1***", "city": "M***"}


STORE = Store(seed=3, size=200)


@given(st.integers(min_value=0, max_value=199))
def test_a_webhook_job_shows_no_personal_value(index: int) -> None:
    customer = STORE.customer(list(STORE.customer_ids())[index])
    assert customer is not None
    body = serialize_customer(customer, "2026-10", for_webhook=True)
    job_args = [{"shop": "s.myshopify.com", "topic": "customers/update", "body": orjson.dumps(body).decode()}]
    masked = mask_personal(job_args)
    shown = orjson.dumps(masked).decode()
    for value in (customer.first_name, customer.last_name, customer.email, customer.phone):
        if value:
            assert value not in shown
    out = masked[0]["body"]
    for address in [out.get("default_address"), *out.get("addresses", [])]:
        if address:
            for field in ("first_name", "last_name", "name", "address1", "city", "zip", "phone"):
                assert address[field] is None or "***" in address[field], (field, address[field])
    assert out["id"] == customer.id and masked[0]["topic"] == "customers/update"  # the rest stays
