"""The simulated store: lazily generated data, the mutations that change it, and their webhooks.

State is (seed, size) plus what changed: `overrides` (customer id -> mutated customer),
`deleted` (customer ids), new orders and product edits. Every mutation is an async method that
bumps `updated_at`, then queues one signed webhook per matching subscription and topic, in that
subscription's API version, all sharing the mutation's event id.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sandbox.shopify.data import (
    ADDRESS_BASE,
    ADDRESS_SLOTS,
    COUNTRY_BY_CODE,
    CUSTOMER_BASE,
    ORDER_BASE,
    ORDER_SLOTS,
    SHOP_CURRENCY,
    Generator,
    build_order,
    generate_products,
    mix,
    phone_for,
)
from sandbox.shopify.delivery import Deliverer, DeliveryConfig
from sandbox.shopify.models import (
    EMAIL_STATES,
    OPT_IN_LEVELS,
    SMS_STATES,
    Address,
    Customer,
    EmailConsent,
    Order,
    Product,
    SmsConsent,
    Subscription,
    Variant,
)
from sandbox.shopify.ratelimit import CostBucket, RateLimitConfig
from sandbox.shopify.serialize import (
    delete_payload,
    email_consent_payload,
    serialize_customer,
    serialize_order,
    serialize_product,
    shopify_json,
    sms_consent_payload,
    tags_payload,
)

DEFAULT_SCOPES = ("read_customers", "read_orders", "read_products")
SHOP_ID = 60_000_000_001
PayloadFn = Callable[[str], dict[str, Any]]


class SandboxError(ValueError):
    """A mutation that cannot be done (unknown customer, bad consent state...)."""


def today_anchor(now: float) -> int:
    """Where a store's generated history ends by default: midnight UTC of `now`'s day."""
    return int(now) // 86400 * 86400


class Store:
    """One Shopify store. Defaults match `mappings/demo.toml`."""

    def __init__(
        self,
        *,
        seed: int = 1,
        size: int = 1000,
        domain: str = "demo-store.myshopify.com",
        access_token: str = "shpat_sandbox_token",
        webhook_secret: str = "sandbox-webhook-secret",
        scopes: Iterable[str] = DEFAULT_SCOPES,
        products: int = 200,
        anchor: datetime | None = None,
        rate_limit: RateLimitConfig | None = None,
        delivery: DeliveryConfig | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        name: str = "Demo Store",
    ) -> None:
        self.seed = seed
        self.size = size
        self.domain = domain
        self.name = name
        self.access_token = access_token
        self.webhook_secret = webhook_secret
        self.scopes = set(scopes)
        self.clock = clock
        self.monotonic = monotonic  # drives the throttles; tests may pass a fake clock
        # The generated history ends at the anchor: by default today, midnight UTC.
        anchor_ts = today_anchor(clock()) if anchor is None else int(anchor.timestamp())
        self.anchor = anchor_ts
        self.products: dict[int, Product] = {p.id: p for p in generate_products(seed, products, anchor_ts)}
        self.generator = Generator(seed, size, anchor_ts, tuple(self.products.values()))
        self.next_index = size
        self.overrides: dict[int, Customer] = {}
        self.deleted: set[int] = set()
        self.order_overrides: dict[int, Order] = {}
        self.extra_orders: dict[int, list[int]] = {}
        self.new_order_ids: list[int] = []
        self.subscriptions: dict[int, Subscription] = {}
        self._next_subscription = 1_100_000_000
        self.rate_limit = rate_limit or RateLimitConfig()
        self.graphql_bucket = CostBucket(
            self.rate_limit.graphql_maximum, self.rate_limit.graphql_restore_rate
        )
        self.rng = random.Random(mix(seed, 0xFA17))
        self.deliverer = Deliverer(self, delivery or DeliveryConfig())

    # --- reading --------------------------------------------------------------------------------

    @property
    def granted_scopes(self) -> set[str]:
        """Write scopes imply the read scope of the same resource, as at Shopify."""
        granted = set(self.scopes)
        granted.update("read_" + s[len("write_") :] for s in self.scopes if s.startswith("write_"))
        return granted

    def index_of(self, customer_id: int) -> int | None:
        index = customer_id - CUSTOMER_BASE
        if 0 <= index < self.next_index and customer_id not in self.deleted:
            return index
        return None

    def customer(self, customer_id: int) -> Customer | None:
        if customer_id in self.overrides:
            return self.overrides[customer_id] if customer_id not in self.deleted else None
        index = self.index_of(customer_id)
        if index is None or index >= self.size:
            return None
        return self.generator.customer(index)[0]

    def updated_at(self, customer_id: int) -> int:
        """A customer's `updated_at` without generating it when it was never changed."""
        override = self.overrides.get(customer_id)
        if override is not None:
            return override.updated_at
        return self.generator.base_updated_at(customer_id - CUSTOMER_BASE)

    def created_at(self, customer_id: int) -> int:
        override = self.overrides.get(customer_id)
        if override is not None:
            return override.created_at
        return self.generator.created_at(customer_id - CUSTOMER_BASE)

    def customer_count(self) -> int:
        return self.next_index - len(self.deleted)

    def customer_ids(
        self, after: int | None = None, before: int | None = None, descending: bool = False
    ) -> Iterator[int]:
        """Ids of existing customers strictly between `after` and `before`, in id order."""
        lo = 0 if after is None else max(0, after - CUSTOMER_BASE + 1)
        hi = self.next_index if before is None else min(self.next_index, before - CUSTOMER_BASE)
        deleted = self.deleted
        indices = range(hi - 1, lo - 1, -1) if descending else range(lo, hi)
        for index in indices:
            customer_id = CUSTOMER_BASE + index
            if customer_id not in deleted:
                yield customer_id

    def customers(self) -> Iterator[Customer]:
        for customer_id in self.customer_ids():
            customer = self.customer(customer_id)
            if customer is not None:
                yield customer

    def order(self, order_id: int) -> Order | None:
        if order_id in self.order_overrides:
            return self.order_overrides[order_id]
        slot = order_id - ORDER_BASE
        if slot < 0:
            return None
        index, k = divmod(slot, ORDER_SLOTS)
        if index >= self.size or k >= self.generator.orders_count(index):
            return None
        return self.generator.customer(index)[1][k]

    def orders_of(self, customer_id: int) -> list[int]:
        index = customer_id - CUSTOMER_BASE
        ids: list[int] = []
        if 0 <= index < self.size:
            ids.extend(
                ORDER_BASE + index * ORDER_SLOTS + k for k in range(self.generator.orders_count(index))
            )
        ids.extend(self.extra_orders.get(customer_id, ()))
        return ids

    def order_ids(
        self, after: int | None = None, before: int | None = None, descending: bool = False
    ) -> Iterator[int]:
        """Every order id in id order (base slots, then orders placed in the sandbox)."""
        base = self._base_order_ids(after, before, descending)
        new = [
            i for i in self.new_order_ids if (after is None or i > after) and (before is None or i < before)
        ]
        if descending:
            yield from reversed(new)
            yield from base
        else:
            yield from base
            yield from new

    def _base_order_ids(self, after: int | None, before: int | None, descending: bool) -> Iterator[int]:
        lo = 0 if after is None else max(0, (after - ORDER_BASE + 1) // ORDER_SLOTS)
        hi = self.size if before is None else min(self.size, (before - ORDER_BASE) // ORDER_SLOTS + 1)
        indices = range(hi - 1, lo - 1, -1) if descending else range(lo, hi)
        count = self.generator.orders_count
        for index in indices:
            n = count(index)
            ks = range(n - 1, -1, -1) if descending else range(n)
            for k in ks:
                order_id = ORDER_BASE + index * ORDER_SLOTS + k
                if (after is None or order_id > after) and (before is None or order_id < before):
                    yield order_id

    def product(self, product_id: int) -> Product | None:
        return self.products.get(product_id)

    def now(self) -> int:
        return int(self.clock())

    # --- subscriptions --------------------------------------------------------------------------

    def add_subscription(
        self, topic: str, address: str, api_version: str, fields: Sequence[str] = ()
    ) -> Subscription:
        now = self.now()
        sub = Subscription(self._next_subscription, address, topic, api_version, now, now, tuple(fields))
        self._next_subscription += 1
        self.subscriptions[sub.id] = sub
        return sub

    def update_subscription(self, sub_id: int, **changes: Any) -> Subscription:
        sub = dataclasses.replace(self.subscriptions[sub_id], updated_at=self.now(), **changes)
        self.subscriptions[sub_id] = sub
        return sub

    def remove_subscription(self, sub_id: int) -> Subscription | None:
        return self.subscriptions.pop(sub_id, None)

    # --- webhooks -------------------------------------------------------------------------------

    async def emit(self, events: Sequence[tuple[str, PayloadFn]]) -> str:
        """Queue one delivery per subscription of each topic; every delivery shares one event id."""
        event_id = str(uuid.uuid4())
        triggered = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        for topic, payload_fn in events:
            payloads: dict[str, dict[str, Any]] = {}
            bodies: dict[tuple[str, tuple[str, ...]], bytes] = {}  # encode once per version and field list
            for sub in list(self.subscriptions.values()):
                if sub.topic != topic:
                    continue
                key = (sub.api_version, sub.fields)
                if key not in bodies:
                    if sub.api_version not in payloads:
                        payloads[sub.api_version] = payload_fn(sub.api_version)
                    payload = payloads[sub.api_version]
                    if sub.fields:
                        payload = {k: v for k, v in payload.items() if k in sub.fields}
                    bodies[key] = shopify_json(payload)
                await self.deliverer.enqueue(sub, topic, bodies[key], event_id, triggered)
        return event_id

    def _customer_events(self, customer: Customer, topic: str = "customers/update") -> tuple[str, PayloadFn]:
        return topic, lambda version: serialize_customer(customer, version, for_webhook=True)

    # --- mutations ------------------------------------------------------------------------------

    def _require(self, customer_id: int) -> Customer:
        customer = self.customer(customer_id)
        if customer is None:
            raise SandboxError(f"no customer {customer_id}")
        return customer

    def _touch(self, customer: Customer, **changes: Any) -> Customer:
        now = max(self.now(), customer.updated_at)
        updated = dataclasses.replace(customer, updated_at=now, **changes)
        self.overrides[customer.id] = updated
        return updated

    async def create_customer(
        self,
        *,
        email: str | None = None,
        first_name: str = "Åsa",
        last_name: str = "Sandström",
        phone: str | None = None,
        tags: Sequence[str] = (),
        country_code: str = "SE",
        city: str = "Stockholm",
        email_state: str = "not_subscribed",
        sms_state: str = "not_subscribed",
        opt_in_level: str | None = "single_opt_in",
        state: str = "disabled",
    ) -> Customer:
        index = self.next_index
        customer_id = CUSTOMER_BASE + index
        country = COUNTRY_BY_CODE.get(country_code, COUNTRY_BY_CODE["SE"])
        if email is None:
            email = f"new.customer.{index}@{country.email_domain}"
        self._check_email_free(email, None)
        _check_email_state(email_state)
        _check_state(sms_state, SMS_STATES)
        now = max(self.now(), self.anchor)
        address = Address(
            id=ADDRESS_BASE + index * ADDRESS_SLOTS,
            first_name=first_name,
            last_name=last_name,
            company=None,
            address1="Sveavägen 1",
            address2=None,
            city=city,
            province=None,
            province_code=None,
            country=country.name,
            country_code=country.code,
            zip="111 57",
            phone=phone,
            default=True,
        )
        customer = Customer(
            id=customer_id,
            email=email,
            first_name=first_name,
            last_name=last_name,
            phone=phone,
            tags=tuple(tags),
            state=state,
            verified_email=True,
            currency=SHOP_CURRENCY,
            orders_count=0,
            total_spent_cents=0,
            last_order_id=None,
            last_order_name=None,
            note=None,
            tax_exempt=False,
            created_at=now,
            updated_at=now,
            addresses=(address,),
            email_consent=EmailConsent(
                email_state,
                opt_in_level if email_state != "not_subscribed" else None,
                now if email_state != "not_subscribed" else None,
            ),
            sms_consent=None
            if phone is None
            else SmsConsent(
                sms_state,
                opt_in_level if sms_state != "not_subscribed" else None,
                now if sms_state != "not_subscribed" else None,
                "SHOPIFY",
            ),
        )
        self.next_index += 1
        self.overrides[customer_id] = customer
        events = [self._customer_events(customer, "customers/create")]
        if customer.tags:
            events.append(
                ("customer.tags_added", lambda _v: tags_payload(customer_id, list(customer.tags), now))
            )
        if email_state != "not_subscribed":
            events.append(
                ("customers_email_marketing_consent/update", lambda _v: email_consent_payload(customer))
            )
        if phone is not None and sms_state != "not_subscribed":
            events.append(("customers_marketing_consent/update", lambda _v: sms_consent_payload(customer)))
        await self.emit(events)
        return customer

    async def update_customer(self, customer_id: int, **changes: Any) -> Customer:
        """Change profile fields: first_name, last_name, phone, note, state, city, country_code."""
        old = self._require(customer_id)
        city = changes.pop("city", None)
        country_code = changes.pop("country_code", None)
        allowed = {"first_name", "last_name", "phone", "note", "state", "verified_email", "tax_exempt"}
        unknown = set(changes) - allowed
        if unknown:
            raise SandboxError(f"cannot change {sorted(unknown)} with update_customer")
        if "state" in changes:
            _check_state(changes["state"], ("enabled", "disabled", "invited", "declined"))
        if city is not None or country_code is not None:
            changes["addresses"] = _move(old, city, country_code)
        if "phone" in changes:
            phone = changes["phone"]
            if phone is None:
                changes["sms_consent"] = None
            elif old.sms_consent is None:
                changes["sms_consent"] = SmsConsent("not_subscribed", None, None, "SHOPIFY")
        customer = self._touch(old, **changes)
        events = [self._customer_events(customer)]
        if customer.state != old.state and customer.state in ("enabled", "disabled"):
            topic = "customers/enable" if customer.state == "enabled" else "customers/disable"
            events.append(self._customer_events(customer, topic))
        if "phone" in changes and customer.phone != old.phone and customer.phone is not None:
            events.append(("customers_marketing_consent/update", lambda _v: sms_consent_payload(customer)))
        await self.emit(events)
        return customer

    async def delete_customer(self, customer_id: int) -> None:
        self._require(customer_id)
        self.deleted.add(customer_id)
        self.overrides.pop(customer_id, None)
        await self.emit([("customers/delete", lambda version: delete_payload(customer_id, version))])

    async def set_email_consent(
        self, customer_id: int, state: str, opt_in_level: str | None = "single_opt_in"
    ) -> Customer:
        old = self._require(customer_id)
        _check_email_state(state)
        if opt_in_level is not None:
            _check_state(opt_in_level, OPT_IN_LEVELS)
        if old.email is None:
            raise SandboxError(f"customer {customer_id} has no email address")
        now = max(self.now(), old.updated_at)
        customer = self._touch(old, email_consent=EmailConsent(state, opt_in_level, now))
        await self.emit(
            [
                ("customers_email_marketing_consent/update", lambda _v: email_consent_payload(customer)),
                self._customer_events(customer),
            ]
        )
        return customer

    async def set_sms_consent(
        self, customer_id: int, state: str, opt_in_level: str | None = "single_opt_in"
    ) -> Customer:
        old = self._require(customer_id)
        _check_state(state, SMS_STATES)
        if opt_in_level is not None:
            _check_state(opt_in_level, OPT_IN_LEVELS)
        if old.phone is None:
            raise SandboxError(f"customer {customer_id} has no phone")
        now = max(self.now(), old.updated_at)
        collected = old.sms_consent.consent_collected_from if old.sms_consent else "SHOPIFY"
        customer = self._touch(old, sms_consent=SmsConsent(state, opt_in_level, now, collected))
        await self.emit(
            [
                ("customers_marketing_consent/update", lambda _v: sms_consent_payload(customer)),
                self._customer_events(customer),
            ]
        )
        return customer

    async def change_email(self, customer_id: int, email: str) -> Customer:
        """A new address keeps the customer's consent state (as when a merchant edits the email)."""
        old = self._require(customer_id)
        if "@" not in email:
            raise SandboxError(f"not an email address: {email!r}")
        self._check_email_free(email, customer_id)
        changes: dict[str, Any] = {"email": email}
        if old.email_consent is None:
            changes["email_consent"] = EmailConsent("not_subscribed", None, None)
        customer = self._touch(old, **changes)
        await self.emit(
            [
                self._customer_events(customer),
                ("customers_email_marketing_consent/update", lambda _v: email_consent_payload(customer)),
            ]
        )
        return customer

    async def add_tags(self, customer_id: int, tags: Sequence[str]) -> Customer:
        old = self._require(customer_id)
        added = [t for t in dict.fromkeys(tags) if t and t not in old.tags]
        customer = self._touch(old, tags=old.tags + tuple(added))
        events = [self._customer_events(customer)]
        if added:
            events.insert(
                0, ("customer.tags_added", lambda _v: tags_payload(customer_id, added, customer.updated_at))
            )
        await self.emit(events)
        return customer

    async def remove_tags(self, customer_id: int, tags: Sequence[str]) -> Customer:
        old = self._require(customer_id)
        removed = [t for t in old.tags if t in set(tags)]
        customer = self._touch(old, tags=tuple(t for t in old.tags if t not in removed))
        events = [self._customer_events(customer)]
        if removed:
            events.insert(
                0,
                ("customer.tags_removed", lambda _v: tags_payload(customer_id, removed, customer.updated_at)),
            )
        await self.emit(events)
        return customer

    async def place_order(self, customer_id: int, *, paid: bool = True) -> Order:
        """A new order for the customer: `orders/create`, then `orders/paid` when paid."""
        old = self._require(customer_id)
        seq = len(self.new_order_ids)
        order_id = ORDER_BASE + self.size * ORDER_SLOTS + seq
        now = max(self.now(), old.updated_at)
        rng = random.Random(mix(self.seed, order_id))
        order = build_order(
            rng,
            tuple(self.products.values()),
            order_id,
            1001 + self.size * ORDER_SLOTS + seq,
            self.size * ORDER_SLOTS + seq,
            customer_id,
            old.email,
            old.phone,
            now,
            old.default_address,
            now,
            paid=paid,
        )
        self.order_overrides[order_id] = order
        self.new_order_ids.append(order_id)
        self.extra_orders.setdefault(customer_id, []).append(order_id)
        customer = self._touch(
            old,
            orders_count=old.orders_count + 1,
            total_spent_cents=old.total_spent_cents + order.total_cents,
            last_order_id=order.id,
            last_order_name=order.name,
        )
        events: list[tuple[str, PayloadFn]] = [
            ("orders/create", lambda version: serialize_order(order, customer, version, for_webhook=True))
        ]
        if paid:
            events.append(
                ("orders/paid", lambda version: serialize_order(order, customer, version, for_webhook=True))
            )
        events.append(self._customer_events(customer))
        await self.emit(events)
        return order

    async def update_product(
        self, product_id: int, *, title: str | None = None, price: str | None = None
    ) -> Product:
        old = self.products.get(product_id)
        if old is None:
            raise SandboxError(f"no product {product_id}")
        variants: tuple[Variant, ...] = old.variants
        if price is not None:
            cents = round(float(price) * 100)
            variants = tuple(dataclasses.replace(v, price_cents=cents) for v in old.variants)
        product = dataclasses.replace(
            old, title=title or old.title, variants=variants, updated_at=max(self.now(), old.updated_at)
        )
        self.products[product_id] = product
        await self.emit([("products/update", lambda _v: serialize_product(product))])
        return product

    async def redact_customer(self, customer_id: int) -> None:
        """The mandatory `customers/redact` privacy webhook (sent to subscriptions of that topic)."""
        customer = self._require(customer_id)
        payload = {
            "shop_id": SHOP_ID,
            "shop_domain": self.domain,
            "customer": {"id": customer.id, "email": customer.email, "phone": customer.phone},
            "orders_to_redact": self.orders_of(customer_id),
        }
        await self.emit([("customers/redact", lambda _v: payload)])

    async def request_customer_data(self, customer_id: int) -> None:
        customer = self._require(customer_id)
        payload = {
            "shop_id": SHOP_ID,
            "shop_domain": self.domain,
            "orders_requested": self.orders_of(customer_id),
            "customer": {"id": customer.id, "email": customer.email, "phone": customer.phone},
            "data_request": {"id": self.rng.randrange(10**9)},
        }
        await self.emit([("customers/data_request", lambda _v: payload)])

    async def redact_shop(self) -> None:
        await self.emit([("shop/redact", lambda _v: {"shop_id": SHOP_ID, "shop_domain": self.domain})])

    async def uninstall(self) -> None:
        await self.emit([("app/uninstalled", lambda _v: self.shop_json())])

    def customer_id_by_email(self, email: str) -> int | None:
        """Who has this address: changed customers are scanned, generated ones found by the
        index their addresses carry (`first.last.<index>@...`)."""
        wanted = email.lower()
        for customer in self.overrides.values():
            if customer.email is not None and customer.email.lower() == wanted:
                return customer.id
        local = wanted.partition("@")[0].removesuffix("+shop")
        tail = local.rsplit(".", 1)[-1]
        if tail.isdigit() and int(tail) < self.size:
            customer_id = CUSTOMER_BASE + int(tail)
            if customer_id not in self.overrides and customer_id not in self.deleted:
                generated = self.generator.customer(int(tail))[0]
                if generated.email is not None and generated.email.lower() == wanted:
                    return customer_id
        return None

    def _check_email_free(self, email: str, customer_id: int | None) -> None:
        owner = self.customer_id_by_email(email)
        if owner is not None and owner != customer_id:
            raise SandboxError(f"email {email!r} has already been taken")

    def random_customer_id(self, rng: random.Random) -> int | None:
        for _ in range(20):
            customer_id = CUSTOMER_BASE + rng.randrange(max(self.next_index, 1))
            if self.index_of(customer_id) is not None:
                return customer_id
        return None

    def _plus(self) -> bool:
        return self.rate_limit.plan in ("plus", "enterprise")

    def shop_json(self) -> dict[str, Any]:
        from sandbox.shopify.serialize import fmt_time

        return {
            "id": SHOP_ID,
            "name": self.name,
            "email": "owner@demo-store.example.se",
            "domain": self.domain,
            "province": "",
            "country": "SE",
            "address1": "Sveavägen 1",
            "zip": "111 57",
            "city": "Stockholm",
            "source": None,
            "phone": "+46812345678",
            "latitude": 59.3345,
            "longitude": 18.0632,
            "primary_locale": "sv",
            "address2": None,
            "created_at": fmt_time(self.anchor - 5 * 365 * 86400),
            "updated_at": fmt_time(self.anchor),
            "country_code": "SE",
            "country_name": "Sweden",
            "currency": SHOP_CURRENCY,
            "customer_email": "hej@demo-store.example.se",
            "timezone": "(GMT+01:00) Europe/Stockholm",
            "iana_timezone": "Europe/Stockholm",
            "shop_owner": "Åsa Sandström",
            "money_format": "{{amount_with_comma_separator}} kr",
            "money_with_currency_format": "{{amount_with_comma_separator}} SEK",
            "weight_unit": "kg",
            "province_code": None,
            "taxes_included": True,
            "tax_shipping": None,
            "county_taxes": True,
            "plan_display_name": "Shopify Plus" if self._plus() else "Basic",
            "plan_name": "shopify_plus" if self._plus() else "basic",
            "has_discounts": True,
            "has_gift_cards": False,
            "myshopify_domain": self.domain,
            "google_apps_domain": None,
            "google_apps_login_enabled": None,
            "money_in_emails_format": "{{amount_with_comma_separator}} kr",
            "money_with_currency_in_emails_format": "{{amount_with_comma_separator}} SEK",
            "eligible_for_payments": True,
            "requires_extra_payments_agreement": False,
            "password_enabled": False,
            "has_storefront": True,
            "finances": True,
            "primary_location_id": 70_000_000_001,
            "checkout_api_supported": True,
            "multi_location_enabled": True,
            "setup_required": False,
            "pre_launch_enabled": False,
            "enabled_presentment_currencies": [SHOP_CURRENCY],
            "transactional_sms_disabled": False,
            "marketing_sms_consent_enabled_at_checkout": True,
        }


def _check_state(value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise SandboxError(f"{value!r} is not one of {', '.join(allowed)}")


def _check_email_state(value: str) -> None:
    """`redacted` is set by Shopify only, when it erases the customer's data (and the address
    with it): a customer cannot keep an address in that state."""
    if value == "redacted":
        raise SandboxError("'redacted' is internally set when the customer's data is erased")
    _check_state(value, EMAIL_STATES)


def _move(customer: Customer, city: str | None, country_code: str | None) -> tuple[Address, ...]:
    """Move the default address (creating one when the customer has none)."""
    country = COUNTRY_BY_CODE.get(country_code or "", None)
    current = customer.default_address
    if current is None:
        base = COUNTRY_BY_CODE["SE"] if country is None else country
        current = Address(
            id=ADDRESS_BASE + (customer.id - CUSTOMER_BASE) * ADDRESS_SLOTS + 3,
            first_name=customer.first_name,
            last_name=customer.last_name,
            company=None,
            address1="Storgatan 1",
            address2=None,
            city=city or base.cities[0][0],
            province=None,
            province_code=None,
            country=base.name,
            country_code=base.code,
            zip="111 22",
            phone=customer.phone,
            default=True,
        )
        return (current, *customer.addresses)
    changes: dict[str, Any] = {}
    if city is not None:
        changes["city"] = city
    if country is not None:
        changes["country"] = country.name
        changes["country_code"] = country.code
    moved = dataclasses.replace(current, **changes)
    return tuple(moved if a.id == current.id else a for a in customer.addresses)


__all__ = ["DEFAULT_SCOPES", "SandboxError", "Store", "phone_for"]
