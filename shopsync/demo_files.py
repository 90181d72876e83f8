"""The demo's installations file: mappings/demo.toml as `make run` connects it (shopsync/demo.py)."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import tomli_w

from sandbox.shopify.oauth import OAuthConfig

DEMO_TOML = Path(__file__).resolve().parent.parent / "mappings" / "demo.toml"
DEMO_BULK_EXPORT = True  # as `shopsync full-sync` does for a shop with [shop.sync] bulk_export


def installation_file(args: argparse.Namespace, directory: Path) -> Path:
    """mappings/demo.toml pointed at this run's sandbox ports and connected the way a Dev Dashboard
    app of the merchant's own store connects: the client credentials grant with the sandbox app's
    client id and secret (the store's webhook secret) instead of the static token; the full sync
    by bulk export and profile imports."""
    document = tomllib.loads(DEMO_TOML.read_text())
    shop = document["shop"][0]
    shop["admin_url"] = f"http://127.0.0.1:{args.shopify_port}"
    shop["apsis"]["base_url"] = f"http://127.0.0.1:{args.apsis_port}"
    shop.pop("access_token", None)
    shop["auth"] = {
        "mode": "client_credentials",
        "client_id": OAuthConfig().client_id,
        "client_secret": shop["webhook_secret"],
    }
    # The full sync reads the store by bulk export (a Standard plan's 100 cost points/s hold
    # GraphQL pages near 19 customers/s) and loads APSIS through profile imports, as a big store's
    # would (per profile, APSIS's limits hold it near 20-40 customers/s): the demo's store is
    # small, so the threshold is lowered to show that path.
    shop.setdefault("sync", {}).update(bulk_export=DEMO_BULK_EXPORT, import_threshold=1000)
    path = directory / "demo.toml"
    path.write_text(tomli_w.dumps(document))
    return path
