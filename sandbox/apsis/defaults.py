"""The default account's definitions: exactly what mappings/demo.toml references, and a little more."""

from __future__ import annotations

from collections.abc import Iterable

from sandbox.apsis.definitions import (
    EMAIL_CHANNEL,
    SMS_CHANNEL,
    Attribute,
    Definitions,
    Event,
    Folder,
    Keyspace,
    Section,
    Topic,
    Version,
)

KEYSPACE = "com.apsis1.integrations.keyspaces.sandbox.shopify"
SECTION = "com.apsis1.sections.sandbox"
VIP_SECTION = "com.apsis1.sections.sandbox-vip"
OTHER_SECTION = "com.apsis1.sections.sandbox-other"
DEPRECATED_AT = "2024-03-01T00:00:00Z"


def _attr(name: str, *versions: str | tuple[str, str], type_: str = "string") -> Attribute:
    """Versions: "1001" (current) or ("901", deprecated_at)."""
    return Attribute(
        discriminator=f"com.apsis1.attributes.{name}",
        name=name.replace("-", " ").title(),
        type=type_,
        versions=[Version(v) if isinstance(v, str) else Version(v[0], v[1]) for v in versions],
    )


def _event(name: str, *versions: str | tuple[str, str]) -> Event:
    return Event(
        discriminator=f"com.apsis1.integrations.events.{name}",
        name=name.replace("-", " ").title(),
        versions=[Version(v) if isinstance(v, str) else Version(v[0], v[1]) for v in versions],
    )


def default_definitions() -> Definitions:
    """mappings/demo.toml's keyspace, sections, versions, folders and topics, plus extras:
    deprecated versions next to the current ones (901, 902, 1901, 2901, 3901), an extra
    attribute (1011), an extra event (2003), an extra topic, an extra keyspace and section.

    Topics: news, offers and events are topics of every channel; sms-offers is SMS-only and
    vip-news email-only (channel-specific topics of both kinds). The folders keep the Consent
    1.0 consent list names, so installation files naming them still resolve.
    """
    main = Section(
        discriminator=SECTION,
        name="Sandbox",
        attributes=[
            _attr("email", ("901", DEPRECATED_AT), "1001"),
            _attr("firstname", ("902", DEPRECATED_AT), "1002"),
            _attr("lastname", "1003"),
            _attr("mobile", "1004"),
            _attr("city", "1005"),
            _attr("country-code", "1006"),
            _attr("shopify-tags", "1007"),
            _attr("orders-count", "1008", type_="integer"),
            _attr("total-spent", "1009", type_="double"),
            _attr("customer-since", "1010", type_="date"),
            _attr("birthday", "1011", type_="date"),
        ],
        folders=[
            Folder(
                "com.apsis1.consent-lists.newsletter",
                "Newsletter",
                [
                    Topic("com.apsis1.topics.news", "News"),
                    Topic("com.apsis1.topics.offers", "Offers"),
                    Topic("com.apsis1.topics.events", "Events"),
                ],
            ),
            Folder(
                "com.apsis1.consent-lists.sms",
                "SMS",
                [Topic("com.apsis1.topics.sms-offers", "SMS offers", SMS_CHANNEL)],
            ),
        ],
        events=[
            _event("order", ("1901", DEPRECATED_AT), "2001"),
            _event("order-line", "2002"),
            _event("cart-abandoned", "2003"),
        ],
    )
    vip = Section(
        discriminator=VIP_SECTION,
        name="Sandbox VIP",
        attributes=[
            _attr("email", ("2901", DEPRECATED_AT), "3001"),
            _attr("firstname", "3002"),
            _attr("total-spent", "3003", type_="double"),
        ],
        folders=[
            Folder(
                "com.apsis1.consent-lists.vip",
                "VIP",
                [Topic("com.apsis1.topics.vip-news", "VIP news", EMAIL_CHANNEL)],
            )
        ],
        events=[_event("order", ("3901", DEPRECATED_AT), "4001"), _event("order-line", "4002")],
    )
    other = Section(
        discriminator=OTHER_SECTION,
        name="Another section",
        attributes=[_attr("email", "5001")],
        folders=[Folder("com.apsis1.consent-lists.other", "Other", [Topic("com.apsis1.topics.other")])],
        events=[_event("order", "6001")],
    )
    return Definitions(
        keyspaces=[
            Keyspace(KEYSPACE, "Shopify customer id (sandbox)"),
            Keyspace("com.apsis1.keyspaces.email", "Email"),
        ],
        sections=[main, vip, other],
    )


def definitions_of(sections: Iterable[Section], keyspaces: Iterable[str] = (KEYSPACE,)) -> Definitions:
    """Shorthand for tests building their own account."""
    return Definitions(keyspaces=[Keyspace(k) for k in keyspaces], sections=list(sections))
