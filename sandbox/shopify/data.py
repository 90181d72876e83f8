"""Deterministic, lazy generation of a store's customers, orders and products from (seed, size).

Nothing is materialised up front: customer `i` (id `CUSTOMER_BASE + i`) and its orders are
computed on demand from a random generator seeded by (seed, i), so a 1,000,000-customer store
costs almost no memory. The store keeps only what mutations changed. `base_updated_at(i)` is a
cheap hash-only function equal to the generated customer's `updated_at`, so filters can scan ids
without generating whole customers.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from sandbox.shopify.models import (
    Address,
    Customer,
    DiscountCode,
    EmailConsent,
    Image,
    LineItem,
    Order,
    Product,
    SmsConsent,
    Variant,
)

CUSTOMER_BASE = 7_000_000_000_000
ORDER_BASE = 5_000_000_000_000
PRODUCT_BASE = 8_000_000_000_000
VARIANT_BASE = 45_000_000_000_000
IMAGE_BASE = 36_000_000_000_000
ADDRESS_BASE = 9_000_000_000_000
LINE_ITEM_BASE = 14_000_000_000_000
ORDER_SLOTS = 16  # order slots per customer: base order ids are ORDER_BASE + i * ORDER_SLOTS + k
ADDRESS_SLOTS = 4
LINE_SLOTS = 8
HISTORY_S = 4 * 365 * 86400  # customers were created over the four years before the anchor
DAY = 86400
SHOP_CURRENCY = "SEK"

_MASK = (1 << 64) - 1


def mix(*values: int) -> int:
    """splitmix64 over the values: a fast, well-spread 64-bit hash."""
    x = 0x9E3779B97F4A7C15
    for value in values:
        x = (x ^ (value & _MASK)) & _MASK
        x = (x + 0x9E3779B97F4A7C15) & _MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        x ^= x >> 31
    return x


def unit(seed: int, index: int, salt: int) -> float:
    """A uniform float in [0, 1) from (seed, index, salt): one multiply-xorshift round, fast
    enough to scan a million ids (it decides created/updated times and order counts)."""
    x = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & _MASK
    x ^= x >> 31
    x = (x * 0xD6E8FEB86659FD93) & _MASK
    x ^= x >> 32
    x = (x * 0xD6E8FEB86659FD93) & _MASK
    x ^= x >> 32
    return x / 18446744073709551616.0


_FOLD = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "æ": "ae", "Æ": "AE", "ß": "ss", "đ": "d"})


def ascii_fold(text: str) -> str:
    """`Łukasz Sørensen` -> `Lukasz Sorensen` (for email local parts and handles)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return decomposed.encode("ascii", "ignore").decode("ascii")


@lru_cache(maxsize=4096)
def slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "-" for ch in ascii_fold(text).lower())
    return "-".join(part for part in out.split("-") if part)


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    name: str
    weight: float
    phone_prefix: str
    phone_digits: int
    cities: Sequence[tuple[str, str | None, str | None, str]]  # city, province, province code, zip pattern
    first_names: Sequence[str]
    last_names: Sequence[str]
    streets: Sequence[str]
    email_domain: str


