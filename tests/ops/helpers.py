"""Helpers of the operations tests: installation files for sandboxes, `shopsync` subprocesses."""

from __future__ import annotations

import asyncio
import os
import sys
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from core.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "mappings" / "demo.toml"


def sandbox_document(shopify_url: str, apsis_url: str, **shop_overrides: Any) -> dict[str, Any]:
    """mappings/demo.toml pointed at running sandboxes; top-level shop keys overridden."""
    document = tomllib.loads(DEMO.read_text())
    shop = document["shop"][0]
    shop["admin_url"] = shopify_url
    shop["apsis"]["base_url"] = apsis_url
    for key, value in shop_overrides.items():
        if key.startswith("apsis_"):
            shop["apsis"][key[len("apsis_") :]] = value
        else:
            shop[key] = value
    return document


def calendar_free(warnings: list[str]) -> list[str]:
    """`shopsync check`'s warnings but the GraphQL version's support window, which moves with the
    calendar (the check takes today's date): with the demo's 2026-10 it warns from 2027-07-03
    and a test expecting no warning would fail from then on, with no change to the code. That
    warning is tested on fixed dates (tests/clients/test_shopify_versions.py, test_installcheck_shopify.py)."""
    return [w for w in warnings if not w.startswith(("Shopify: graphql_api_version", "graphql_api_version"))]


def write_shops_file(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(document))
    return path


def cli_env(redis_url: str, keys: Keys, shops_file: Path | str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SHOPS_FILE", "ADMIN_TOKEN", "PORT")}
    env.update(
        REDIS_URL=redis_url,
        SHOPSYNC_KEY_PREFIX=keys.prefix,
        LOG_FORMAT="json",
        LOG_LEVEL=extra.pop("LOG_LEVEL", "warning"),
        PYTHONUNBUFFERED="1",
    )
    if shops_file is not None:
        env["SHOPS_FILE"] = str(shops_file)
    env.update(extra)
    return env


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str


async def run_cli(args: list[str], env: dict[str, str], timeout_s: float = 120) -> Done:
    """Run `python -m shopsync.cli ARGS` without blocking the event loop (sandboxes live in it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shopsync.cli",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())


async def wait_until(
    check: Callable[[], Awaitable[object]], limit_s: float = 60.0, every_s: float = 0.05
) -> None:
    """Poll `check` until it is truthy; a generous limit (a wait, never a timing assertion)."""
    async with asyncio.timeout(limit_s):
        while True:
            if await check():
                return
            await asyncio.sleep(every_s)
