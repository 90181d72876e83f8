"""Saving the customers' states after an import, a chunk at a time (worker/fullsync/import_save.py),
against real Redis: saved, re-sent when newer or staged, deleted ones left, busy locks waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.keys import Keys
from core.redis_conn import typed
from mappings.consent import imported_mark
from mappings.installation import Installations
from mappings.state import SyncState
from mappings.writes import OPT_IN, OPT_OUT, ConsentKey
from tests.conftest import purge
from tests.fullsync.helpers import worker_app
from tests.mappings.test_properties import _apply_all, updates
from worker.context import WorkerContext
from worker.customer_store import CustomerStore
from worker.fullsync.import_files import FileKeys
from worker.fullsync.import_save import RESENT, Saver, _encoded_as_is

SHOP = "save-test.myshopify.com"
SECTION = "com.apsis1.sections.s"
OUT = ConsentKey(SECTION, "com.apsis1.channels.email", "news")
IN = ConsentKey(SECTION, "com.apsis1.channels.email", "offers")
OLD, ROW, NEW = (datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3))


@pytest.fixture
async def app(redis_url: str, keys: Keys, demo_installations: Installations) -> AsyncIterator[WorkerContext]:
    async with worker_app(redis_url, keys, demo_installations) as context:
        yield context
        await purge(context.redis, keys)


@dataclass
class FakeVerifier:
    """The verifier's bookkeeping the saver uses, with the same Redis effects."""

    app: WorkerContext
    resend_key: str
    counted_key: str
    record_key: str

    async def _mark(self, cids: dict[str, str]) -> None:
        if cids:
            await typed(self.app.redis.hset(self.resend_key, mapping=cids))

    async def _count(self, cid: int, counter: str) -> None:
        if await typed(self.app.redis.hsetnx(self.counted_key, str(cid), "1")):
            await typed(self.app.redis.hincrby(self.record_key, counter, 1))
            await typed(self.app.redis.hincrby(self.record_key, "seen", 1))


def _state(cid: int, when: datetime, city: str) -> SyncState:
    return SyncState(
        cid,
        times={"customer": when},
        sections=(SECTION,),
        attributes={SECTION: {"city": city}},
        consents={OUT: OPT_OUT, IN: OPT_IN},
    )


async def test_a_chunk_is_saved_re_sent_or_left_as_each_customer_needs(app: WorkerContext) -> None:
    store, redis, keys = app.customers, app.redis, app.keys
    fkeys = FileKeys(app, "sync-save")
    base = keys.full_sync_import("sync-save")
    verifier = FakeVerifier(app, f"{base}:resend", f"{base}:counted", f"{base}:record")
    ids = list(range(1, 8))
    # 1 new, 2 older stored state, 3 newer stored state, 4 staged writes, 5 deleted, 6 lock busy,
    # 7 a second row of a customer counted elsewhere (count false). Plus 600 fresh ones (2 chunks).
    many = list(range(1000, 1600))
    rows = {
        str(c): orjson.dumps({"state": _state(c, ROW, "row").to_dict(), "count": c != 7}) for c in ids + many
    }
    await typed(redis.hset(fkeys.rows(0), mapping=rows))
    old = orjson.dumps({**_state(2, OLD, "old").to_dict(), "marks": {"kept": 1.0}})
    new = orjson.dumps({**_state(3, NEW, "new").to_dict(), "marks": {}})
    await redis.set(keys.customer_state(SHOP, 2), old)
    await redis.set(keys.customer_state(SHOP, 3), new)
    await redis.set(store.staged_key(SHOP, 4), b"staged")
    await redis.set(keys.customer_state(SHOP, 5), orjson.dumps({"deleted_at": 1.0}))
    busy = await store.try_lock(SHOP, 6)
    assert busy is not None

    async def release_later() -> None:
        await asyncio.sleep(0.3)
        await store.unlock(SHOP, 6, busy)

    releaser = asyncio.create_task(release_later())
    await Saver(verifier, SHOP, fkeys).save_file(0, 123.0)
    await releaser

    mark = imported_mark(OUT)
    for cid in (1, 2, 6, 7, *many[:3], many[-1]):
        got = await store.load(SHOP, cid)
        assert got.state == _state(cid, ROW, "row"), cid
        assert got.marks.get(mark) == 123.0 and imported_mark(IN) not in got.marks
    assert (await store.load(SHOP, 2)).marks["kept"] == 1.0
    newer = await store.load(SHOP, 3)
    assert newer.state == _state(3, NEW, "new") and newer.marks == {mark: 123.0}  # kept, marked
    assert (
        await redis.get(keys.customer_state(SHOP, 4)) is None
        and await redis.get(store.staged_key(SHOP, 4)) == b"staged"
    )
    assert (await store.load(SHOP, 5)).deleted_at == 1.0
    resend = await typed(redis.hgetall(verifier.resend_key))
    assert resend == {b"3": RESENT.encode(), b"4": RESENT.encode()}
    counted = {int(c) for c in await typed(redis.hkeys(verifier.counted_key))}
    assert counted == {1, 2, 6, *many}
    synced = await redis.hget(verifier.record_key, "synced")  # type: ignore[misc]
    assert synced is not None and int(synced) == len(counted)
    for cid in ids + many:
        assert not await redis.exists(keys.customer_lock(SHOP, cid)), cid
    members = {int(c) for c in await typed(redis.smembers(keys.shop_customers(SHOP)))}
    assert members >= {1, 2, 3, 6, 7, *many} and not members & {4, 5}  # one SADD a chunk

    # A slice that outlived its lease saves again after the walk ended and dropped `counted`:
    # the states are saved again, nothing is counted twice.
    await typed(redis.hset(verifier.record_key, "walk_done", "true"))
    await typed(redis.unlink(verifier.counted_key))
    await Saver(verifier, SHOP, fkeys).save_file(0, 124.0)
    assert int(await redis.hget(verifier.record_key, "synced")) == len(counted)  # type: ignore[misc]
    assert (await store.load(SHOP, 1)).marks.get(mark) == 124.0


@settings(max_examples=150, deadline=None)
@given(st.lists(updates, min_size=1, max_size=5), st.floats(0, 2e9))
def test_a_first_save_writes_what_encode_would(history: list[Any], completed_at: float) -> None:
    """The save's shortcut for a customer with nothing stored: the row's JSON state with the
    import's opt-out marks: the same JSON as building the state and encoding it gives."""
    state = _apply_all(history)
    assume(state is not None)
    assert state is not None
    marks = {imported_mark(k): completed_at for k, kind in state.consents.items() if kind == OPT_OUT}
    row_state = orjson.loads(orjson.dumps(state.to_dict()))  # as a file's row holds it
    saved = orjson.loads(_encoded_as_is(row_state, completed_at))
    assert saved == orjson.loads(CustomerStore.encode(state, marks))
    assert SyncState.from_dict(saved) == state
