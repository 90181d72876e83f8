"""Per-customer state in Redis: the last synced state, the lock, and the pending updates.

Keys (see `core.keys.Keys`):
- `state:{shop}:{id}`: the `SyncState` JSON, or a tombstone `{"deleted_at": ...}` for a while
  after a delete, so a late update cannot bring a deleted profile back.
- `lock:{shop}:{id}`: held by the one worker syncing this customer (token, expiry).
- `pending:{shop}:{id}`: a hash, update id -> update JSON, of updates not yet applied.
- `staged:{shop}:{id}`: while an apply sends, the writes it sends and the state they lead to.

Why pending updates: every job first deposits its update here, then whoever holds the lock
applies ALL pending updates in one go and removes them only after APSIS took the writes and the
state was saved. A burst of updates for one customer thus becomes one or two APSIS writes, and a
crash at any point leaves the updates in Redis for the next attempt: a job only finishes once its
own update is gone from the hash.

Why staged writes: an apply that dies between APSIS's answer and the save (Redis down, the
worker killed) leaves APSIS ahead of the saved state, and the retry cannot simply plan again
from that state: its updates may now be judged stale behind newer ones, or a fetch may read a
newer customer, so the retry never passes through what APSIS was sent. A consent opt-in sent
that way stays forever when the next consent state is a quiet one (`pending` opts out only
after a known `subscribed`). So the writes and their state are staged first; the next apply
finds them (the save removes them), sends them again (APSIS writes are idempotent) and plans
on from their state.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from arq.connections import ArqRedis

from core.keys import Keys
from core.redis_conn import typed
from mappings.state import SyncState
from mappings.writes import AttributePatch, ConsentWrite, ProfileDelete, Write

STATE_TTL_S = 400 * 24 * 3600  # a customer untouched for over a year is re-learnt by a full sync
TOMBSTONE_TTL_S = 7 * 24 * 3600  # longer than any delivery delay or retry window
PENDING_TTL_S = 8 * 24 * 3600
# Renewed while its holder applies (worker/sync.py): short, so a killed worker's customers are
# free again within seconds, not a minute.
LOCK_TTL_MS = 20_000

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Save the state (or a tombstone) and drop the applied updates, but only while the lock is still
# ours: a worker whose lock expired under it must not overwrite what the next holder saved.
# KEYS: lock, state, shop's customer set, pending, staged writes. ARGV: token, encoded state
# ('' keeps it), state ttl, customer id, 'add'|'remove' (the customer set), '1' to release the
# lock as well (the apply is over: one round trip less), then the applied update ids. The staged
# writes were sent: they go too.
_SETTLE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[5])
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  if ARGV[5] == 'add' then redis.call('SADD', KEYS[3], ARGV[4]) else redis.call('SREM', KEYS[3], ARGV[4]) end
end
for i = 7, #ARGV do redis.call('HDEL', KEYS[4], ARGV[i]) end
if ARGV[6] == '1' then redis.call('DEL', KEYS[1]) end
return 1
"""
# Take the lock and, when it was free, read what an apply starts from, in one round trip (an
# apply's first three). KEYS: lock, pending, state, staged writes. ARGV: token, lock ttl (ms).
_LOCK_AND_READ = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return {redis.call('HGETALL', KEYS[2]), redis.call('GET', KEYS[3]), redis.call('GET', KEYS[4])}
"""
# Deposit an update, then `_LOCK_AND_READ`: a full-sync customer's first two round trips in one.
# KEYS: as `_LOCK_AND_READ`. ARGV: token, lock ttl (ms), update id, update JSON, pending ttl (s).
_DEPOSIT_AND_LOCK = (
    """
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
"""
    + _LOCK_AND_READ
)
# KEYS: lock, staged writes. ARGV: token, encoded writes and state, ttl.
_STAGE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""
_WRITE_KINDS: dict[str, type[Write]] = {
    "patch": AttributePatch,
    "consent": ConsentWrite,
    "delete": ProfileDelete,
}


class LockLostError(Exception):
    """The customer's lock expired while this worker held it; another worker may have moved on."""


@dataclass(frozen=True, slots=True)
class Stored:
    """What Redis holds for a customer: the state, or the time of a recent delete (tombstone),
    and `marks`, times the worker keeps beside the plan's state: per topic family the newest
    `X-Shopify-Triggered-At` applied (Shopify's `updated_at` has one-second resolution; the
    trigger time orders updates within the same second), and when attributes were last patched."""

    state: SyncState | None
    deleted_at: float | None
    marks: dict[str, float]
    staged: Staged | None = None  # writes an apply sent without saving: APSIS may hold them


@dataclass(frozen=True, slots=True)
class Staged:
    """Writes an apply was sending, with the state and marks they lead to."""

    writes: tuple[Write, ...]
    state: SyncState
    marks: dict[str, float]


@dataclass(frozen=True, slots=True)
class Locked:
    """The customer's lock, taken, with its pending updates and what Redis held when it was."""

    token: str
    entries: dict[str, dict[str, Any]]
    stored: Stored


