"""`shopsync app-config DOMAIN --address URL`: the `shopify.app.toml` fragment of a Dev Dashboard app.

Keys as shopify.dev's "App configuration" reference names them
(https://shopify.dev/docs/apps/build/cli-for-apps/app-configuration): `[access_scopes] scopes`
(a comma-separated string), `[auth] redirect_urls`, `[webhooks] api_version` and one
`[[webhooks.subscriptions]]` per topic with `topics` and `uri`, the mandatory compliance topics in
one subscription of their own with `compliance_topics`. The topics are the ones `shopsync install`
registers (`worker.install.needed_topics`), the scopes what the sync needs plus `auth.scopes`,
`[auth]` only for `mode = "oauth"` (the receiver's `/auth/callback`). Printed to stdout for the
operator to merge into the app's file and `shopify app deploy`.

It needs only the shop's Shopify part (`domain`, `api_version`, `[shop.auth]`): in the setup guide
(docs/CONFIGURATION.md) it comes before the APSIS account and the sections are in the file, so
the rest of the file is not checked here (`shopsync check` does that).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.config import ConfigFileError, read_config_file
from core.jobs import PRIVACY_TOPICS
from core.settings import Settings
from mappings.installation import InstallationError, Shop, ShopAuth, requested_scopes
from mappings.installation_app import parse_shop_app
from shopsync.command_support import fail
from worker.install import needed_topics

COMPLIANCE_TOPICS = tuple(sorted(PRIVACY_TOPICS))  # customers/data_request, customers/redact, shop/redact


def run(args: argparse.Namespace, settings: Settings) -> int:
    address = str(args.address)
    parts = urlsplit(address)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        return fail(f"--address must be the http(s) URL of POST /webhooks/shopify, not {address!r}", 2)
    try:
        shop = shopify_part(settings.shops_file, args.domain)
    except (ConfigFileError, InstallationError) as exc:
        return fail(str(exc))
    print(fragment(shop, address), end="")
    return 0


@dataclass(frozen=True)
class AppShop:
    """The part of a `[[shop]]` a Dev Dashboard app's configuration depends on."""

    domain: str
    api_version: str
    auth: ShopAuth


def shopify_part(path: str, domain: str) -> AppShop:
    """The shop's Shopify part, read and checked as the whole file is, without the rest of it."""
    return AppShop(*parse_shop_app(read_config_file(path), domain, os.environ, source=path))


def fragment(shop: Shop | AppShop, address: str) -> str:
    """The TOML text: scopes, redirect URL (oauth), webhook version, subscriptions."""
    parts = urlsplit(address)
    origin = f"{parts.scheme}://{parts.netloc}"
    lines = [
        f"# shopify.app.toml for {shop.domain} (shopsync app-config): merge into the app's file,",
        "# keep its name, client_id and application_url, then run `shopify app deploy`.",
        "",
        "[access_scopes]",
        f"scopes = {_s(','.join(requested_scopes(shop.auth)))}",
        "",
    ]
    if shop.auth.mode == "oauth":
        lines += ["[auth]", f"redirect_urls = [{_s(origin + '/auth/callback')}]", ""]
    lines += ["[webhooks]", f"api_version = {_s(shop.api_version)}", ""]
    for topic in needed_topics(shop.api_version):
        lines += ["[[webhooks.subscriptions]]", f"topics = [{_s(topic)}]", f"uri = {_s(address)}", ""]
    compliance = ", ".join(_s(t) for t in COMPLIANCE_TOPICS)
    lines += ["[[webhooks.subscriptions]]", f"compliance_topics = [{compliance}]", f"uri = {_s(address)}"]
    return "\n".join(lines) + "\n"


def _s(text: str) -> str:
    """A TOML basic string (JSON's escaping is a subset TOML reads alike)."""
    return json.dumps(text)
