"""The installation that points at running sandboxes: `mappings/demo.toml` with their URLs."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from mappings.installation import Installations
from mappings.installation_parse import parse_installations

DEMO = Path(__file__).resolve().parent.parent / "mappings" / "demo.toml"


def installation_document(
    shopify_url: str, apsis_url: str, api_version: str = "2024-10", **shop_overrides: Any
) -> dict[str, Any]:
    document = tomllib.loads(DEMO.read_text())
    shop = document["shop"][0]
    shop["admin_url"] = shopify_url
    shop["apsis"]["base_url"] = apsis_url
    shop["api_version"] = api_version
    shop.update(shop_overrides)
    return document


def installations_for(
    shopify_url: str, apsis_url: str, api_version: str = "2024-10", **shop_overrides: Any
) -> Installations:
    document = installation_document(shopify_url, apsis_url, api_version, **shop_overrides)
    return parse_installations(document, env={}, source="sandbox-installation")


def write_installation(path: Path, document: dict[str, Any]) -> Path:
    """Write an installations file (for `shopsync` processes started with SHOPS_FILE=path)."""
    path.write_text(tomli_w.dumps(document))
    return path
