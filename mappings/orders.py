"""Purchase events from a Shopify order (REST `orders/*` webhooks or the Admin API resource).

- One order event and one order-line event per line, for every section the customer is synced
  to that maps event version ids; sections without a version id for a kind get none of it.
- Event time: the order's `processed_at`, else `created_at`, as RFC 3339 UTC.
- Ids are strings (Shopify ids exceed what a JSON number holds exactly); money is a number.
- Product details the order lacks (handle for the URL, image, type, vendor) come in as
  `ProductInfo` looked up by the caller; a missing product leaves those fields null.
- Guest orders (no customer) have no customer profile: `order_customer_id` returns None. When
  the installation keys guests by email (`[shop.orders] guests = "email"`), `guest_profile_key`
  gives their profile key: `guest:` + the trimmed, lower-cased address, in the same keyspace
  (readable in APSIS, one profile per address across orders, never equal to a numeric customer
  id); `guest_sections` are the sections without conditions (conditions read customer fields
  a guest does not have).
- Refunds and cancellations are not events here (an order is sent once, when it happens);
  `is_settled_purchase` says whether a past order is worth sending at all in a backfill.
- Each item has a stable key within its order (`order`, `line:<line item id>`), carried in
  `EventPost.keys` beside the items, so the worker can remember item by item what was sent.
- `batches` splits a profile's items so each request body stays under APSIS's 100 kB; one item
  bigger than that goes alone (APSIS will refuse it, the worker reports it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from mappings.installation import Section, Shop
from mappings.payload_values import parse_id, parse_time
from mappings.snapshot import JSON, PayloadError, iso_utc

MAX_BODY_BYTES = 100_000


@dataclass(frozen=True, slots=True)
class ProductInfo:
    id: int
    handle: str | None = None
    image_url: str | None = None
    product_type: str | None = None
    vendor: str | None = None


@dataclass(frozen=True, slots=True)
class EventItem:
    event_time: str
    version_id: str
    data: Mapping[str, JSON]

    def to_json(self) -> dict[str, Any]:
        return {"event_time": self.event_time, "version_id": self.version_id, "data": dict(self.data)}


@dataclass(frozen=True, slots=True)
class EventPost:
    """`POST .../profiles/{profile_key}/sections/{section}/events` with `{items: [...]}`."""

    section: str
    profile_key: str
    items: tuple[EventItem, ...]
    keys: tuple[str, ...] = ()  # one per item: `order` or `line:<id>` (see `keyed_order_events`)


def order_customer_id(order: Mapping[str, Any]) -> int | None:
    customer = order.get("customer")
    if customer is None:
        return None
    if not isinstance(customer, Mapping) or "id" not in customer:
        raise PayloadError("customer.id", "missing customer id")
    return parse_id(customer["id"], "customer.id")


def order_product_ids(order: Mapping[str, Any]) -> list[int]:
    """The distinct product ids of the order's lines (custom lines have none)."""
    ids: list[int] = []
    for i, line in enumerate(_lines(order)):
        if line.get("product_id") is not None:
            pid = parse_id(line["product_id"], f"line_items[{i}].product_id")
            if pid not in ids:
                ids.append(pid)
    return ids


def order_events(
    section: Section, order: Mapping[str, Any], products: Mapping[int, ProductInfo], shop_url: str
) -> list[EventItem]:
    """The order event then the line events this section maps (none when it maps no versions)."""
    return [item for _, item in keyed_order_events(section, order, products, shop_url)]


def keyed_order_events(
    section: Section, order: Mapping[str, Any], products: Mapping[int, ProductInfo], shop_url: str
) -> list[tuple[str, EventItem]]:
    """`order_events` with each item's key within the order: `order`, `line:<line item id>`
    (`line#<index>` for a line without an id)."""
    if "id" not in order:
        raise PayloadError("id", "missing order id")
    order_id = str(parse_id(order["id"], "id"))
    when = parse_time(order.get("processed_at") or order.get("created_at"), "processed_at")
    if when is None:
        raise PayloadError("created_at", "missing order time")
    event_time = iso_utc(when)
    lines = _lines(order)
    items: list[tuple[str, EventItem]] = []
    if section.events.order:
        data = _order_data(order, order_id, lines)
        items.append(("order", EventItem(event_time, section.events.order, data)))
    if section.events.order_line:
        for i, line in enumerate(lines):
            data = _line_data(line, i, order_id, products, shop_url.rstrip("/"))
            items.append((_line_key(line, i), EventItem(event_time, section.events.order_line, data)))
    return items


