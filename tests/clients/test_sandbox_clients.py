"""Both clients over real HTTP against the sandboxes: what the mocks cannot show."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from core.keys import Keys
from mappings.installation import ApsisAccount, Limits, Shop
from sandbox.apsis import KEYSPACE, SECTION, ApsisSandbox, default_account
from sandbox.apsis.account import Account
from tests.clients.conftest import REDIS_URL
from worker.apsis_client import ApsisClient
from worker.errors import AuthError, PermanentApiError
from worker.ratelimit import RateLimiter
from worker.retry import RetryPolicy

try:
    from sandbox.shopify.server import ShopifySandbox
    from sandbox.shopify.store import Store
except ImportError as exc:  # pragma: no cover - built in parallel
    pytest.skip(f"Shopify sandbox not importable: {exc}", allow_module_level=True)

from mappings.normalize_graphql import normalize_bulk_customer
from worker import lanes
from worker.shopify_bulk import BulkOperationBusyError
from worker.shopify_client import ShopifyClient

EMAIL_CH = "com.apsis1.channels.email"
SMS_CH = "com.apsis1.channels.sms"
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, budget_s=10)


def apsis_account(url: str) -> ApsisAccount:
    return ApsisAccount(url, "sandbox-client", "sandbox-client-secret", KEYSPACE)


@pytest.fixture
async def apsis_sandbox() -> AsyncIterator[tuple[ApsisSandbox, Account]]:
    account = default_account()
    async with ApsisSandbox(account) as sandbox:
        yield sandbox, account


@pytest.fixture
async def apsis(
    apsis_sandbox: tuple[ApsisSandbox, Account], redis: Redis, keys: Keys, limiter: RateLimiter
) -> AsyncIterator[ApsisClient]:
    async with ApsisClient(apsis_account(apsis_sandbox[0].url), redis, limiter, keys, retry=FAST) as client:
        yield client


async def test_definitions_profiles_and_events(
    apsis: ApsisClient, apsis_sandbox: tuple[ApsisSandbox, Account]
) -> None:
    _, account = apsis_sandbox
    assert KEYSPACE in [k["discriminator"] for k in await apsis.keyspaces()]
    assert SECTION in [s["discriminator"] for s in await apsis.sections()]
    versions = await apsis.attribute_versions(SECTION)
    assert versions  # discriminator -> live version id
    topics = await apsis.topics(SECTION)
    assert {"com.apsis1.topics.news", "com.apsis1.topics.sms-offers"} <= {t["discriminator"] for t in topics}
    events = await apsis.events(SECTION)
    event_version = next(v["id"] for e in events for v in e["versions"] if v["deprecated_at"] is None)

    assert await apsis.patch_attributes(KEYSPACE, "42", SECTION, {"1002": "Jane"}) == 1
    assert await apsis.get_attributes(KEYSPACE, "42", SECTION) == {"1002": "Jane"}
    assert await apsis.get_attributes(KEYSPACE, "43", SECTION) is None
    item = {"event_time": "2024-05-01T10:00:00Z", "version_id": event_version, "data": {"order_id": 1}}
    assert await apsis.add_events(KEYSPACE, "42", SECTION, [item, item]) == 1
    profile = account.profile(KEYSPACE, "42")
    assert profile is not None and len(profile.events[SECTION]) == 2
    assert await apsis.delete_profile(KEYSPACE, "42") is True
    assert await apsis.delete_profile(KEYSPACE, "42") is False  # already gone: done


async def test_large_patch_is_split_under_the_servers_limit(
    apsis: ApsisClient, apsis_sandbox: tuple[ApsisSandbox, Account]
) -> None:
    _, account = apsis_sandbox
    body = {"1002": "a" * 60_000, "1003": "b" * 60_000, "1005": "c" * 60_000}
    assert await apsis.patch_attributes(KEYSPACE, "7", SECTION, body) == 3
    profile = account.profile(KEYSPACE, "7")
    assert profile is not None and profile.attributes[SECTION] == body
    assert account.request_count(method="PATCH", status=413) == 0


async def test_consent_2_round_trip_on_the_profile(
    apsis: ApsisClient, apsis_sandbox: tuple[ApsisSandbox, Account]
) -> None:
    _, account = apsis_sandbox
    news, sms = "com.apsis1.topics.news", "com.apsis1.topics.sms-offers"
    # The profile exists first (the worker always patches its attributes before consent).
    await apsis.patch_attributes(KEYSPACE, "42", SECTION, {"1002": "Jane"})
    assert (
        await apsis.write_consent(KEYSPACE, "42", SECTION, "email", news, "opt-in", reason="r") == "created"
    )
    assert await apsis.write_consent(KEYSPACE, "42", SECTION, "sms", sms, "opt-in", reason="r") == "created"
    assert (
        await apsis.write_consent(KEYSPACE, "42", SECTION, "email", news, "opt-in", reason="r") == "unchanged"
    )
    assert account.opted_in_topics(KEYSPACE, "42", SECTION, EMAIL_CH) == [news]
    read = await apsis.read_consents(KEYSPACE, "42", SECTION)
    assert read.consents[(EMAIL_CH, news)][0] == "opt-in"
    assert read.consents[(SMS_CH, sms)][0] == "opt-in"
    assert (
        await apsis.write_consent(KEYSPACE, "42", SECTION, "email", news, "opt-out", reason="r") == "updated"
    )
    assert account.opted_in_topics(KEYSPACE, "42", SECTION, EMAIL_CH) == []
    assert not [
        route for (_, route, _), n in account.requests.items() if route.startswith("/audience/channels")
    ]


async def test_revoked_token_is_replaced_once_for_all_clients(
    apsis_sandbox: tuple[ApsisSandbox, Account], redis: Redis, keys: Keys
) -> None:
    sandbox, account = apsis_sandbox
    others = [Redis.from_url(REDIS_URL) for _ in range(3)]
    clients = [
        ApsisClient(apsis_account(sandbox.url), r, RateLimiter(r, keys), keys, retry=FAST)
        for r in [redis, *others]
    ]
    try:
        for client in clients:
            await client.sections()
        assert account.request_count(route="/oauth/token") == 1
        account.revoke_tokens()  # every token stops working early
        for client in clients:
            await client.sections()
        # One new token for all four: the others found it in Redis (the old one was compare-deleted).
        assert account.request_count(route="/oauth/token") == 2
        assert account.request_count(status=401) == 4
    finally:
        for client in clients:
            await client.close()
        for r in others:
            await r.aclose()


async def test_wrong_secret_is_an_auth_error(
    apsis_sandbox: tuple[ApsisSandbox, Account], redis: Redis, keys: Keys, limiter: RateLimiter
) -> None:
    sandbox, _ = apsis_sandbox
    bad = ApsisAccount(sandbox.url, "sandbox-client", "wrong", KEYSPACE)
    async with ApsisClient(bad, redis, limiter, keys, retry=FAST) as client:
        with pytest.raises(AuthError):
            await client.sections()


async def test_unknown_version_is_permanent_with_apsis_detail(apsis: ApsisClient) -> None:
    with pytest.raises(PermanentApiError) as raised:
        await apsis.patch_attributes(KEYSPACE, "42", SECTION, {"999999": "x"})
    assert raised.value.status == 400
    assert "999999" in raised.value.detail


# --- Shopify -----------------------------------------------------------------------------------


def _sandbox_shop(store: Store, url: str) -> Shop:
    """The installation of a sandbox store, for the Shopify client alone (no APSIS, no sections)."""
    return Shop(
        domain=store.domain,
        admin_url=url,
        api_version="2024-10",
        access_token=store.access_token,
        webhook_secret=store.webhook_secret,
        apsis=apsis_account("http://unused"),
        sections=(),
        limits=Limits(),
    )


@pytest.fixture
async def shopify(
    redis: Redis, keys: Keys, limiter: RateLimiter
) -> AsyncIterator[tuple[ShopifyClient, Store]]:
    store = Store(size=600)
    # A Plus shop (1,000 points/s): these tests are about what the client reads, not about the
    # bucket (the tests below set their own), and a Standard bucket makes the walks a minute long.
    store.rate_limit.plan = "plus"
    async with ShopifySandbox(store) as sandbox:
        shop = _sandbox_shop(store, sandbox.url)
        async with ShopifyClient(shop, redis, limiter, keys, retry=FAST) as client:
            yield client, store


async def test_walks_every_customer_page_by_page(shopify: tuple[ShopifyClient, Store]) -> None:
    client, _ = shopify
    total = await client.count_customers()
    sizes: list[int] = []
    ids: set[int] = set()
    async for page in client.iter_customer_pages(limit=250, fields=["id", "email", "updated_at"]):
        sizes.append(len(page))
        ids.update(c["id"] for c in page)
    assert total == 600 == len(ids)
    assert sizes == [166, 166, 166, 102]  # 6 points a customer: 166 keep a page under 1,000
    first = next(iter(ids))
    customer = await client.get_customer(first)
    assert customer is not None and customer["id"] == first
    assert await client.get_customer(1) is None


async def test_full_sync_pages_leave_room_for_webhook_reads(
    redis: Redis, keys: Keys, limiter: RateLimiter
) -> None:
    """On a Standard plan (100 points/s) a full-sync or audit page asks for at most 2 s of restore
    (33 customers at 6 points), so a webhook's customer read never waits 10 s behind a page."""
    store = Store(size=300)  # Standard plan by default
    async with ShopifySandbox(store) as sandbox:
        shop = _sandbox_shop(store, sandbox.url)
        async with ShopifyClient(shop, redis, limiter, keys, retry=FAST) as client:
            realtime, _ = await client.customer_page(None)
            token = lanes.LANE.set("bulk")
            try:
                walk, _ = await client.customer_page(None)
            finally:
                lanes.LANE.reset(token)
    assert client.cost.restore_per_s == 100
    assert len(realtime) == 166  # under Shopify's 1,000-point single-query maximum
    assert len(walk) == 33  # (200 - 2) // 6


