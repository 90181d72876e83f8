"""The issue's scale test: 20,000 sandbox customers sync completely, none written twice (slow).

Through the per-profile path (`import_threshold = 0`): 20,000 is above the default threshold,
and the import path writes each profile twice by design (the attributes file, then the consent
files' address rows); its scale is held by tests/fullsync/test_import_path_scale.py.
"""

from __future__ import annotations

import pytest

from core import fullsync_control as control
from core.keys import Keys
from sandbox.shopify.data import CUSTOMER_BASE
from tests.e2e.harness import pipeline
from tests.fullsync.helpers import FAST_LIMITS, attribute_writes_per_profile, open_limits, wait_finished


@pytest.mark.slow
async def test_twenty_thousand_customers(redis_url: str, keys: Keys) -> None:
    size = 20_000
    async with pipeline(
        redis_url,
        keys,
        customers=size,
        workers=("realtime", "fullsync"),
        limits=FAST_LIMITS,
        sync={"import_threshold": 0},
    ) as p:
        open_limits(p.store, p.account)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        record = await wait_finished(p.redis, keys, started.sync_id, limit_s=900)
        assert record["path"] == "profile"
        assert record["seen"] == record["total"] == size and record["failed"] == 0
        assert p.mismatches(range(CUSTOMER_BASE, CUSTOMER_BASE + size)) == []
        patches = attribute_writes_per_profile(p.account)
        assert len({key for key, _ in patches}) == size and set(patches.values()) == {1}
        consents = p.account.writes_of("consent")
        assert len({(w.params["profile_key"], tuple(sorted(w.summary.items()))) for w in consents}) == len(
            consents
        )
        print(f"20k full sync: {record['duration_s']} s, {record['rate_per_s']} customers/s")
