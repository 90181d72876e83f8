"""`shopsync app-config DOMAIN --address URL`: the `shopify.app.toml` fragment of a Dev Dashboard app.

Keys as shopify.dev's "App configuration" reference names them
(https://shopify.dev/docs/apps/build/cli-for-apps/app-configuration): `[access_scopes] scopes`
(a comma-separated string), `[auth] redirect_urls`, `[webhooks] api_version` and one
`[[webhooks.subscriptions]]` per topic with `topics` and `uri`, the mandatory compliance topics in
one subscription of their own with `compliance_topics`. The topics are the ones `shopsync install`
registers (`worker.install.needed_topics`), the scopes what the sync needs plus `auth.scopes`,
`[auth]` only for `mode = "oauth"` (the receiver's `/auth/callback`). Printed to stdout for the
operator to merge into the app's file and `shopify app deploy`.
"""

from __future__ import annotations

import argparse
import json
from urllib.parse import urlsplit

from core.jobs import PRIVACY_TOPICS
from core.settings import Settings
from mappings.installation import InstallationError, Shop
from receiver.auth import requested_scopes
from shopsync.command_support import fail
from shopsync.shops import load_installations
from worker.install import needed_topics

COMPLIANCE_TOPICS = tuple(sorted(PRIVACY_TOPICS))  # customers/data_request, customers/redact, shop/redact


def run(args: argparse.Namespace, settings: Settings) -> int:
    address = str(args.address)
    parts = urlsplit(address)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        return fail(f"--address must be the http(s) URL of POST /webhooks/shopify, not {address!r}", 2)
    try:
        installations = load_installations(settings.shops_file)
    except InstallationError as exc:
        return fail(str(exc))
    shop = installations.get(args.domain)
    if shop is None:
        known = ", ".join(sorted(installations.shops)) or "none"
        return fail(f"no shop {args.domain!r} in {settings.shops_file} (shops: {known})")
    print(fragment(shop, address), end="")
    return 0


def fragment(shop: Shop, address: str) -> str:
    """The TOML text: scopes, redirect URL (oauth), webhook version, subscriptions."""
    parts = urlsplit(address)
    origin = f"{parts.scheme}://{parts.netloc}"
    lines = [
        f"# shopify.app.toml for {shop.domain} (shopsync app-config): merge into the app's file,",
        "# keep its name, client_id and application_url, then run `shopify app deploy`.",
        "",
        "[access_scopes]",
        f"scopes = {_s(','.join(requested_scopes(shop)))}",
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