def _line_key(line: Mapping[str, Any], i: int) -> str:
    if line.get("id") is None:
        return f"line#{i}"
    return f"line:{parse_id(line['id'], f'line_items[{i}].id')}"


def plan_order(
    shop: Shop,
    sections: Iterable[str],
    customer_id: int | str,
    order: Mapping[str, Any],
    products: Mapping[int, ProductInfo],
    shop_url: str,
) -> list[EventPost]:
    """Event posts for the customer's sections (`SyncState.sections`), split under 100 kB.

    `customer_id` is the profile key: a customer id, or a guest's `guest_profile_key`."""
    wanted = set(sections)
    posts: list[EventPost] = []
    for section in shop.sections:
        if section.discriminator not in wanted:
            continue
        keyed = keyed_order_events(section, order, products, shop_url)
        start = 0
        for batch in batches([item for _, item in keyed]):
            keys = tuple(key for key, _ in keyed[start : start + len(batch)])
            start += len(batch)
            posts.append(EventPost(section.discriminator, str(customer_id), batch, keys))
    return posts


def order_id_of(order: Mapping[str, Any]) -> int:
    if "id" not in order:
        raise PayloadError("id", "missing order id")
    return parse_id(order["id"], "id")


def guest_email(order: Mapping[str, Any]) -> str | None:
    """The address a guest order was placed with (`email`, else `contact_email`), normalised."""
    for key in ("email", "contact_email"):
        value = order.get(key)
        if isinstance(value, str) and "@" in value.strip():
            return value.strip().lower()
    return None


def guest_profile_key(email: str) -> str:
    return f"guest:{email.strip().lower()}"


def guest_sections(shop: Shop) -> list[str]:
    """Sections a guest can belong to: those without conditions ("every customer")."""
    return [s.discriminator for s in shop.sections if not s.conditions]


def guest_attributes(shop: Shop, email: str) -> dict[str, dict[str, JSON]]:
    """Per guest section, the attribute patch that makes the guest profile findable: its email."""
    out: dict[str, dict[str, JSON]] = {}
    for section in shop.sections:
        version = section.attributes.get("email")
        if not section.conditions and version:
            out[section.discriminator] = {version: email}
    return out


# Financial states of a paid order whose money is (at least partly) kept: what `orders/paid`
# would have sent, minus what is known to be undone since.
_SETTLED = frozenset({"paid", "partially_refunded"})


def is_cancelled(order: Mapping[str, Any]) -> bool:
    return bool(order.get("cancelled_at"))


def is_settled_purchase(order: Mapping[str, Any], event_topic: str) -> bool:
    """Whether a past order belongs in APSIS when history is sent: not cancelled, and for
    installations that send on `orders/paid`, paid (fully refunded or voided ones are left out)."""
    if is_cancelled(order):
        return False
    if event_topic == "orders/create":
        return order.get("financial_status") not in ("refunded", "voided")
    return order.get("financial_status") in _SETTLED


