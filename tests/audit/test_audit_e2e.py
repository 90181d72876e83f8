"""The drift audit end to end: sandbox store and APSIS account over HTTP, real Redis, arq workers.

A fully synced store gets drift planted on purpose (a profile deleted in APSIS, an attribute
edited there by hand, a consent given in APSIS against Shopify's opt-out, a customer who stops
meeting the conditions, a customer deleted in Shopify while webhooks were lost); the audit counts
each, `repair` enqueues ordinary jobs, and once the workers ran them a second audit finds nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest

from core import fullsync_control as control
from core.keys import Keys
from core.settings import Settings
from mappings.writes import OPT_OUT
from reliability import oracle
from sandbox.installation import DEMO, installation_document, write_installation
from sandbox.shopify.data import CUSTOMER_BASE
from shopsync import audit_command
from tests.e2e.harness import SECTION_MAIN, pipeline
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from worker.audit import run_audit, save_result
from worker.audit_repair import repair

SIZE = 60
LEAVER = "Leaver"
EMAIL = "com.apsis1.channels.email"


def sections() -> list[dict[str, Any]]:
    """The demo's sections, the main one for every customer whose last name is not LEAVER."""
    document = tomllib.loads(DEMO.read_text())
    found: list[dict[str, Any]] = document["shop"][0]["section"]
    found[0]["conditions"] = [{"field": "last_name", "op": "ne", "value": LEAVER}]
    return found


async def test_planted_drift_is_reported_then_repaired(
    redis_url: str, keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with pipeline(
        redis_url,
        keys,
        customers=SIZE,
        workers=("realtime", "fullsync"),
        limits=FAST_LIMITS,
        section=sections(),
    ) as p:
        open_limits(p.store, p.account)
        ids = list(range(CUSTOMER_BASE, CUSTOMER_BASE + SIZE))
        full = await control.start_full_sync(p.redis, keys, p.shop.domain)
        await wait_finished(p.redis, keys, full.sync_id)
        clean = await run_audit(p.app, p.shop)
        assert clean.report.customers == SIZE
        assert clean.report.drift == 0, clean.report.to_json()

        ks, main = p.shop.apsis.keyspace, SECTION_MAIN
        first_name = p.shop.sections[0].attributes["first_name"]
        unsubscribed = next(
            cid
            for cid in ids[10:]
            if any(
                k.section == main and k.channel == EMAIL and kind == OPT_OUT
                for k, kind in (oracle.expected_state(p.shop, p.store, cid).consents.items())  # type: ignore[union-attr]
            )
        )
        topic = p.shop.sections[0].consents[0].topics[0]
        missing, edited, leaver, deleted = ids[1], ids[2], ids[3], ids[4]

        assert p.account.delete_profile(ks, str(missing))
        p.account.patch_attributes(ks, str(edited), main, {first_name: "Edited by hand"})
        p.account.set_consent(ks, str(unsubscribed), main, EMAIL, topic, "opt-in")
        await p.store.update_customer(leaver, last_name=LEAVER)  # synced: leaves main, profile stays
        await p.settle()
        for sub_id in list(p.store.subscriptions):  # webhooks lost from here on
            p.store.remove_subscription(sub_id)
        await p.store.delete_customer(deleted)

        audit = await run_audit(p.app, p.shop, examples=3)
        out = audit.report.to_json()
        assert (out["customers"], out["missing"], out["extra"], out["attribute"], out["consent"]) == (
            SIZE,
            1,
            2,
            1,
            1,
        ), out
        assert out["examples"]["missing"] == [{"customer_id": missing, "kind": "missing"}]
        assert out["examples"]["attribute"] == [
            {"customer_id": edited, "kind": "attribute", "section": main, "detail": first_name}
        ]
        assert out["examples"]["consent"] == [
            {"customer_id": unsubscribed, "kind": "consent", "section": main, "detail": f"{EMAIL} {topic}"}
        ]
        assert sorted((e["customer_id"], e["detail"]) for e in out["examples"]["extra"]) == [
            (leaver, "fails_conditions"),
            (deleted, "deleted"),
        ]
        assert "@" not in orjson.dumps(out).decode()

        done = await repair(p.app, p.shop, audit)
        assert done == {"resync": 3, "delete": 1, "remove": 1}
        saved = await save_result(p.app, p.shop, audit, done)
        stored = orjson.loads(await p.redis.get(keys.audit(p.shop.domain)))
        assert stored == saved and stored["missing"] == 1 and stored["repaired"] == done
        await p.settle()

        again = await run_audit(p.app, p.shop)
        assert again.report.drift == 0, again.report.to_json()
        assert p.account.profile(ks, str(leaver)) is None
        assert p.account.profile(ks, str(deleted)) is None
        assert topic not in p.account.opted_in_topics(ks, str(unsubscribed), main, EMAIL)
        # Nothing opted in that Shopify does not show subscribed (the oracle reads the store itself).
        kept = [cid for cid in ids if cid not in (leaver, deleted)]
        problems = [line for line in p.mismatches(kept) if "opted-in topics" in line]
        assert problems == [], "\n".join(problems)
        assert await p.dead_letters() == []

        # The command: --json, exit 0 without drift, 2 on bad usage.
        document = installation_document(p.shopify.url, p.apsis.url, p.shop.api_version, section=sections())
        settings = Settings(
            redis_url=redis_url,
            key_prefix=keys.prefix,
            shops_file=str(write_installation(tmp_path / "shops.toml", document)),
        )
        capsys.readouterr()
        args = argparse.Namespace(domain=p.shop.domain, json=True, repair=False, examples=5)
        assert await asyncio.to_thread(audit_command.run, args, settings) == 0
        report = orjson.loads(capsys.readouterr().out)
        assert {
            k: report[k] for k in ("customers", "missing", "extra", "attributes", "consent", "examples")
        } == {
            "customers": SIZE - 1,
            "missing": 0,
            "extra": 0,
            "attributes": 0,
            "consent": 0,
            "examples": {},
        }
        args.examples = -1
        assert audit_command.run(args, settings) == 2
