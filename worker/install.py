"""Registering a shop's webhook subscriptions, and the `install_shop` job that the OAuth callback
enqueues once a merchant approved the app (receiver/auth.py).

Which topics: every topic of `core.jobs.TOPIC_JOBS` that the shop's API version offers, except the
mandatory privacy topics (`customers/data_request`, `customers/redact`, `shop/redact`): Shopify
does not let an app create those through the API; an app declares them in its configuration
(`shopify.app.toml` `compliance_topics`, see `shopsync app-config`). `shopsync install` uses the
same functions from the command line.

`install_shop({"shop", "address"})`: forget an earlier uninstall of the shop, make every needed
topic point at `address` (keep what is there, replace stale addresses), then start a full sync
(or find the running one). A transient Shopify failure retries the whole job (each step is
idempotent); a permanent one still starts the full sync and then fails the job into a dead letter
that says which topics are missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from core import fullsync_control
from core.jobs import PRIVACY_TOPICS, TOPIC_JOBS
from core.redis_conn import typed
from mappings.installation import Shop
from worker.errors import ApiError, AuthError
from worker.errors import is_transient as api_error_is_transient
from worker.runtime import TransientError, run_job

INSTALL_JOB = "install_shop"  # the name receiver/auth.py enqueues
INSTALL_TIMEOUT_S = 60
# Topics newer than the oldest supported API version (2020-07): the release that introduced them.
TOPIC_SINCE: Mapping[str, str] = {
    "customers_marketing_consent/update": "2021-10",
    "customers_email_marketing_consent/update": "2022-04",
    "customer.tags_added": "2023-07",
    "customer.tags_removed": "2023-07",
}
log = structlog.get_logger("worker.install")

Json = dict[str, Any]


class WebhookClient(Protocol):
    """What registering subscriptions needs of a Shopify client."""

    async def webhooks(self) -> list[Json]: ...

    async def create_webhook(self, topic: str, address: str) -> Json: ...

    async def delete_webhook(self, webhook_id: Any) -> bool: ...


def needed_topics(api_version: str) -> list[str]:
    """The webhook topics an installation on `api_version` subscribes to, sorted."""
    return sorted(
        topic
        for topic in set(TOPIC_JOBS)
        if topic not in PRIVACY_TOPICS and api_version >= TOPIC_SINCE.get(topic, "")
    )


@dataclass
class InstallResult:
    kept: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # topics whose subscription pointed elsewhere
    problems: list[str] = field(default_factory=list)
    transient: bool = False  # some problem may go away by trying again

    def to_json(self) -> Json:
        return {
            "kept": self.kept,
            "created": self.created,
            "replaced": self.replaced,
            "problems": self.problems,
        }


@dataclass(frozen=True)
class WebhookPlan:
    keep: list[str]
    create: list[str]
    delete: list[tuple[str, Any]]  # (topic, subscription id) of stale subscriptions


def plan_webhooks(existing: Sequence[Mapping[str, Any]], topics: Iterable[str], address: str) -> WebhookPlan:
    """Pure: which subscriptions to keep, create, and delete so each topic points at `address`.

    An app's token lists only that app's subscriptions, so a needed topic subscribed at another
    address is this installation's, left over from an earlier address: replace it."""
    keep: list[str] = []
    create: list[str] = []
    delete: list[tuple[str, Any]] = []
    for topic in topics:
        subs = [s for s in existing if s.get("topic") == topic]
        if any(s.get("address") == address for s in subs):
            keep.append(topic)
        else:
            create.append(topic)
        delete.extend((topic, s["id"]) for s in subs if s.get("address") != address)
    return WebhookPlan(keep, create, delete)


def refused_token(shop: Shop, status: int | None) -> str:
    """The problem line for a token Shopify refuses, saying what to fix for the shop's auth mode."""
    fix = {
        "static": f"set access_token of {shop.domain} to the app's Admin API access token (a private app's API password)",
        "client_credentials": "check the app's client id and secret and that the app is installed on the store",
        "oauth": f"approve the app again at /auth/install?shop={shop.domain}",
    }[shop.auth.mode]
    return f"Shopify: the access token is refused ({status}): {fix}"


async def install_webhooks(shop: Shop, client: WebhookClient, address: str) -> InstallResult:
    """Subscribe every needed topic at `address`; keep what is there, replace stale addresses."""
    result = InstallResult()
    try:
        existing = await client.webhooks()
    except AuthError as exc:
        result.problems.append(refused_token(shop, exc.status))
        return result
    except ApiError as exc:
        result.problems.append(f"Shopify: cannot list the webhook subscriptions ({exc})")
        result.transient = api_error_is_transient(exc)
        return result
    plan = plan_webhooks(existing, needed_topics(shop.api_version), address)
    result.kept = plan.keep
    stale_topics = {topic for topic, _ in plan.delete}
    failed: set[str] = set()
    for topic in plan.create:
        try:
            await client.create_webhook(topic, address)
        except ApiError as exc:
            result.problems.append(f"Shopify: cannot subscribe {topic} at {address}: {exc}")
            result.transient |= api_error_is_transient(exc)
            failed.add(topic)
            continue
        (result.replaced if topic in stale_topics else result.created).append(topic)
    for topic, sub_id in plan.delete:
        if topic in failed:
            continue  # keep the old subscription rather than none
        try:
            await client.delete_webhook(sub_id)
        except ApiError as exc:
            result.problems.append(
                f"Shopify: cannot delete the stale subscription {sub_id} of {topic}: {exc}"
            )
            result.transient |= api_error_is_transient(exc)
    return result


class InstallError(Exception):
    """The webhooks could not all be registered, for a reason trying again will not mend."""


async def install_shop(ctx: dict[str, Any], arg: dict[str, Any]) -> Any:
    async def run(app: Any, arg: dict[str, Any]) -> Json:
        shop = app.installations.get(arg["shop"])
        if shop is None:
            raise InstallError(f"shop {arg['shop']!r} is not in {app.installations.source}")
        was_uninstalled = bool(await typed(app.redis.srem(app.keys.uninstalled, shop.domain)))
        result = await install_webhooks(shop, app.shopify(shop), str(arg["address"]))
        if result.problems and result.transient:
            raise TransientError("; ".join(result.problems))
        started = await fullsync_control.start_full_sync(
            app.redis, app.keys, shop.domain, bulk=shop.sync.bulk_export
        )
        log.info(
            "shop_installed",
            created=len(result.created),
            replaced=len(result.replaced),
            kept=len(result.kept),
            problems=len(result.problems),
            sync_id=started.sync_id,
        )
        if result.problems:
            raise InstallError("; ".join(result.problems))
        return {
            **result.to_json(),
            "was_uninstalled": was_uninstalled,
            "sync_id": started.sync_id,
        }

    return await run_job(
        ctx,
        INSTALL_JOB,
        run,
        (arg,),
        queue=ctx["app"].keys.realtime_queue,
        timeout_s=INSTALL_TIMEOUT_S,
        bind={"shop": arg.get("shop")},
    )