def product_info(product: Mapping[str, Any]) -> ProductInfo:
    """`ProductInfo` from a REST product (`products/{id}.json` or a `products/update` body)."""
    if "id" not in product:
        raise PayloadError("id", "missing product id")
    image = product.get("image")
    if not isinstance(image, Mapping):
        images = product.get("images")
        image = images[0] if isinstance(images, list) and images and isinstance(images[0], Mapping) else None
    return ProductInfo(
        id=parse_id(product["id"], "id"),
        handle=_text(product.get("handle")),
        image_url=_text(image.get("src")) if image else None,
        product_type=_text(product.get("product_type")),
        vendor=_text(product.get("vendor")),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def batches(items: Sequence[EventItem], limit: int = MAX_BODY_BYTES) -> list[tuple[EventItem, ...]]:
    """Consecutive groups whose `{"items": [...]}` body is at most `limit` bytes."""
    result: list[tuple[EventItem, ...]] = []
    current: list[EventItem] = []
    size = len(b'{"items":[]}')
    for item in items:
        item_size = len(json.dumps(item.to_json(), separators=(",", ":"), ensure_ascii=False).encode())
        extra = item_size + (1 if current else 0)
        if current and size + extra > limit:
            result.append(tuple(current))
            current, size, extra = [], len(b'{"items":[]}'), item_size
        current.append(item)
        size += extra
    if current:
        result.append(tuple(current))
    return result


# --- data --------------------------------------------------------------------------------------


def _lines(order: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    lines = order.get("line_items") or []
    if not isinstance(lines, list) or not all(isinstance(line, Mapping) for line in lines):
        raise PayloadError("line_items", "must be a list of objects")
    return lines


def _money(value: Any, key: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, Mapping):  # a MoneyBag/price set: the shop currency amount
        return _money(value.get("shop_money", {}).get("amount"), key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PayloadError(key, f"must be an amount, not {type(value).__name__}")
    try:
        return float(Decimal(str(value)))
    except InvalidOperation:
        raise PayloadError(key, f"not an amount: {value!r}") from None


def _shipping(order: Mapping[str, Any]) -> float | None:
    if "total_shipping_price_set" in order:
        return _money(order["total_shipping_price_set"], "total_shipping_price_set")
    lines = order.get("shipping_lines")
    if isinstance(lines, list):
        return sum((_money(line.get("price"), "shipping_lines.price") or 0.0) for line in lines)
    return None


def _quantity(line: Mapping[str, Any], i: int) -> int:
    quantity = line.get("quantity", 0)
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise PayloadError(f"line_items[{i}].quantity", "must be a whole number")
    return quantity


def _order_data(order: Mapping[str, Any], order_id: str, lines: list[Mapping[str, Any]]) -> dict[str, JSON]:
    codes = order.get("discount_codes") or []
    return {
        "order_id": order_id,
        "order_name": order.get("name"),
        "order_number": order.get("order_number"),
        "created_at": iso_utc(t) if (t := parse_time(order.get("created_at"), "created_at")) else None,
        "currency": order.get("currency"),
        "total": _money(order.get("total_price"), "total_price"),
        "subtotal": _money(order.get("subtotal_price"), "subtotal_price"),
        "discounts": _money(order.get("total_discounts"), "total_discounts"),
        "shipping": _shipping(order),
        "tax": _money(order.get("total_tax"), "total_tax"),
        "item_count": sum(_quantity(line, i) for i, line in enumerate(lines)),
        "financial_status": order.get("financial_status"),
        "discount_codes": ", ".join(str(c.get("code")) for c in codes if isinstance(c, Mapping)) or None,
    }


def _line_data(
    line: Mapping[str, Any], i: int, order_id: str, products: Mapping[int, ProductInfo], shop_url: str
) -> dict[str, JSON]:
    key = f"line_items[{i}]"
    pid = parse_id(line["product_id"], f"{key}.product_id") if line.get("product_id") is not None else None
    vid = parse_id(line["variant_id"], f"{key}.variant_id") if line.get("variant_id") is not None else None
    product = products.get(pid) if pid is not None else None
    quantity = _quantity(line, i)
    price = _money(line.get("price"), f"{key}.price")
    discount = _money(line.get("total_discount"), f"{key}.total_discount") or 0.0
    total = None if price is None else float(Decimal(str(price)) * quantity - Decimal(str(discount)))
    handle = product.handle if product else None
    return {
        "order_id": order_id,
        "product_id": str(pid) if pid is not None else None,
        "variant_id": str(vid) if vid is not None else None,
        "sku": line.get("sku") or None,
        "title": line.get("title"),
        "variant_title": line.get("variant_title") or None,
        "quantity": quantity,
        "price": price,
        "line_total": total,
        "vendor": (product.vendor if product else None) or line.get("vendor"),
        "product_type": product.product_type if product else None,
        "product_url": f"{shop_url}/products/{handle}" if handle else None,
        "image_url": product.image_url if product else None,
    }
