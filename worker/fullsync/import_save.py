"""Saving the customers' states after an import (the verifier's step 2), a chunk at a time.

For every customer of a completed file, under its lock, the state its rows lead to is saved (so
later webhooks diff against what APSIS holds), with a mark per opt-out the import wrote
(`mappings.consent.imported_mark`, the time the import was seen completed): APSIS may not record
such an opt-out as ours, and the opt-in guard needs to know it was. A customer whose stored state
is newer than its row (a webhook or a per-profile write while the import ran), or who has writes
staged by a cut-off apply, is re-sent instead: the import may have written older data over it;
its stored state is kept, with the import's opt-out marks added.

A chunk of `CHUNK` customers costs four round trips whatever its size: the rows and the re-send
marks (HMGET), the customers' locks (SET NX, pipelined), their stored states and staged writes
(one MGET), then one script (`_SAVE`) that, for each customer whose lock is still its token,
saves the state (as `CustomerStore.settle` does), marks a re-send, counts the customer once and
releases the lock. A customer whose lock is busy, or was lost before the script, is saved alone
the way `CustomerStore` does it (waiting for its lock) after the chunk.

The chunk is small because Redis runs a script to its end before any other command: with 500
customers the script took 10 ms (24 ms at worst) on a slow shared machine, and every webhook's
Redis call waited behind each of the 271 a 100,000-customer sync ran (`redis_slow_commands` in
`make bench BENCH_ARGS=import`). At 100 a chunk costs more round trips, off the real-time path.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

import orjson

from core.redis_conn import typed
from mappings.consent import imported_mark
from mappings.state import SyncState
from mappings.writes import OPT_OUT, ConsentKey
from worker.context import WorkerContext
from worker.customer_store import LOCK_TTL_MS, STATE_TTL_S
from worker.fullsync.import_files import FileKeys

CHUNK = 100
DATA_TTL_S = 7 * 24 * 3600
RESENT = "written while the import ran"
# KEYS: shop's customer set, re-send hash, counted hash, sync record; then per customer: lock,
# state, staged writes. ARGV: state ttl, data ttl, re-send reason; then per customer: token,
# customer id, action ('save' | 'resend' | 'drop'), encoded state ('' keeps it), count (1 | 0).
# Returns the customers whose lock was no longer their token (nothing done for them).
# The set and the counters are written once a chunk (a script holds Redis for all its steps).
_SAVE = """
local lost, saved, counted = {}, {}, 0
local over = redis.call('HGET', KEYS[4], 'walk_done') == 'true'  -- counted already (see _COUNT)
local n = (#KEYS - 4) / 3
for i = 0, n - 1 do
  local lock, state, staged = KEYS[5 + 3 * i], KEYS[6 + 3 * i], KEYS[7 + 3 * i]
  local a = 4 + 5 * i
  local cid, action, encoded = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if redis.call('GET', lock) ~= ARGV[a] then
    lost[#lost + 1] = cid
  else
    if action == 'resend' then redis.call('HSET', KEYS[2], cid, ARGV[3]) end
    if encoded ~= '' then
      redis.call('DEL', staged)
      redis.call('SET', state, encoded, 'EX', ARGV[1])
      saved[#saved + 1] = cid
    end
    if not over and action == 'save' and ARGV[a + 4] == '1' and redis.call('HSETNX', KEYS[3], cid, 1) == 1 then
      counted = counted + 1
    end
    redis.call('DEL', lock)
  end
end
if #saved > 0 then redis.call('SADD', KEYS[1], unpack(saved)) end
if counted > 0 then
  redis.call('HINCRBY', KEYS[4], 'synced', counted)
  redis.call('HINCRBY', KEYS[4], 'seen', counted)
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return lost
"""


class Verifying(Protocol):
    """What the saver needs of the verifier (worker/fullsync/import_verify.py)."""

    app: WorkerContext
    resend_key: str
    counted_key: str
    record_key: str

    async def _mark(self, cids: dict[str, str]) -> None: ...

    async def _count(self, cid: int, counter: str) -> None: ...


class Saver:
    def __init__(self, verifier: Verifying, domain: str, fkeys: FileKeys) -> None:
        self.v, self.app, self.domain, self.fkeys = verifier, verifier.app, domain, fkeys
        self.store = self.app.customers

    async def save_file(self, number: int, completed_at: float) -> None:
        async for keys in hash_field_chunks(self.app, self.fkeys.rows(number)):
            async with self.app.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(self.fkeys.rows(number), keys)
                pipe.hmget(self.v.resend_key, keys)
                raws, resent = await pipe.execute()
            chunk = [
                (c, r) for c, r, s in zip(keys, raws, resent, strict=True) if r is not None and s is None
            ]
            began = time.monotonic()
            for cid, raw in await self._save_chunk(chunk, completed_at):
                await self._save_one(cid, raw, completed_at)
            await self.app.realtime_lag.give_way(time.monotonic() - began)  # webhooks beside it

    async def _save_chunk(
        self, chunk: list[tuple[str, bytes]], completed_at: float
    ) -> list[tuple[str, bytes]]:
        """The chunk saved in one script; the customers left to save alone (lock busy or lost)."""
        if not chunk:
            return []
        keys = self.app.keys
        tokens = [os.urandom(8).hex() for _ in chunk]
        async with self.app.redis.pipeline(transaction=False) as pipe:
            for (cid, _), token in zip(chunk, tokens, strict=True):
                pipe.set(keys.customer_lock(self.domain, cid), token, nx=True, px=LOCK_TTL_MS)
            got = await pipe.execute()
        locked = [(c, r, t) for (c, r), t, ok in zip(chunk, tokens, got, strict=True) if ok]
        left = [(c, r) for (c, r), ok in zip(chunk, got, strict=True) if not ok]
        if not locked:
            return left
        names: list[str] = []
        for cid, _, _ in locked:
            names += [keys.customer_state(self.domain, cid), self.store.staged_key(self.domain, int(cid))]
        stored = await typed(self.app.redis.mget(names))
        script_keys: list[Any] = [keys.shop_customers(self.domain), self.v.resend_key]
        script_keys += [self.v.counted_key, self.v.record_key]
        args: list[Any] = [STATE_TTL_S, DATA_TTL_S, RESENT]
        for index, (cid, raw, token) in enumerate(locked):
            action, encoded, count = self._decide(raw, stored[2 * index], stored[2 * index + 1], completed_at)
            script_keys += [keys.customer_lock(self.domain, cid), names[2 * index], names[2 * index + 1]]
            args += [token, cid, action, encoded, count]
        lost = await self.app.script(_SAVE)(keys=script_keys, args=args)
        gone = {c.decode() if isinstance(c, bytes) else str(c) for c in lost or []}
        return left + [(c, r) for c, r, _ in locked if c in gone]

    def _decide(
        self, raw: bytes, raw_state: bytes | None, raw_staged: bytes | None, completed_at: float
    ) -> tuple[str, bytes, int]:
        """What the script does for one customer: (action, the state to save or b'', count)."""
        data = orjson.loads(raw)
        count = 1 if data.get("count") else 0
        if raw_state is None and raw_staged is None and data["state"].get("v") == 2:
            # Nothing stored (a store's first sync): the row's state is saved as the walk wrote it
            # (`SyncState.to_dict`), without building the state and writing it out again: that
            # round trip was about a sixth of the save's CPU (py-spy over `make bench
            # BENCH_ARGS=import`). `encode` gives the same JSON.
            return "save", _encoded_as_is(data["state"], completed_at), count
        expected = SyncState.from_dict(data["state"])
        imported = _imported(expected, completed_at)
        if raw_state is None:
            state, marks = None, {}
        else:
            saved = orjson.loads(raw_state)
            if "deleted_at" in saved:
                return "drop", b"", 0
            state, marks = SyncState.from_dict(saved), dict(saved.get("marks", {}))
        if raw_staged is not None or (state is not None and _newer(state, expected)):
            keep = raw_staged is None and state is not None and imported
            return "resend", self.store.encode(state, {**marks, **imported}) if keep and state else b"", 0
        return "save", self.store.encode(expected, {**marks, **imported}), count

    async def _save_one(self, cid: str, raw: bytes, completed_at: float) -> None:
        """One customer, waiting for its lock (`CustomerStore`'s own calls)."""
        data = orjson.loads(raw)
        expected = SyncState.from_dict(data["state"])
        imported = _imported(expected, completed_at)
        store, domain = self.store, self.domain
        token = await store.lock_within(domain, int(cid), None)
        assert token is not None  # no deadline: waits until the lock is free
        try:
            stored = await store.load(domain, int(cid))
            if stored.deleted_at is not None:
                return
            if stored.staged is not None or (stored.state is not None and _newer(stored.state, expected)):
                await self.v._mark({cid: RESENT})
                if stored.staged is None and stored.state is not None and imported:
                    # The import's opt-outs may sit over the newer write in APSIS: the re-send's
                    # opt-in guard must know they are ours (the state itself is kept).
                    await store.settle(
                        domain, int(cid), token, [], stored.state, {**stored.marks, **imported}
                    )
                return
            await store.settle(domain, int(cid), token, [], expected, {**stored.marks, **imported})
        finally:
            await store.unlock(domain, int(cid), token)
        if data.get("count"):
            await self.v._count(int(cid), "synced")


def _encoded_as_is(state: dict[str, Any], completed_at: float) -> bytes:
    """`CustomerStore.encode` of a state in its JSON form (version 2), no marks stored before."""
    consents = ((ConsentKey(*row[:3]), row[3]) for row in state.get("consents", ()))
    return orjson.dumps({**state, "marks": _opt_out_marks(consents, completed_at)})


def _imported(expected: SyncState, completed_at: float) -> dict[str, float]:
    return _opt_out_marks(expected.consents.items(), completed_at)


def _opt_out_marks(consents: Iterable[tuple[ConsentKey, str]], completed_at: float) -> dict[str, float]:
    """A mark for each opt-out the import wrote (the opt-in guard counts them as ours)."""
    return {imported_mark(key): completed_at for key, kind in consents if kind == OPT_OUT}


def _newer(stored: SyncState, expected: SyncState) -> bool:
    """The stored state holds something newer than the row: a write the import may undo."""
    for group, when in stored.times.items():
        mine = expected.times.get(group)
        if mine is None or when > mine:
            return True
    return False


async def hash_field_chunks(
    app: Any, key: str, keep: Callable[[Any], bool] | None = None
) -> AsyncIterator[list[str]]:
    """The fields of a hash, `CHUNK` at a time (HSCAN; the values are dropped as they come), only
    those whose value `keep` accepts when it is given."""
    chunk: list[str] = []
    async for field, value in app.redis.hscan_iter(key, count=CHUNK):  # the values come too
        if keep is not None and not keep(value):
            continue
        chunk.append(field.decode() if isinstance(field, bytes) else str(field))
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["Saver", "hash_field_chunks"]
