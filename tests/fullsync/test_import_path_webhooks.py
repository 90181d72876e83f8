"""Webhooks against an import full sync (real Redis, arq workers, both sandboxes over HTTP).

- A webhook applied while the import runs is not overwritten by the import's older rows: the
  customer is re-sent from Shopify's current state after the import (attributes and consent).
- The opt-in guard counts opt-outs the import wrote as ours (APSIS stamps them with the import's
  source, not ours): a Shopify subscribe older than that stamp still reaches APSIS; an opt-out given
  in APSIS by hand after the import still wins over it.
"""

from __future__ import annotations

from typing import Any

import pytest

from core import fullsync_control as control
from core.keys import Keys
from sandbox.apsis.imports import ImportRecord, imports_of
from tests.e2e.harness import SECTION_MAIN, Pipeline, pipeline
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from tests.fullsync.import_helpers import SYNC, fast_imports, until
from tests.fullsync.test_fullsync import WORKERS, store_ids

EMAIL = "com.apsis1.channels.email"
NEWS = "com.apsis1.topics.news"
SIZE = 200


def _unsubscribed(p: Pipeline, count: int) -> list[int]:
    """Customers whose email consent is `unsubscribed` (the import writes them an opt-out)."""
    found = []
    for cid in store_ids(SIZE):
        customer = p.store.customer(cid)
        assert customer is not None
        if customer.email and customer.email_consent and customer.email_consent.state == "unsubscribed":
            found.append(cid)
    assert len(found) >= count, "the seed has too few unsubscribed customers"
    return found[-count:]


def _main_file(p: Pipeline, kind: str) -> ImportRecord | None:
    clear = kind == "in"  # `in` files clear empty cells, `out` files carry only addresses
    for record in imports_of(p.account).records.values():
        if record.section == SECTION_MAIN and record.spec.clear_existing_attributes is clear:
            return record
    return None


def _consent(p: Pipeline, cid: int) -> Any:
    return p.account.profile_consents(p.shop.apsis.keyspace, str(cid), SECTION_MAIN).get((EMAIL, NEWS))


@pytest.mark.slow
async def test_webhooks_during_the_import_win_and_imported_opt_outs_do_not_hold_back_opt_ins(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pipeline(redis_url, keys, customers=SIZE, workers=WORKERS, limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        fast_imports(p.account, monkeypatch, rows_per_second=40.0)  # the main `in` file takes 5 s
        x, z, z2 = _unsubscribed(p, 3)
        y = store_ids(SIZE)[-1]  # the main `in` file's last row
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        await until(lambda: (f := _main_file(p, "in")) is not None and f.status == "in_progress")
        out = _main_file(p, "out")
        assert out is None or out.status not in ("in_progress", "completed")
        # While the import runs: X subscribes (the `out` file will write its old opt-out after the
        # webhook's opt-in), Y is renamed (the `in` file will write its old name after the webhook).
        await p.store.set_email_consent(x, "subscribed")
        await p.store.update_customer(y, first_name="Renamed-During-Import")
        await until(lambda: (c := _consent(p, x)) is not None and c.type == "opt-in", limit_s=30)
        record = await wait_finished(p.redis, keys, started.sync_id, limit_s=120)
        assert record["state"] == "finished" and record["path"] == "import", record
        out = _main_file(p, "out")
        assert out is not None and out.status == "completed" and out.outcome.consents["written"] > 0
        assert record.get("import_rows_resent", 0) >= 2, record
        # APSIS holds what Shopify holds now, for X and Y and everyone else.
        assert p.mismatches(store_ids(SIZE)) == []
        assert _consent(p, x).type == "opt-in" and _consent(p, x).source == "Shopify"

        # After the import: Z2 and Z subscribe in Shopify at a time older than APSIS's stamp of the
        # opt-outs the import wrote (a late webhook); Z was also opted out by hand in APSIS since.
        assert _consent(p, z).type == "opt-out" and _consent(p, z).source != "Shopify"
        p.account.set_consent(p.shop.apsis.keyspace, str(z), SECTION_MAIN, EMAIL, NEWS, "opt-out")
        real = p.store.clock
        p.store.clock = lambda: real() - 30.0
        try:
            await p.store.set_email_consent(z2, "subscribed")
            await p.store.set_email_consent(z, "subscribed")
        finally:
            p.store.clock = real
        await p.settle()
        assert _consent(p, z2).type == "opt-in", "the import's own opt-out held a Shopify opt-in back"
        held = _consent(p, z)
        assert held.type == "opt-out" and held.source == "APSIS One", "a hand opt-out was overridden"
        state = await p.app.customers.load(p.shop.domain, z)
        assert state.state is not None
        assert any(k.topic == NEWS and v == "opt-out" for k, v in state.state.consents.items())
