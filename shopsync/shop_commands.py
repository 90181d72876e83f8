"""The commands that talk to Shopify and APSIS One for one shop: `shopsync resync|check|install`.

`resync` fetches one customer from Shopify and runs the same sync a webhook would; `check`
validates an installation against both APIs; `install` registers the webhook subscriptions, marks
the shop installed, then checks. Each returns the exit status: 0 success, 1 a reported failure,
2 bad usage.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from core.keys import Keys
from core.settings import Settings
from mappings.installation import InstallationError, Shop
from shopsync import installcheck
from shopsync.command_support import fail, print_json, with_redis
from shopsync.shops import load_installations, unknown_shop
from shopsync.worker_session import CommandFailed, load_shop, with_worker

if TYPE_CHECKING:
    from worker.context import WorkerContext

# --- resync ----------------------------------------------------------------------------------


def resync(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch one customer from Shopify now and run the same sync a webhook would."""
    try:
        installations, shop = load_shop(settings, args.domain)
        return with_worker(settings, installations, lambda app: _resync(app, shop, args.customer_id))
    except CommandFailed as exc:
        return fail(str(exc))


async def _resync(app: WorkerContext, shop: Shop, customer_id: int) -> int:
    from worker.errors import ApiError
    from worker.sync import submit
    from worker.sync_update import Update

    try:
        customer = await app.shopify(shop).get_customer(customer_id)
    except ApiError as exc:
        return fail(f"Shopify: {exc}")
    if customer is None:
        return fail(f"customer {customer_id} does not exist in {shop.domain}")
    update = Update(kind="rest", payload=customer, received_at=time.time(), source="resync")
    try:
        outcome = await submit(app, shop, f"resync:{customer_id}:{time.time_ns()}", update)
    except ApiError as exc:
        return fail(f"APSIS: {exc}")
    print(f"customer {customer_id}: {outcome}")
    return 0


# --- check and install -----------------------------------------------------------------------


def check(args: argparse.Namespace, settings: Settings) -> int:
    """Validate an installation against Shopify and APSIS One; one line per problem, exit 1 if any."""
    return _installation_command(settings, args.domain, args.address, install=False, as_json=args.json)


def install(args: argparse.Namespace, settings: Settings) -> int:
    """Register the webhook subscriptions at Shopify for --address, mark the shop installed, check."""
    if not args.address.startswith(("https://", "http://")):
        return fail(f"--address must be an http(s) URL, not {args.address!r}", 2)
    return _installation_command(
        settings, args.domain, args.address, install=True, as_json=getattr(args, "json", False)
    )


def _installation_command(
    settings: Settings, domain: str, address: str | None, *, install: bool, as_json: bool
) -> int:
    try:
        installations = load_installations(settings.shops_file)
    except InstallationError as exc:
        return fail(str(exc))
    shop = installations.get(domain)
    if shop is None:
        return fail(unknown_shop(domain, settings.shops_file, installations))

    async def action(redis: aioredis.Redis, keys: Keys) -> int:
        clients = installcheck.Clients.build(shop, redis, keys)
        output: dict[str, Any] = {}
        try:
            if install:
                assert address is not None
                result = await installcheck.install_webhooks(shop, clients.shopify, address)
                was_uninstalled = await installcheck.mark_installed(redis, keys, shop.domain)
                output["install"] = {**result.to_json(), "was_uninstalled": was_uninstalled}
                if not as_json:
                    _print_install(shop.domain, address, result, was_uninstalled)
            report = await installcheck.check(shop, clients, address)
        finally:
            await clients.close()
        output.update(report.to_json())
        problems = report.problems + output.get("install", {}).get("problems", [])
        if as_json:
            print_json({**output, "ok": not problems})
        else:
            _print_report(report, problems)
        return 1 if problems else 0

    return with_redis(settings, action)


def _print_install(domain: str, address: str, result: Any, was_uninstalled: bool) -> None:
    print(f"{domain}: webhook subscriptions at {address}")
    print(
        f"  kept {len(result.kept)}, created {len(result.created)}, replaced {len(result.replaced)}"
        f" (stale address){', problems ' + str(len(result.problems)) if result.problems else ''}"
    )
    if was_uninstalled:
        print("  the shop was marked uninstalled: it syncs again")


def _print_report(report: Any, problems: list[str]) -> None:
    for line in report.checked:
        print(f"ok    {line}")
    for line in report.warnings:
        print(f"WARN  {line}")
    for line in problems:
        print(f"FIX   {line}")
    if problems:
        print(f"{report.domain}: {len(problems)} problem(s) to fix")
    else:
        print(f"{report.domain}: installation OK")
