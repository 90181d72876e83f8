"""The sandbox store's records: immutable dataclasses, version-independent.

Records are frozen so a mutation replaces a record instead of changing it: a snapshot (a bulk
export, a webhook being serialised) can keep the old object while the store moves on. Times are
integer Unix seconds (Shopify's resolution) and money is integer minor units; the serialisers
format both the way each API version shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

EMAIL_STATES = ("subscribed", "not_subscribed", "pending", "unsubscribed", "redacted", "invalid")
SMS_STATES = ("subscribed", "not_subscribed", "pending", "unsubscribed", "redacted")
OPT_IN_LEVELS = ("single_opt_in", "confirmed_opt_in", "unknown")
CUSTOMER_STATES = ("enabled", "disabled", "invited", "declined")


@dataclass(frozen=True, slots=True)
class Address:
    id: int
    first_name: str
    last_name: str
    company: str | None
    address1: str
    address2: str | None
    city: str
    province: str | None
    province_code: str | None
    country: str
    country_code: str
    zip: str
    phone: str | None
    default: bool


@dataclass(frozen=True, slots=True)
class EmailConsent:
    state: str
    opt_in_level: str | None
    consent_updated_at: int | None


@dataclass(frozen=True, slots=True)
class SmsConsent:
    state: str
    opt_in_level: str | None
    consent_updated_at: int | None
    consent_collected_from: str


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    email: str | None
    first_name: str
    last_name: str
    phone: str | None
    tags: tuple[str, ...]
    state: str
    verified_email: bool
    currency: str
    orders_count: int
    total_spent_cents: int
    last_order_id: int | None
    last_order_name: str | None
    note: str | None
    tax_exempt: bool
    created_at: int
    updated_at: int
    addresses: tuple[Address, ...]
    email_consent: EmailConsent | None  # None when the customer has no email address
    sms_consent: SmsConsent | None  # None when the customer has no phone

    @property
    def default_address(self) -> Address | None:
        for address in self.addresses:
            if address.default:
                return address
        return self.addresses[0] if self.addresses else None


@dataclass(frozen=True, slots=True)
class Variant:
    id: int
    product_id: int
    title: str
    sku: str
    price_cents: int
    compare_at_cents: int | None
    position: int
    grams: int
    inventory_quantity: int
    image_id: int | None


@dataclass(frozen=True, slots=True)
class Image:
    id: int
    product_id: int
    position: int
    src: str
    width: int
    height: int
    alt: str | None


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    handle: str
    title: str
    body_html: str
    vendor: str
    product_type: str
    tags: tuple[str, ...]
    status: str
    created_at: int
    updated_at: int
    published_at: int | None
    images: tuple[Image, ...]
    variants: tuple[Variant, ...]


@dataclass(frozen=True, slots=True)
class LineItem:
    id: int
    product_id: int
    variant_id: int
    title: str
    variant_title: str
    sku: str
    vendor: str
    quantity: int
    price_cents: int
    grams: int


@dataclass(frozen=True, slots=True)
class DiscountCode:
    code: str
    amount_cents: int
    type: str  # percentage | fixed_amount | shipping


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    number: int  # order_number; the name is "#<number>"
    customer_id: int | None
    email: str | None
    phone: str | None
    created_at: int
    updated_at: int
    processed_at: int
    closed_at: int | None
    cancelled_at: int | None
    cancel_reason: str | None
    financial_status: str
    fulfillment_status: str | None
    currency: str
    line_items: tuple[LineItem, ...]
    discount_codes: tuple[DiscountCode, ...]
    shipping_cents: int
    tax_cents: int
    shipping_address: Address | None
    billing_address: Address | None
    buyer_accepts_marketing: bool

    @property
    def line_items_cents(self) -> int:
        return sum(item.price_cents * item.quantity for item in self.line_items)

    @property
    def discount_cents(self) -> int:
        return sum(code.amount_cents for code in self.discount_codes)

    @property
    def subtotal_cents(self) -> int:
        return self.line_items_cents - self.discount_cents

    @property
    def total_cents(self) -> int:
        # Prices include VAT (a Nordic shop), so the tax is part of the subtotal already.
        return self.subtotal_cents + self.shipping_cents

    @property
    def name(self) -> str:
        return f"#{self.number}"


@dataclass(frozen=True, slots=True)
class Subscription:
    """A webhook subscription registered through `webhooks.json`."""

    id: int
    address: str
    topic: str
    api_version: str
    created_at: int
    updated_at: int
    fields: tuple[str, ...] = ()
