"""`shopsync install` and `shopsync check` against both sandboxes, as subprocesses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from core.keys import Keys
from sandbox.apsis.server import ApsisSandbox
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store
from shopsync.installcheck import needed_topics, plan_webhooks
from tests.ops.helpers import calendar_free, cli_env, run_cli, sandbox_document, write_shops_file

DOMAIN = "demo-store.myshopify.com"
MAIN = "com.apsis1.sections.sandbox"
VIP = "com.apsis1.sections.sandbox-vip"
KEYSPACE = "com.apsis1.integrations.keyspaces.sandbox.shopify"


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
    assert report["ok"] and report["problems"] == [] and calendar_free(report["warnings"]) == []
    assert f"APSIS: section {MAIN} checked" in report["checked"]
    assert f"APSIS: keyspace {KEYSPACE} manages consent (manage_subscriptions is true)" in report["checked"]
    assert (
        f"APSIS: section {MAIN}: the Email topics com.apsis1.topics.news, com.apsis1.topics.offers exist for Email"
    ) in report["checked"]
    assert (
        f"APSIS: section {VIP}: the Email topics com.apsis1.topics.vip-news exist for Email"
        in report["checked"]
    )
    assert (
        f"APSIS: section {MAIN}: SMS consent is sent to com.apsis1.attributes.mobile (version 1004); the sync"
        " writes it with the customer's phone (E.164) whether or not section[0].attributes maps it"
    ) in report["checked"]
    assert sb.apsis.account.consent_1_requests() == 0


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
    newsletter = account.section(MAIN).folders[0]
    newsletter.topics = [t for t in newsletter.topics if t.discriminator != "com.apsis1.topics.offers"]
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
        f"APSIS: topic com.apsis1.topics.offers does not exist in section {MAIN}: fix section[0].consents.email.topics (Email topics: com.apsis1.topics.events, com.apsis1.topics.news)",
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


def _consent_document(sb: Sandboxes) -> dict[str, Any]:
    return sandbox_document(sb.shopify.url, sb.apsis.url)


async def test_check_consent_2_problems_one_line_each(sb: Sandboxes) -> None:
    # Consent 2.0: a topic of another channel, a keyspace that does not manage consent, no live
    # mobile attribute for SMS consent (the sync writes it even though the mapping does not name it).
    document = _consent_document(sb)
    section = document["shop"][0]["section"][0]
    section["consents"]["email"]["topics"] = ["com.apsis1.topics.news", "com.apsis1.topics.sms-offers"]
    del section["attributes"]["phone"]
    env = cli_env(sb.redis_url, sb.keys, write_shops_file(sb.tmp / "shops.toml", document))
    account = sb.apsis.account
    account.set_manage_subscriptions(KEYSPACE, False)
    account.deprecate_version(MAIN, "1004", at="2024-05-01T00:00:00Z")

    done = await run_cli(["check", DOMAIN, "--json"], env)
    assert done.code == 1, done.stdout + done.stderr
    report = orjson.loads(done.stdout)
    apsis = [p for p in report["problems"] if p.startswith("APSIS:")]
    assert apsis == [
        f"APSIS: keyspace {KEYSPACE} does not manage consent (manage_subscriptions is false), so APSIS refuses"
        " every consent write (403): set apsis.keyspace to one of com.apsis1.keyspaces.email",
        f"APSIS: topic com.apsis1.topics.sms-offers of section {MAIN} is for the SMS channel only, not Email:"
        " move it to section[0].consents.sms.topics or fix section[0].consents.email.topics"
        " (Email topics: com.apsis1.topics.events, com.apsis1.topics.news, com.apsis1.topics.offers)",
        f"APSIS: section {MAIN} has only deprecated versions of com.apsis1.attributes.mobile, the address SMS"
        " consent is sent to: add a live version of it to the section in APSIS One, or remove"
        " section[0].consents.sms",
    ]
    assert calendar_free(report["warnings"]) == []
    assert account.consent_1_requests() == 0


async def test_check_missing_address_attributes_and_a_topic_of_the_other_channel(sb: Sandboxes) -> None:
    document = _consent_document(sb)
    vip = document["shop"][0]["section"][1]
    del vip["attributes"]["email"]
    # vip-news is an Email-only topic; the VIP section has neither an email nor a mobile attribute.
    vip["consents"]["sms"] = {"topics": ["com.apsis1.topics.vip-news"]}
    env = cli_env(sb.redis_url, sb.keys, write_shops_file(sb.tmp / "shops.toml", document))
    account = sb.apsis.account
    account.section(VIP).attributes = [
        a for a in account.section(VIP).attributes if a.discriminator != "com.apsis1.attributes.email"
    ]
    account.reindex()

    done = await run_cli(["check", DOMAIN], env)
    assert done.code == 1
    problems = [line[6:] for line in done.stdout.splitlines() if line.startswith("FIX   ")]
    apsis = [p for p in problems if p.startswith("APSIS:")]
    assert apsis == [
        f"APSIS: topic com.apsis1.topics.vip-news of section {VIP} is for the Email channel only, not SMS:"
        " move it to section[1].consents.email.topics or fix section[1].consents.sms.topics (SMS topics: none)",
        f"APSIS: section {VIP} has no attribute com.apsis1.attributes.email, the address Email consent is"
        " sent to: add a live version of it to the section in APSIS One, or remove section[1].consents.email",
        f"APSIS: section {VIP} has no attribute com.apsis1.attributes.mobile, the address SMS consent is"
        " sent to: add a live version of it to the section in APSIS One, or remove section[1].consents.sms",
    ]


async def test_check_warns_of_a_consent_list_and_passes(sb: Sandboxes) -> None:
    document = _consent_document(sb)
    document["shop"][0]["section"][0]["consents"]["sms"]["consent_list"] = "com.apsis1.consent-lists.sms"
    env = cli_env(sb.redis_url, sb.keys, write_shops_file(sb.tmp / "shops.toml", document))
    assert (await run_cli(["install", DOMAIN, "--address", sb.address, "--json"], env)).code == 0

    done = await run_cli(["check", DOMAIN, "--address", sb.address], env)
    assert done.code == 0, done.stdout + done.stderr
    warnings = calendar_free([line[6:] for line in done.stdout.splitlines() if line.startswith("WARN  ")])
    assert warnings == [
        "section[0].consents.sms.consent_list (com.apsis1.consent-lists.sms) is ignored: APSIS Consent 2.0"
        " has no consent lists (consent is per profile, channel and topic); remove the key, the topics stay"
    ]
    assert done.stdout.strip().endswith(f"{DOMAIN}: installation OK")
    as_json = orjson.loads((await run_cli(["check", DOMAIN, "--address", sb.address, "--json"], env)).stdout)
    assert as_json["ok"] is True and calendar_free(as_json["warnings"]) == warnings
    assert sb.apsis.account.consent_1_requests() == 0
