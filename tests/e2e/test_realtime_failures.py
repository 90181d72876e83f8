"""Real-time sync under bursts, outages and permanent errors: delayed maybe, never lost."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from core.keys import Keys
from sandbox.apsis.account import Account
from tests.e2e.harness import SECTION_MAIN, pipeline, write_installation_file
from worker import deadletters


async def test_a_burst_for_one_customer_coalesces(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        customer = await p.store.create_customer(email="burst@example.com")
        await p.settle()
        before = len(p.account.writes_of("attributes"))
        for i in range(20):  # twenty edits within well under a second
            await p.store.update_customer(customer.id, first_name=f"Name{i}")
        await p.settle()
        patches = [
            w
            for w in p.account.writes_of("attributes")[before:]
            if w.params["profile_key"] == str(customer.id)
        ]
        assert 1 <= len(patches) <= 2, patches
        assert p.mismatches([customer.id]) == []


async def test_an_apsis_outage_delays_but_loses_nothing(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        p.account.faults.start_outage(time.time(), seconds=3.0)
        ids = [
            (await p.store.create_customer(email=f"o{i}@example.com", email_state="subscribed")).id
            for i in range(5)
        ]
        await p.settle(limit_s=90)
        assert p.mismatches(ids) == []
        assert await p.dead_letters() == []
        assert p.account.faults_injected["outage"] > 0, p.account.faults_injected


def _undeprecate(account: Account, section: str, version_id: str) -> None:
    for attribute in account.section(section).attributes:
        for version in attribute.versions:
            if version.id == version_id:
                version.deprecated_at = None
    account.reindex()


async def test_a_permanent_error_is_a_dead_letter_and_replays_once_fixed(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        p.account.deprecate_version(SECTION_MAIN, "1002")  # first_name's version: APSIS now answers 400
        customer = await p.store.create_customer(email="dl@example.com")
        await p.settle()
        letters = await deadletters.list_letters(p.redis, keys)
        assert letters, "the failing job must be kept"
        assert all("1002" in letter.error for letter in letters), [letter.error for letter in letters]
        assert p.account.profile(p.shop.apsis.keyspace, str(customer.id)) is None
        _undeprecate(p.account, SECTION_MAIN, "1002")
        for letter in letters:
            assert await deadletters.replay(p.redis, keys, letter.job_id)
        await p.settle()
        assert await deadletters.list_letters(p.redis, keys) == []
        assert p.mismatches([customer.id]) == []


async def test_resync_command_syncs_one_customer_from_shopify(
    redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    async with pipeline(redis_url, keys, customers=20) as p:
        seeded = next(iter(p.store.customer_ids()))  # never synced: no webhook was sent for it
        shops_file = write_installation_file(tmp_path, p)
        env = {"REDIS_URL": redis_url, "SHOPSYNC_KEY_PREFIX": keys.prefix, "SHOPS_FILE": str(shops_file)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shopsync.cli",
            "resync",
            p.shop.domain,
            str(seeded),
            env={**_base_env(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip() in (f"customer {seeded}: written", f"customer {seeded}: skipped")
        assert p.mismatches([seeded]) == []
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shopsync.cli",
            "resync",
            p.shop.domain,
            "123",
            env={**_base_env(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 1
        assert err.decode().strip().count("\n") == 0 and "does not exist" in err.decode()


def _base_env() -> dict[str, str]:
    import os

    return {
        k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SHOPS_FILE", "SHOPSYNC_KEY_PREFIX")
    }