async def test_orders_products_scopes_shop_and_webhooks(shopify: tuple[ShopifyClient, Store]) -> None:
    client, store = shopify
    orders = [o async for page in client.iter_order_pages(limit=250) for o in page]
    assert orders
    order = orders[0]
    line = (order.get("line_items") or [{}])[0]
    if line.get("product_id"):
        assert (await client.get_product(line["product_id"])) is not None
    own = [o async for page in client.iter_order_pages(customer_id=order["customer"]["id"]) for o in page]
    assert own and all(o["customer"]["id"] == order["customer"]["id"] for o in own)
    assert set(await client.access_scopes()) >= {"read_customers", "read_orders"}
    assert (await client.shop())["myshopify_domain"] == store.domain
    created = await client.create_webhook("customers/update", "https://hooks.example.com/webhooks/shopify")
    assert [w["id"] for w in await client.webhooks()] == [created["id"]]
    assert await client.delete_webhook(created["id"]) is True
    assert await client.delete_webhook(created["id"]) is False
    assert await client.webhooks() == []


async def test_updated_at_min_filters_the_walk(shopify: tuple[ShopifyClient, Store]) -> None:
    client, store = shopify
    customer_id = next(iter(store.customer_ids()))
    await store.update_customer(customer_id, first_name="Changed")
    recent = [
        c async for page in client.iter_customer_pages(updated_at_min="2100-01-01T00:00:00Z") for c in page
    ]
    assert recent == []
    since = [
        c["id"]
        async for page in client.iter_customer_pages(updated_at_min=_iso(store.updated_at(customer_id) - 1))
        for c in page
    ]
    assert customer_id in since


