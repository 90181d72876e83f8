"""`shopsync install` and `shopsync check` against both sandboxes, as subprocesses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from core.keys import Keys
from sandbox.apsis.server import ApsisSandbox
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store
from shopsync.installcheck import needed_topics, plan_webhooks
from tests.ops.helpers import cli_env, run_cli, sandbox_document, write_shops_file

DOMAIN = "demo-store.myshopify.com"
MAIN = "com.apsis1.sections.sandbox"


@dataclass
class Sandboxes:
    shopify: ShopifySandbox
    apsis: ApsisSandbox
    tmp: Path
    redis_url: str
    keys: Keys

    @property
    def address(self) -> str:
        return "https://sync.example.com/webhooks/shopify"

    def env(self, **overrides: str) -> dict[str, str]:
        document = sandbox_document(self.shopify.url, self.apsis.url, **overrides)
        path = write_shops_file(self.tmp / "shops.toml", document)
        return cli_env(self.redis_url, self.keys, path)


@pytest.fixture
async def sb(tmp_path: Path, redis_url: str, keys: Keys, redis: aioredis.Redis) -> AsyncIterator[Sandboxes]:
    async with ApsisSandbox() as apsis, ShopifySandbox(Store(size=5)) as shopify:
        yield Sandboxes(shopify, apsis, tmp_path, redis_url, keys)


def test_needed_topics_follow_the_api_version() -> None:
    new = needed_topics("2024-10")
    assert "customer.tags_added" in new and "customers_email_marketing_consent/update" in new
    assert not {"customers/redact", "shop/redact", "customers/data_request"} & set(new)
    old = needed_topics("2020-07")
    assert "customer.tags_added" not in old and "customers_marketing_consent/update" not in old
    assert "customers/update" in old and "orders/paid" in old and "app/uninstalled" in old


def test_plan_keeps_creates_and_replaces() -> None:
    existing = [
        {"id": 1, "topic": "customers/create", "address": "https://a/x"},
        {"id": 2, "topic": "customers/update", "address": "https://old/x"},
    ]
    plan = plan_webhooks(existing, ["customers/create", "customers/update", "orders/paid"], "https://a/x")
    assert plan.keep == ["customers/create"]
    assert plan.create == ["customers/update", "orders/paid"]
    assert plan.delete == [("customers/update", 2)]


async def test_install_is_idempotent_and_check_passes(sb: Sandboxes, redis: aioredis.Redis) -> None:
    env = sb.env()
    await redis.sadd(sb.keys.uninstalled, DOMAIN)  # type: ignore[misc]
    # A subscription left over from an earlier address is replaced.
    sb.shopify.store.add_subscription("customers/update", "https://old.example.com/hooks", "2024-10")

    first = await run_cli(["install", DOMAIN, "--address", sb.address, "--json"], env)
    assert first.code == 0, first.stdout + first.stderr
    result = orjson.loads(first.stdout)
    topics = needed_topics("2024-10")
    assert result["ok"] is True and result["problems"] == []
    assert result["install"]["replaced"] == ["customers/update"]
    assert sorted(result["install"]["created"]) == sorted(t for t in topics if t != "customers/update")
    assert result["install"]["was_uninstalled"] is True
    assert not await redis.sismember(sb.keys.uninstalled, DOMAIN)  # type: ignore[misc]
    subs = sb.shopify.store.subscriptions.values()
    assert sorted(s.topic for s in subs) == topics
    assert {s.address for s in subs} == {sb.address}

    again = await run_cli(["install", DOMAIN, "--address", sb.address], env)
    assert again.code == 0, again.stdout + again.stderr
    assert f"kept {len(topics)}, created 0, replaced 0" in again.stdout
    assert again.stdout.strip().endswith(f"{DOMAIN}: installation OK")
    assert len(sb.shopify.store.subscriptions) == len(topics)

    checked = await run_cli(["check", DOMAIN, "--address", sb.address, "--json"], env)
    assert checked.code == 0, checked.stdout + checked.stderr
    report = orjson.loads(checked.stdout)
    assert report["ok"] and report["problems"] == []
    assert f"APSIS: section {MAIN} checked" in report["checked"]


async def test_check_names_each_problem_in_one_line(sb: Sandboxes) -> None:
    env = sb.env()
    assert (await run_cli(["install", DOMAIN, "--address", sb.address], env)).code == 0
    store = sb.shopify.store
    paid = next(s for s in store.subscriptions.values() if s.topic == "orders/paid")
    store.remove_subscription(paid.id)
    store.scopes.discard("read_orders")
    sb.apsis.account.deprecate_version(MAIN, "1003", at="2024-05-01T00:00:00Z")
    sb.apsis.account.deprecate_version(MAIN, "2002", at="2024-05-01T00:00:00Z")

    done = await run_cli(["check", DOMAIN, "--address", sb.address], env)
    assert done.code == 1
    problems = [line[6:] for line in done.stdout.splitlines() if line.startswith("FIX   ")]
    assert problems == [
        "Shopify: access scope read_orders is missing: give the app read access to Orders in its Admin API settings",
        f"Shopify: no webhook subscription for orders/paid at {sb.address}: run shopsync install {DOMAIN} --address {sb.address}",
        "APSIS: attribute version 1003 (section[0].attributes.last_name) is deprecated since 2024-05-01T00:00:00Z: com.apsis1.attributes.lastname has no live version",
        "APSIS: event version 2002 (section[0].events.order_line) is deprecated since 2024-05-01T00:00:00Z: com.apsis1.integrations.events.order-line has no live version",
    ]
    assert done.stdout.strip().endswith(f"{DOMAIN}: 4 problem(s) to fix")


async def test_check_wrong_credentials_and_missing_definitions(sb: Sandboxes) -> None:
    env = sb.env(
        access_token="shpat_wrong",
        apsis_client_secret="wrong-secret",
    )
    done = await run_cli(["check", DOMAIN, "--json"], env)
    assert done.code == 1
    assert orjson.loads(done.stdout)["problems"] == [
        f"Shopify: the access token is refused (401): set access_token of {DOMAIN} to the app's Admin API access token (a private app's API password)",
        "APSIS: the API client sandbox-client is refused (401): set apsis.client_id and apsis.client_secret to an API key of the APSIS One account (Account settings > API keys)",
    ]

    document_env = sb.env(apsis_keyspace="com.apsis1.keyspaces.nope")
    account = sb.apsis.account
    section = account.section(MAIN)
    section.consent_lists[0].topics = [
        t for t in section.consent_lists[0].topics if t.discriminator != "com.apsis1.topics.offers"
    ]
    account.reindex()
    done = await run_cli(["check", DOMAIN], document_env)
    assert done.code == 1
    problems = [line[6:] for line in done.stdout.splitlines() if line.startswith("FIX   ")]
    topics = needed_topics("2024-10")
    assert problems[: len(topics)] == [
        f"Shopify: no webhook subscription for {t}: run shopsync install {DOMAIN} --address URL"
        for t in topics
    ]
    assert problems[len(topics) :] == [
        "APSIS: keyspace com.apsis1.keyspaces.nope does not exist: set apsis.keyspace to one of com.apsis1.integrations.keyspaces.sandbox.shopify, com.apsis1.keyspaces.email",
        f"APSIS: topic com.apsis1.topics.offers does not exist on consent list com.apsis1.consent-lists.newsletter in section {MAIN}: fix section[0].consents.email.topics (existing: com.apsis1.topics.events, com.apsis1.topics.news)",
    ]


async def test_install_refuses_a_bad_address_and_unknown_shop(sb: Sandboxes) -> None:
    env = sb.env()
    bad = await run_cli(["install", DOMAIN, "--address", "ftp://x"], env)
    assert bad.code == 2 and bad.stderr.strip() == "shopsync: --address must be an http(s) URL, not 'ftp://x'"
    unknown = await run_cli(["check", "other.myshopify.com"], env)
    assert unknown.code == 1
    assert unknown.stderr.strip().startswith("shopsync: no shop 'other.myshopify.com' in ")


async def test_check_names_the_live_version_of_a_deprecated_attribute(sb: Sandboxes) -> None:
    document = sandbox_document(sb.shopify.url, sb.apsis.url)
    document["shop"][0]["section"][0]["attributes"]["email"] = "901"
    env = cli_env(sb.redis_url, sb.keys, write_shops_file(sb.tmp / "shops.toml", document))
    done = await run_cli(["check", DOMAIN, "--json"], env)
    assert done.code == 1
    problems = orjson.loads(done.stdout)["problems"]
    assert (
        "APSIS: attribute version 901 (section[0].attributes.email) is deprecated since 2024-03-01T00:00:00Z:"
        " use version 1001 of com.apsis1.attributes.email"
    ) in problems