COUNTRIES: tuple[Country, ...] = (
    Country(
        "SE",
        "Sweden",
        0.30,
        "+4670",
        7,
        [
            ("Stockholm", None, None, "1## ##"),
            ("Göteborg", None, None, "4## ##"),
            ("Malmö", None, None, "2## ##"),
            ("Uppsala", None, None, "75# ##"),
            ("Västerås", None, None, "72# ##"),
            ("Örebro", None, None, "70# ##"),
            ("Linköping", None, None, "58# ##"),
            ("Umeå", None, None, "90# ##"),
        ],
        [
            "Åsa",
            "Björn",
            "Märta",
            "Östen",
            "Lars",
            "Anna",
            "Erik",
            "Sofia",
            "Göran",
            "Linnéa",
            "Maja",
            "Oskar",
            "Ingrid",
            "Nils",
        ],
        [
            "Lindqvist",
            "Johansson",
            "Åberg",
            "Öberg",
            "Ström",
            "Sjöberg",
            "Bäckström",
            "Jönsson",
            "Nilsson",
            "Hägg",
            "Andersson",
        ],
        ["Storgatan", "Drottninggatan", "Kungsgatan", "Vasagatan", "Östra Hamngatan", "Södra Förstadsgatan"],
        "example.se",
    ),
    Country(
        "NO",
        "Norway",
        0.12,
        "+474",
        7,
        [
            ("Oslo", None, None, "0###"),
            ("Bergen", None, None, "5###"),
            ("Trondheim", None, None, "7###"),
            ("Tromsø", None, None, "9###"),
            ("Stavanger", None, None, "4###"),
        ],
        ["Ørjan", "Kjærsti", "Bjørn", "Ingrid", "Øystein", "Solveig", "Håkon", "Sigrid", "Åse", "Magnus"],
        ["Hansen", "Ødegård", "Kjær", "Bråten", "Søreide", "Løvås", "Berg", "Haugen", "Bakke"],
        ["Karl Johans gate", "Bryggen", "Storgata", "Øvre Slottsgate", "Kirkegata"],
        "example.no",
    ),
    Country(
        "DK",
        "Denmark",
        0.10,
        "+452",
        7,
        [
            ("København", None, None, "1###"),
            ("Aarhus", None, None, "8###"),
            ("Odense", None, None, "5###"),
            ("Aalborg", None, None, "9###"),
        ],
        ["Søren", "Mette", "Jørgen", "Anders", "Freja", "Mads", "Signe", "Bodil"],
        ["Sørensen", "Jensen", "Nielsen", "Østergaard", "Kærgaard", "Mølgaard", "Pedersen"],
        ["Strøget", "Nørrebrogade", "Vesterbrogade", "Østerbrogade"],
        "example.dk",
    ),
    Country(
        "FI",
        "Finland",
        0.08,
        "+35840",
        7,
        [
            ("Helsinki", None, None, "00###"),
            ("Espoo", None, None, "02###"),
            ("Tampere", None, None, "33###"),
            ("Turku", None, None, "20###"),
            ("Jyväskylä", None, None, "40###"),
        ],
        ["Päivi", "Väinö", "Jyrki", "Aino", "Eeva", "Mikko", "Sanna", "Jüri"],
        ["Jääskeläinen", "Mäkinen", "Häkkinen", "Virtanen", "Kärkkäinen", "Korhonen", "Nieminen"],
        ["Mannerheimintie", "Aleksanterinkatu", "Hämeenkatu", "Yliopistonkatu"],
        "example.fi",
    ),
    Country(
        "DE",
        "Germany",
        0.12,
        "+49151",
        8,
        [
            ("Berlin", "Berlin", "BE", "10###"),
            ("München", "Bayern", "BY", "80###"),
            ("Köln", "Nordrhein-Westfalen", "NW", "50###"),
            ("Hamburg", "Hamburg", "HH", "20###"),
            ("Düsseldorf", "Nordrhein-Westfalen", "NW", "40###"),
        ],
        ["Jürgen", "Jörg", "Günther", "Käthe", "Lena", "Felix", "Maximilian", "Hanna"],
        ["Müller", "Schröder", "Weiß", "Groß", "Schäfer", "Krüger", "Becker", "Hoffmann"],
        ["Hauptstraße", "Schloßallee", "Bahnhofstraße", "Königsallee", "Gartenstraße"],
        "example.de",
    ),
    Country(
        "PL",
        "Poland",
        0.06,
        "+485",
        8,
        [
            ("Warszawa", "Mazowieckie", "MZ", "0#-###"),
            ("Kraków", "Małopolskie", "MA", "3#-###"),
            ("Łódź", "Łódzkie", "LD", "9#-###"),
            ("Gdańsk", "Pomorskie", "PM", "80-###"),
        ],
        ["Łukasz", "Paweł", "Małgorzata", "Zofia", "Krzysztof", "Agnieszka", "Wojciech"],
        ["Wójcik", "Kowalski", "Żak", "Łapiński", "Dąbrowska", "Wiśniewska", "Szymański"],
        ["ulica Marszałkowska", "ulica Floriańska", "ulica Piotrkowska", "ulica Długa"],
        "example.pl",
    ),
    Country(
        "FR",
        "France",
        0.06,
        "+336",
        8,
        [
            ("Paris", "Paris", "75", "75###"),
            ("Lyon", "Rhône", "69", "69###"),
            ("Marseille", "Bouches-du-Rhône", "13", "13###"),
            ("Nantes", "Loire-Atlantique", "44", "44###"),
        ],
        ["Zoë", "Hélène", "François", "Élodie", "Jérôme", "Chloé", "Loïc", "Amélie"],
        ["Lefèvre", "Dubois", "Gérard", "Moreau", "Bézier", "Laurent", "Fournier"],
        ["rue de Rivoli", "avenue des Champs-Élysées", "rue de la Paix", "boulevard Saint-Germain"],
        "example.fr",
    ),
    Country(
        "GB",
        "United Kingdom",
        0.06,
        "+447",
        9,
        [
            ("London", "England", "ENG", "SW1A #AA"),
            ("Manchester", "England", "ENG", "M# #AB"),
            ("Edinburgh", "Scotland", "SCT", "EH# #CD"),
        ],
        ["Zoë", "Chloë", "Emily", "Oliver", "Siobhán", "Harry", "Amelia"],
        ["Smith", "O'Brien", "Brontë", "Taylor", "Jones", "Ní Bhriain", "Wilson"],
        ["High Street", "Baker Street", "Station Road", "Church Lane"],
        "example.co.uk",
    ),
    Country(
        "US",
        "United States",
        0.06,
        "+1415",
        7,
        [
            ("New York", "New York", "NY", "10###"),
            ("San Francisco", "California", "CA", "94###"),
            ("Austin", "Texas", "TX", "78###"),
            ("Seattle", "Washington", "WA", "98###"),
        ],
        ["José", "Renée", "Michael", "Jessica", "Zoë", "Andrés", "Ashley"],
        ["García", "Smith", "Johnson", "Núñez", "Williams", "Brown", "D'Angelo"],
        ["Main Street", "Broadway", "Market Street", "Elm Street"],
        "example.com",
    ),
    Country(
        "NL",
        "Netherlands",
        0.04,
        "+316",
        8,
        [
            ("Amsterdam", "Noord-Holland", "NH", "10## AB"),
            ("Rotterdam", "Zuid-Holland", "ZH", "30## CD"),
            ("Utrecht", "Utrecht", "UT", "35## EF"),
        ],
        ["Daan", "Sanne", "Ruud", "Anouk", "Sjoerd", "Eliën"],
        ["de Vries", "van Dijk", "Bakker", "Janssen", "van den Berg", "Visser"],
        ["Damrak", "Kalverstraat", "Coolsingel", "Oudegracht"],
        "example.nl",
    ),
)
_COUNTRY_CUMULATIVE: tuple[float, ...] = tuple(
    sum(c.weight for c in COUNTRIES[: n + 1]) / sum(c.weight for c in COUNTRIES)
    for n in range(len(COUNTRIES))
)
COUNTRY_BY_CODE = {c.code: c for c in COUNTRIES}