def _iso(ts: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat()


async def test_the_pool_spends_points_within_the_learned_bucket(
    redis: Redis, keys: Keys, limiter: RateLimiter
) -> None:
    """Two clients (two processes of the pool) walk pages against a 400-point bucket restoring
    100 points/s: they learn the bucket from the first answers and keep within it, so Shopify
    throttles at most the cold start, and the points they spend come close to what it allows."""
    store = Store(size=300)
    store.rate_limit.graphql_maximum = 400
    store.rate_limit.graphql_restore_rate = 100
    async with ShopifySandbox(store) as sandbox:
        shop = _sandbox_shop(store, sandbox.url)
        loop = asyncio.get_running_loop()
        duration = 4.0
        stop = loop.time() + duration
        pages = Counter[str]()

        async def walker(client: ShopifyClient) -> None:
            while loop.time() < stop:
                async for _ in client.iter_customer_pages(limit=20):
                    pages["pages"] += 1
                    if loop.time() > stop:
                        break

        with capture_logs() as logs:
            async with (
                ShopifyClient(shop, redis, limiter, keys, retry=FAST) as one,
                ShopifyClient(shop, redis, limiter, keys, retry=FAST) as two,
            ):
                await asyncio.gather(*(walker(c) for c in (one, one, two, two)))
                assert (one.cost.maximum, one.cost.restore_per_s) == (400.0, 100.0)
    throttled = sum(1 for entry in logs if entry.get("event") == "shopify_throttled")
    requested = 2 + 20 * 6
    admissible = (400 + 100 * duration) / requested  # pages if each cost all it asks for
    print(f"\n{pages['pages']} pages, {throttled} throttled, {admissible:.1f} admissible at full cost")
    assert throttled <= 2
    assert pages["pages"] >= 0.6 * admissible * Limits().safety


async def test_bulk_export_streams_every_customer(shopify: tuple[ShopifyClient, Store]) -> None:
    client, _ = shopify
    ids = set()
    async for line in client.iter_bulk_customers(poll_s=0.05):
        snapshot = normalize_bulk_customer(line)  # the mappings core reads every line
        ids.add(snapshot.id)
    assert len(ids) == 600 == await client.count_customers()


async def test_bulk_export_busy_and_throttled(shopify: tuple[ShopifyClient, Store]) -> None:
    client, store = shopify
    store.rate_limit.graphql_maximum = 12  # one run (10) and two polls, then 5 points a second
    store.rate_limit.graphql_restore_rate = 5
    operation = await client.run_bulk_customer_export()
    # A second run while the first is not polled to completion: either busy, or throttled and
    # retried until the points came back (then busy or started).
    try:
        await client.run_bulk_customer_export()
    except BulkOperationBusyError as exc:
        assert exc.retry_after is not None
    state = await client.wait_for_bulk_operation(operation, poll_s=0.05)
    assert state["status"] == "COMPLETED"