class CustomerStore:
    def __init__(self, redis: ArqRedis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._lock_and_read = redis.register_script(_LOCK_AND_READ)
        self._deposit_and_lock = redis.register_script(_DEPOSIT_AND_LOCK)
        self._release = redis.register_script(_RELEASE)
        self._renew = redis.register_script(_RENEW)
        self._settle = redis.register_script(_SETTLE)
        self._stage = redis.register_script(_STAGE)

    def _pending_key(self, shop: str, customer_id: int) -> str:
        return f"{self.keys.prefix}:pending:{shop}:{customer_id}"

    def staged_key(self, shop: str, customer_id: int) -> str:
        """The staged writes' key (full-sync imports read it beside the state)."""
        return f"{self.keys.prefix}:staged:{shop}:{customer_id}"

    def pending_key(self, shop: str, customer_id: int) -> str:
        """The pending hash (worker/coalesce.py's scripts deposit into it too)."""
        return self._pending_key(shop, customer_id)

    # --- state -------------------------------------------------------------------------------

    async def load(self, shop: str, customer_id: int) -> Stored:
        raw, raw_staged = await typed(
            self.redis.mget(self.keys.customer_state(shop, customer_id), self.staged_key(shop, customer_id))
        )
        return _decode_stored(raw, raw_staged)

    async def stage(
        self,
        shop: str,
        customer_id: int,
        token: str,
        writes: Sequence[Write],
        state: SyncState,
        marks: dict[str, float],
    ) -> None:
        """Before sending `writes`: keep them and the state they lead to until the save, if the
        lock is still ours (else `LockLostError`)."""
        encoded = orjson.dumps(
            {
                "writes": [[_kind(w), asdict(w)] for w in writes],
                "state": state.to_dict(),
                "marks": marks,
            }
        )
        keys = [self.keys.customer_lock(shop, customer_id), self.staged_key(shop, customer_id)]
        if not await self._stage(keys=keys, args=[token, encoded, PENDING_TTL_S]):
            raise LockLostError(f"customer {customer_id}: lock lost before sending")

    @staticmethod
    def encode(state: SyncState, marks: dict[str, float]) -> bytes:
        """A state as Redis stores it (full-sync imports save states in batches with it)."""
        return orjson.dumps({**state.to_dict(), "marks": marks})

    async def bury(
        self, shop: str, customer_id: int, deleted_at: float, token: str, update_ids: list[str]
    ) -> None:
        """Replace the state with a tombstone (the profile was deleted at `deleted_at`)."""
        await self._settle_raw(
            shop,
            customer_id,
            token,
            orjson.dumps({"deleted_at": deleted_at}),
            TOMBSTONE_TTL_S,
            "remove",
            update_ids,
        )

    async def forget_shop(self, shop: str) -> int:
        """Remove every customer's state of a shop (uninstall / shop redact), without KEYS."""
        removed = 0
        members_key = self.keys.shop_customers(shop)
        async for member in self.redis.sscan_iter(members_key, count=1000):
            cid = member.decode() if isinstance(member, bytes) else str(member)
            await self.redis.delete(
                self.keys.customer_state(shop, cid),
                self._pending_key(shop, int(cid)),
                self.keys.customer_lock(shop, cid),
                self.staged_key(shop, int(cid)),
                self.keys.customer_apply(shop, cid),
            )
            removed += 1
        await self.redis.unlink(members_key)  # a member a customer: freed aside, not in Redis's thread
        return removed

    # --- pending updates ---------------------------------------------------------------------

    async def deposit(self, shop: str, customer_id: int, update_id: str, update: dict[str, Any]) -> None:
        key = self._pending_key(shop, customer_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, update_id, orjson.dumps(update).decode())
            pipe.expire(key, PENDING_TTL_S)
            await pipe.execute()

    async def is_pending(self, shop: str, customer_id: int, update_id: str) -> bool:
        return bool(await typed(self.redis.hexists(self._pending_key(shop, customer_id), update_id)))

    async def pending(self, shop: str, customer_id: int) -> dict[str, dict[str, Any]]:
        raw = await typed(self.redis.hgetall(self._pending_key(shop, customer_id)))
        return _decode_pending(raw.items())

    def lock_keys(self, shop: str, customer_id: int) -> list[str]:
        """What taking the lock and reading reads: lock, pending hash, state, staged writes
        (`lock_and_read`; worker/coalesce.py's webhook deposit does the same after depositing)."""
        return [
            self.keys.customer_lock(shop, customer_id),
            self._pending_key(shop, customer_id),
            self.keys.customer_state(shop, customer_id),
            self.staged_key(shop, customer_id),
        ]

    async def lock_and_read(self, shop: str, customer_id: int) -> Locked | None:
        """`try_lock`, then `pending` and `load`, in one round trip; None when the lock is busy."""
        token = new_token()
        reply = await self._lock_and_read(keys=self.lock_keys(shop, customer_id), args=[token, LOCK_TTL_MS])
        return locked_from(token, reply) if reply else None

    async def deposit_and_lock(
        self, shop: str, customer_id: int, update_id: str, update: dict[str, Any]
    ) -> Locked | None:
        """`deposit`, then `lock_and_read`, in one round trip; None when the lock is busy (the
        update is deposited all the same, for the lock's holder or a later try)."""
        token = new_token()
        reply = await self._deposit_and_lock(
            keys=self.lock_keys(shop, customer_id),
            args=[token, LOCK_TTL_MS, update_id, orjson.dumps(update), PENDING_TTL_S],
        )
        return locked_from(token, reply) if reply else None

    async def settle(
        self,
        shop: str,
        customer_id: int,
        token: str,
        update_ids: list[str],
        state: SyncState | None,
        marks: dict[str, float] | None = None,
        *,
        release: bool = False,
    ) -> None:
        """After APSIS took the writes: save the new state and drop the applied updates, together,
        if the lock is still ours (else `LockLostError`: the updates stay pending); with
        `release`, the lock goes in the same step."""
        encoded = self.encode(state, marks or {}) if state is not None else b""
        await self._settle_raw(
            shop, customer_id, token, encoded, STATE_TTL_S, "add", update_ids, release=release
        )

    async def _settle_raw(
        self,
        shop: str,
        customer_id: int,
        token: str,
        encoded: bytes,
        ttl: int,
        membership: str,
        update_ids: list[str],
        *,
        release: bool = False,
    ) -> None:
        keys = [
            self.keys.customer_lock(shop, customer_id),
            self.keys.customer_state(shop, customer_id),
            self.keys.shop_customers(shop),
            self._pending_key(shop, customer_id),
            self.staged_key(shop, customer_id),
        ]
        done = await self._settle(
            keys=keys,
            args=[token, encoded, ttl, str(customer_id), membership, "1" if release else "", *update_ids],
        )
        if not done:
            raise LockLostError(f"customer {customer_id}: lock lost before saving")

    # --- lock --------------------------------------------------------------------------------

    async def try_lock(self, shop: str, customer_id: int) -> str | None:
        token = new_token()
        ok = await self.redis.set(self.keys.customer_lock(shop, customer_id), token, nx=True, px=LOCK_TTL_MS)
        return token if ok else None

    async def lock_within(self, shop: str, customer_id: int, seconds: float | None) -> str | None:
        """The customer's lock, polled until it is free for up to `seconds` (None: however long
        it takes); None when it stayed busy. Its holder may be another process: no local wait."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while (token := await self.try_lock(shop, customer_id)) is None:
            if deadline is not None and time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        return token

    async def renew(self, shop: str, customer_id: int, token: str) -> bool:
        return bool(
            await self._renew(keys=[self.keys.customer_lock(shop, customer_id)], args=[token, LOCK_TTL_MS])
        )

    async def unlock(self, shop: str, customer_id: int, token: str) -> None:
        await self._release(keys=[self.keys.customer_lock(shop, customer_id)], args=[token])


def new_token() -> str:
    """A lock token: tells this holder's lock from a later holder's."""
    return os.urandom(8).hex()


def locked_from(token: str, reply: list[Any]) -> Locked:
    """The answer of a lock-and-read (`lock_and_read`, or a webhook's deposit), the lock taken
    with `token`."""
    flat, raw, raw_staged = reply  # HGETALL inside a script: field, value, field, value, ...
    entries = _decode_pending(zip(flat[::2], flat[1::2], strict=True))
    return Locked(token, entries, _decode_stored(raw, raw_staged))


def _decode_pending(items: Iterable[tuple[bytes, bytes]]) -> dict[str, dict[str, Any]]:
    return {k.decode(): orjson.loads(v) for k, v in items}


def _decode_stored(raw: bytes | None, raw_staged: bytes | None) -> Stored:
    staged = _decode_staged(raw_staged) if raw_staged is not None else None
    if raw is None:
        return Stored(None, None, {}, staged)
    data = orjson.loads(raw)
    if "deleted_at" in data:
        return Stored(None, float(data["deleted_at"]), {})
    return Stored(SyncState.from_dict(data), None, dict(data.get("marks", {})), staged)


def _kind(write: Write) -> str:
    return next(name for name, cls in _WRITE_KINDS.items() if isinstance(write, cls))


def _decode_staged(raw: bytes) -> Staged:
    data = orjson.loads(raw)
    state = SyncState.from_dict(data["state"])
    writes: list[Write] = []
    for kind, fields in data["writes"]:
        if kind == "consent" and "address" in fields:
            upgraded = _consent_1_write(fields, state)
            if upgraded is not None:
                writes.append(upgraded)
            continue
        writes.append(_WRITE_KINDS[kind](**fields))
    return Staged(tuple(writes), state, dict(data["marks"]))


def _consent_1_write(fields: dict[str, Any], state: SyncState) -> ConsentWrite | None:
    """A staged write of the Consent 1.0 version (per address), after an upgrade: the profile's
    write when it was for the profile's current address; a former address's opt-out (an email
    change) is dropped, since it would now opt the profile itself out."""
    current = state.email if fields["channel"].endswith(".email") else state.phone
    if fields["address"] != current:
        return None
    return ConsentWrite(
        fields["section"], fields["channel"], fields["topic"], fields["type"], str(state.customer_id)
    )