TAG_POOL = (
    "newsletter",
    "returning",
    "wholesale",
    "loyalty-gold",
    "loyalty-silver",
    "influencer",
    "sale-2024",
    "Black Friday",
    "återkommande",
    "b2b",
    "gift-card",
    "pos",
)
EMAIL_STATE_WEIGHTS = (
    ("subscribed", 0.35),
    ("not_subscribed", 0.35),
    ("unsubscribed", 0.12),
    ("pending", 0.06),
    ("redacted", 0.04),
    ("invalid", 0.08),
)
SMS_STATE_WEIGHTS = (
    ("subscribed", 0.30),
    ("not_subscribed", 0.45),
    ("unsubscribed", 0.12),
    ("pending", 0.08),
    ("redacted", 0.05),
)
CUSTOMER_STATE_WEIGHTS = (("enabled", 0.55), ("disabled", 0.35), ("invited", 0.08), ("declined", 0.02))


def _below(rng: random.Random, n: int) -> int:
    """`rng.randrange(n)` at a tenth of the cost (the bias is irrelevant for test data)."""
    return int(rng.random() * n)


def pick_weighted(rng: random.Random, table: Sequence[tuple[str, float]]) -> str:
    roll = rng.random()
    acc = 0.0
    for value, weight in table:
        acc += weight
        if roll < acc:
            return value
    return table[-1][0]


