"""The drift audit of a bulk-export shop, reading APSIS both ways, on the same planted drift.

Sandbox store and APSIS account over HTTP, real Redis, arq workers. A fully synced store gets:
a profile deleted in APSIS, an attribute edited there by hand, a consent given in APSIS against
Shopify's opt-out, an opt-out given in APSIS against Shopify's opt-in (the contact's own choice:
not drift, and what the report cannot tell apart from no consent), a customer who stops meeting
the conditions, an email changed in Shopify while webhooks were lost (the old address still
opted in), a customer deleted in Shopify. The walk is a Shopify bulk export; APSIS is read once
per profile and once through consent reports: both reports are the same.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core import fullsync_control as control
from core.keys import Keys
from mappings.writes import OPT_IN, OPT_OUT
from reliability import oracle
from sandbox.apsis.reports import reports_of
from sandbox.shopify.data import CUSTOMER_BASE
from tests.audit.test_audit_e2e import LEAVER, sections
from tests.e2e.harness import SECTION_MAIN, pipeline
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from worker.audit import ApsisRead, run_audit
from worker.sync_consents import address_attributes

SIZE = 60
EMAIL = "com.apsis1.channels.email"


def _with_email(p: Any, ids: list[int], decision: str) -> list[int]:
    """Customers whose main-section email decision is `decision`."""
    return [
        cid
        for cid in ids
        if any(
            k.section == SECTION_MAIN and k.channel == EMAIL and kind == decision
            for k, kind in oracle.expected_state(p.shop, p.store, cid).consents.items()  # type: ignore[union-attr]
        )
    ]


async def test_bulk_walk_and_both_apsis_reads_find_the_same_planted_drift(redis_url: str, keys: Keys) -> None:
    async with pipeline(
        redis_url,
        keys,
        customers=SIZE,
        workers=("realtime", "fullsync"),
        limits=FAST_LIMITS,
        section=sections(),
        sync={"bulk_export": True},
    ) as p:
        open_limits(p.store, p.account)
        ids = list(range(CUSTOMER_BASE, CUSTOMER_BASE + SIZE))
        full = await control.start_full_sync(p.redis, keys, p.shop.domain, bulk=True)
        await wait_finished(p.redis, keys, full.sync_id)
        modes: tuple[ApsisRead, ...] = ("profiles", "reports")
        for mode in modes:
            clean = await run_audit(p.app, p.shop, apsis_read=mode)
            assert (clean.apsis_read, clean.report.customers) == (mode, SIZE)
            assert clean.report.drift == 0, (mode, clean.report.to_json())

        ks, main = p.shop.apsis.keyspace, SECTION_MAIN
        first_name = p.shop.sections[0].attributes["first_name"]
        email_version = (await address_attributes(p.app, p.shop))[main]["email"]
        topic = p.shop.sections[0].consents[0].topics[0]
        subscribed = _with_email(p, ids[10:], OPT_IN)
        unsubscribed = _with_email(p, ids[10:], OPT_OUT)[0]
        opted_out_in_apsis, moved = subscribed[0], subscribed[1]
        missing, edited, leaver, deleted = ids[1], ids[2], ids[3], ids[4]

        assert p.account.delete_profile(ks, str(missing))
        p.account.patch_attributes(ks, str(edited), main, {first_name: "Edited by hand"})
        p.account.set_consent(ks, str(unsubscribed), main, EMAIL, topic, "opt-in")
        p.account.set_consent(ks, str(opted_out_in_apsis), main, EMAIL, topic, "opt-out")
        await p.store.update_customer(leaver, last_name=LEAVER)  # synced: leaves main, profile stays
        await p.settle()
        for sub_id in list(p.store.subscriptions):  # webhooks lost from here on
            p.store.remove_subscription(sub_id)
        await p.store.delete_customer(deleted)
        await p.store.change_email(moved, f"moved-{moved}@example.org")

        requested = reports_of(p.account).summary()["requested"]
        by_profile = await run_audit(p.app, p.shop, examples=5, apsis_read="profiles")
        assert reports_of(p.account).summary()["requested"] == requested  # no report asked
        by_report = await run_audit(p.app, p.shop, examples=5, apsis_read="reports")
        # One report per topic of every section (the demo maps two email topics and one SMS topic
        # in the main section, one email topic in the other).
        topics = sum(len({t for m in s.consents for t in m.topics}) or 1 for s in p.shop.sections)
        assert reports_of(p.account).summary()["requested"] == requested + topics

        out = by_report.report.to_json()
        assert out == by_profile.report.to_json()
        assert (out["customers"], out["missing"], out["extra"], out["attribute"], out["consent"]) == (
            SIZE,
            1,
            2,
            2,
            1,
        ), out
        assert out["old_address"] == 1
        assert out["examples"]["missing"] == [{"customer_id": missing, "kind": "missing"}]
        assert sorted(
            (e["customer_id"], e["detail"], e.get("note")) for e in out["examples"]["attribute"]
        ) == [
            (edited, first_name, None),
            (moved, email_version, "old_address"),
        ]
        assert out["examples"]["consent"] == [
            {"customer_id": unsubscribed, "kind": "consent", "section": main, "detail": f"{EMAIL} {topic}"}
        ]
        assert sorted((e["customer_id"], e["detail"]) for e in out["examples"]["extra"]) == [
            (leaver, "fails_conditions"),
            (deleted, "deleted"),
        ]
        assert "@" not in orjson.dumps(out).decode()
        # The report could not tell the APSIS opt-out from no consent: read per profile, a few only.
        assert 1 <= by_report.per_profile < SIZE // 4, by_report.per_profile
        assert sorted(by_report.drifted) == sorted(by_profile.drifted)
        # The staged rows and the run's sets are gone.
        assert [k async for k in p.redis.scan_iter(f"{keys.prefix}:audit-run:*")] == []


@pytest.mark.parametrize("mode", ["profiles", "reports"])
async def test_an_unsynced_store_is_all_missing(redis_url: str, keys: Keys, mode: ApsisRead) -> None:
    async with pipeline(redis_url, keys, customers=12, limits=FAST_LIMITS, section=sections()) as p:
        open_limits(p.store, p.account)
        audit = await run_audit(p.app, p.shop, apsis_read=mode)
        states = [oracle.expected_state(p.shop, p.store, cid) for cid in p.store.customer_ids()]
        in_main = sum(1 for state in states if state is not None and state.sections)
        assert (audit.report.customers, audit.report.counts["missing"]) == (12, in_main)
        assert audit.report.counts["extra"] == audit.report.counts["attribute"] == 0