def pick_country(roll: float) -> Country:
    for country, limit in zip(COUNTRIES, _COUNTRY_CUMULATIVE, strict=True):
        if roll < limit:
            return country
    return COUNTRIES[-1]


def fill_pattern(rng: random.Random, pattern: str) -> str:
    return "".join(str(_below(rng, 10)) if ch == "#" else ch for ch in pattern)


def phone_for(country: Country, index: int) -> str:
    """A valid-looking E.164 number, unique per index (the index fills the subscriber digits)."""
    return f"{country.phone_prefix}{index % 10**country.phone_digits:0{country.phone_digits}d}"


def opt_in_level(rng: random.Random, state: str) -> str | None:
    if state == "pending":
        return "confirmed_opt_in"
    if state == "not_subscribed" and rng.random() < 0.5:
        return None
    roll = rng.random()
    return "single_opt_in" if roll < 0.6 else "confirmed_opt_in" if roll < 0.93 else "unknown"


# --- products -----------------------------------------------------------------------------------

_ADJECTIVES = (
    "Classic",
    "Nordic",
    "Merino",
    "Organic",
    "Linen",
    "Waxed",
    "Recycled",
    "Heritage",
    "Alpine",
    "Coastal",
    "Fjäll",
    "Björk",
    "Ö-vik",
    "Søndag",
)
_NOUNS = (
    ("Sweater", "Knitwear"),
    ("Beanie", "Accessories"),
    ("Jacket", "Outerwear"),
    ("Scarf", "Accessories"),
    ("Mug", "Home"),
    ("Backpack", "Bags"),
    ("Candle", "Home"),
    ("Blanket", "Home"),
    ("Sneakers", "Shoes"),
    ("Socks", "Accessories"),
    ("Tote", "Bags"),
    ("Cap", "Accessories"),
    ("Parka", "Outerwear"),
    ("Mittens", "Accessories"),
    ("Thermos", "Home"),
)
_VENDORS = (
    "Norrsken Design",
    "Åre Outfitters",
    "Hygge & Co",
    "Sisu Supply",
    "Bergström Goods",
    "Lykke Studio",
)
_SIZES = ("XS", "S", "M", "L", "XL")
_COLOURS = ("Svart", "Grön", "Röd", "Blå", "Grå", "Ljusbrun")


def generate_products(seed: int, count: int, anchor: int) -> tuple[Product, ...]:
    rng = random.Random(mix(seed, 0x50524F44))
    products: list[Product] = []
    seen: set[str] = set()
    for j in range(count):
        noun, product_type = _NOUNS[_below(rng, len(_NOUNS))]
        title = f"{_ADJECTIVES[_below(rng, len(_ADJECTIVES))]} {noun}"
        handle = slug(title)
        if handle in seen or title in seen:
            title = f"{title} {j + 1}"
            handle = slug(title)
        seen.add(handle)
        product_id = PRODUCT_BASE + j
        created = anchor - HISTORY_S - 30 * DAY + _below(rng, HISTORY_S // 2)
        updated = created + _below(rng, anchor - created)
        images = tuple(
            Image(
                id=IMAGE_BASE + j * 4 + m,
                product_id=product_id,
                position=m + 1,
                src=f"https://cdn.shopify.com/s/files/1/0555/0101/products/{handle}-{m + 1}.jpg?v={created}",
                width=2048,
                height=2048,
                alt=title if m == 0 else None,
            )
            for m in range(1 + _below(rng, 3))
        )
        base_price = rng.choice((99, 149, 199, 249, 299, 349, 499, 699, 899, 1299, 1899, 2499)) * 100
        options = _SIZES if product_type in ("Knitwear", "Outerwear", "Shoes") else _COLOURS
        n_variants = 1 + _below(rng, 4)
        variants = tuple(
            Variant(
                id=VARIANT_BASE + j * 8 + v,
                product_id=product_id,
                title=options[v % len(options)] if n_variants > 1 else "Default Title",
                sku=f"{slug(noun)[:4].upper()}-{j:04d}-{v + 1}",
                price_cents=base_price + (100 * 50 if v >= 3 else 0),
                compare_at_cents=base_price + 10000 if rng.random() < 0.2 else None,
                position=v + 1,
                grams=100 + _below(rng, 1500),
                inventory_quantity=rng.randrange(-2, 200),
                image_id=images[v % len(images)].id if images else None,
            )
            for v in range(n_variants)
        )
        products.append(
            Product(
                id=product_id,
                handle=handle,
                title=title,
                body_html=f"<p>{title} från {_VENDORS[j % len(_VENDORS)]}: tillverkad för nordiska vintrar.</p>",
                vendor=_VENDORS[_below(rng, len(_VENDORS))],
                product_type=product_type,
                tags=tuple(sorted({product_type.lower(), "nordic" if rng.random() < 0.5 else "bestseller"})),
                status="active" if rng.random() < 0.95 else "draft",
                created_at=created,
                updated_at=updated,
                published_at=created + DAY,
                images=images,
                variants=variants,
            )
        )
    return tuple(products)


# --- customers and their orders -----------------------------------------------------------------


class Generator:
    """Customer `i` and its base orders, computed from (seed, i) alone."""

    def __init__(self, seed: int, size: int, anchor: int, products: Sequence[Product]) -> None:
        self.seed = seed
        self.size = size
        self.anchor = anchor
        self.products = products
        self.customer = lru_cache(maxsize=8192)(self._customer)

    def created_at(self, i: int) -> int:
        span = HISTORY_S / max(self.size, 1)
        return int(self.anchor - HISTORY_S + span * i + span * unit(self.seed, i, 1))

    def base_updated_at(self, i: int) -> int:
        created = self.created_at(i)
        roll = unit(self.seed, i, 2)
        room = max(self.anchor - created, 1)
        if roll < 0.3:  # a good share changed in the last 60 days
            return max(created, self.anchor - int(60 * DAY * roll / 0.3))
        return created + int(room * (roll - 0.3) / 0.7)

    def orders_count(self, i: int) -> int:
        roll = unit(self.seed, i, 3)
        if roll < 0.4:
            return 0
        count = 1
        roll = (roll - 0.4) / 0.6
        while roll > 0.45 and count < ORDER_SLOTS:
            count += 1
            roll = (roll - 0.45) / 0.55
        return count

    def _customer(self, i: int) -> tuple[Customer, tuple[Order, ...]]:
        seed = self.seed
        rng = random.Random(mix(seed, i, 0xC057))
        country = pick_country(rng.random())
        first = country.first_names[_below(rng, len(country.first_names))]
        last = country.last_names[_below(rng, len(country.last_names))]
        created = self.created_at(i)
        updated = self.base_updated_at(i)
        local = f"{slug(first)}.{slug(last)}.{i}".replace("-", "")
        if rng.random() < 0.03:
            local += "+shop"  # plus addressing: a classic URL-encoding trap for the APSIS paths
        has_phone = rng.random() < 0.75
        has_email = rng.random() >= 0.01
        if not has_email:
            has_phone = True
        email = f"{local}@{country.email_domain}" if has_email else None
        phone = phone_for(country, i) if has_phone else None
        tags: list[str] = []
        if rng.random() < 0.08:
            tags.append("vip")
        for _ in range(_below(rng, 3)):
            tag = TAG_POOL[_below(rng, len(TAG_POOL))]
            if tag not in tags:
                tags.append(tag)
        state = pick_weighted(rng, CUSTOMER_STATE_WEIGHTS)
        addresses: list[Address] = []
        n_addresses = 0 if rng.random() < 0.1 else 1 if rng.random() < 0.8 else 2
        for j in range(n_addresses):
            city, province, province_code, zip_pattern = country.cities[_below(rng, len(country.cities))]
            addresses.append(
                Address(
                    id=ADDRESS_BASE + i * ADDRESS_SLOTS + j,
                    first_name=first,
                    last_name=last,
                    company="Acme AB" if rng.random() < 0.05 else None,
                    address1=f"{country.streets[_below(rng, len(country.streets))]} {1 + _below(rng, 120)}",
                    address2=f"lgh {1000 + _below(rng, 400)}" if rng.random() < 0.2 else None,
                    city=city,
                    province=province,
                    province_code=province_code,
                    country=country.name,
                    country_code=country.code,
                    zip=fill_pattern(rng, zip_pattern),
                    phone=phone if rng.random() < 0.5 else None,
                    default=j == 0,
                )
            )
        email_consent = None
        if email is not None:
            e_state = pick_weighted(rng, EMAIL_STATE_WEIGHTS)
            e_time = (
                None if e_state == "not_subscribed" else created + int((updated - created) * rng.random())
            )
            email_consent = EmailConsent(e_state, opt_in_level(rng, e_state), e_time)
            if e_state == "redacted":
                # Shopify's REDACTED: "the customer's personal data is erased". The address is
                # gone (GraphQL's `CustomerEmailAddressMarketingState` has no REDACTED: no
                # `defaultEmailAddress`), so REST, GraphQL and orders all show no email.
                email, email_consent = None, None
        sms_consent = None
        if phone is not None:
            s_state = pick_weighted(rng, SMS_STATE_WEIGHTS)
            s_time = (
                None if s_state == "not_subscribed" else created + int((updated - created) * rng.random())
            )
            sms_consent = SmsConsent(
                s_state, opt_in_level(rng, s_state), s_time, "SHOPIFY" if rng.random() < 0.7 else "OTHER"
            )
        customer_id = CUSTOMER_BASE + i
        orders = self._orders(
            i, customer_id, email, phone, created, updated, addresses[0] if addresses else None
        )
        spent = sum(
            o.total_cents for o in orders if o.cancelled_at is None and o.financial_status != "refunded"
        )
        customer = Customer(
            id=customer_id,
            email=email,
            first_name=first,
            last_name=last,
            phone=phone,
            tags=tuple(tags),
            state=state,
            verified_email=has_email
            and (state != "invited" or rng.random() < 0.3)
            and rng.random() < 0.95
            and email is not None,
            currency=SHOP_CURRENCY,
            orders_count=len(orders),
            total_spent_cents=spent,
            last_order_id=orders[-1].id if orders else None,
            last_order_name=orders[-1].name if orders else None,
            note="Föredrar leverans efter 17:00" if rng.random() < 0.03 else None,
            tax_exempt=rng.random() < 0.01,
            created_at=created,
            updated_at=updated,
            addresses=tuple(addresses),
            email_consent=email_consent,
            sms_consent=sms_consent,
        )
        return customer, orders

    def _orders(
        self,
        i: int,
        customer_id: int,
        email: str | None,
        phone: str | None,
        created: int,
        updated: int,
        address: Address | None,
    ) -> tuple[Order, ...]:
        count = self.orders_count(i)
        if not count or not self.products:
            return ()
        rng = random.Random(mix(self.seed, i, 0x0DE5))
        times = sorted(created + int((updated - created) * rng.random()) for _ in range(count))
        times[-1] = updated  # the last order is what last touched the customer
        orders = []
        for k, placed in enumerate(times):
            slot = i * ORDER_SLOTS + k
            orders.append(
                build_order(
                    rng,
                    self.products,
                    ORDER_BASE + slot,
                    1001 + slot,
                    slot,
                    customer_id,
                    email,
                    phone,
                    placed,
                    address,
                    self.anchor,
                )
            )
        return tuple(orders)


def build_order(
    rng: random.Random,
    products: Sequence[Product],
    order_id: int,
    number: int,
    line_slot: int,
    customer_id: int | None,
    email: str | None,
    phone: str | None,
    placed: int,
    address: Address | None,
    now: int,
    paid: bool | None = None,
) -> Order:
    """One order with 1-4 lines; `paid=None` picks a realistic financial status."""
    lines = []
    for n in range(1 + _below(rng, 4)):
        product = products[_below(rng, len(products))]
        variant = product.variants[_below(rng, len(product.variants))]
        lines.append(
            LineItem(
                id=LINE_ITEM_BASE + line_slot * LINE_SLOTS + n,
                product_id=product.id,
                variant_id=variant.id,
                title=product.title,
                variant_title=variant.title,
                sku=variant.sku,
                vendor=product.vendor,
                quantity=1 + (_below(rng, 3) if rng.random() < 0.3 else 0),
                price_cents=variant.price_cents,
                grams=variant.grams,
            )
        )
    gross = sum(item.price_cents * item.quantity for item in lines)
    codes: tuple[DiscountCode, ...] = ()
    roll = rng.random()
    if roll < 0.08:
        codes = (DiscountCode("WELCOME10", gross // 10, "percentage"),)
    elif roll < 0.12:
        codes = (DiscountCode("VINTER-200", min(20000, gross // 2), "fixed_amount"),)
    shipping = 0 if gross >= 50000 else 4900
    subtotal = gross - sum(c.amount_cents for c in codes)
    if paid is None:
        status = pick_weighted(
            rng,
            (
                ("paid", 0.85),
                ("pending", 0.04),
                ("refunded", 0.04),
                ("partially_refunded", 0.03),
                ("voided", 0.04),
            ),
        )
    else:
        status = "paid" if paid else "pending"
    cancelled = placed + 3600 if status == "voided" else None
    closed = None
    if status in ("paid", "refunded", "partially_refunded") and placed < now - 3 * DAY and rng.random() < 0.8:
        closed = min(placed + DAY + _below(rng, 4 * DAY), now)
    updated = max(t for t in (placed, cancelled, closed) if t is not None)
    return Order(
        id=order_id,
        number=number,
        customer_id=customer_id,
        email=email,
        phone=phone,
        created_at=placed,
        updated_at=updated,
        processed_at=placed,
        closed_at=closed,
        cancelled_at=cancelled,
        cancel_reason="customer" if cancelled else None,
        financial_status=status,
        fulfillment_status="fulfilled" if closed else None,
        currency=SHOP_CURRENCY,
        line_items=tuple(lines),
        discount_codes=codes,
        shipping_cents=shipping,
        tax_cents=subtotal // 5,  # 25 % VAT included in the prices
        shipping_address=address,
        billing_address=address,
        buyer_accepts_marketing=rng.random() < 0.4,
    )
