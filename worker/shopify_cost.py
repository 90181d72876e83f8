"""Shopify's GraphQL cost limit, shared by the pool: estimate a query's cost, spend it from the
store's bucket in Redis before sending, learn the bucket from Shopify's answers.

Shopify limits each app and store by calculated query cost: a leaky bucket of
`maximumAvailable` points refilled at `restoreRate` per second (100 Standard, 200 Advanced,
1,000 Plus, 2,000 Enterprise), the `requestedQueryCost` taken before a query runs and the
difference to `actualQueryCost` given back after. Every answer reports
`extensions.cost.throttleStatus {maximumAvailable, currentlyAvailable, restoreRate}`.

- `estimate_cost(document, variables)`: the requested cost as Shopify computes it (scalars and
  enums 0, objects 1, connections 2 + first x the node's cost, mutations 10), refined by the
  requested cost Shopify reported for the same document and variables.
- `CostLimiter.turn(cost)` / `spend(cost)`: a slot in the store's GCRA bucket (`worker.ratelimit`), sized from
  what Shopify last reported for the store (kept in Redis, so every process shares it; no
  configuration; until it is known a process sends one request at a time); `settle(extensions)`
  learns it, gives back what the query did not use and
  catches up with Shopify's view when its bucket is emptier than ours; `throttled` holds every
  sender for the time the points take to come back.
- `page_size(node_cost, overhead)`: the most nodes one query may ask for (at most 250) within
  Shopify's single-query maximum and the store's bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import FieldNode, OperationDefinitionNode, parse
from graphql.language import (
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    SelectionSetNode,
    VariableNode,
)
from redis.asyncio import Redis

from core.keys import Keys
from mappings.installation import Shop
from worker.ratelimit import Bucket, RateLimiter
from worker.ratelimit.buckets import MICROS

MAX_PAGE_SIZE = 250
SINGLE_QUERY_MAX = 1000  # Shopify refuses a query whose requested cost is above this
MUTATION_COST = 10
DEFAULT_MAXIMUM = 1000.0  # until the store's first answer says otherwise
DEFAULT_RESTORE_PER_S = 100.0  # Standard plan
LEARNED_TTL_S = 7 * 24 * 3600
PROBE_TTL_S = 5.0  # how long the pool waits for the one request that learns the bucket
_REFINED: dict[tuple[int, str], int] = {}  # (document, variables) -> Shopify's requested cost

# KEYS[1] bucket; ARGV amount_us. Give back: TAT earlier by amount, never before now.
_REFUND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat <= now then return 0 end
local new_tat = tat - tonumber(ARGV[1])
if new_tat < now then new_tat = now end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 1
"""


@functools.lru_cache(maxsize=128)
def _parsed(document: str) -> tuple[list[OperationDefinitionNode], dict[str, FragmentDefinitionNode]]:
    doc = parse(document)
    operations = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
    return operations, fragments


def _size(field: FieldNode, variables: Mapping[str, Any]) -> int | None:
    for arg in field.arguments or ():
        if arg.name.value not in ("first", "last"):
            continue
        if isinstance(arg.value, IntValueNode):
            return int(arg.value.value)
        if isinstance(arg.value, VariableNode):
            value = variables.get(arg.value.name.value)
            return int(value) if isinstance(value, int) else MAX_PAGE_SIZE
    return None


def _cost(
    selection: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    if selection is None:
        return 0
    total = 0
    for node in selection.selections:
        if isinstance(node, FragmentSpreadNode):
            total += _cost(fragments[node.name.value].selection_set, fragments, variables)
        elif isinstance(node, InlineFragmentNode):
            total += _cost(node.selection_set, fragments, variables)
        elif isinstance(node, FieldNode) and node.selection_set is not None:
            name = node.name.value
            inner = _cost(node.selection_set, fragments, variables)
            size = _size(node, variables)
            if size is not None:  # a connection: 2 + its nodes
                total += 2 + size * inner
            elif name in ("edges", "pageInfo"):  # parts of a connection, counted by it
                total += inner
            else:  # an object (or `node`/`nodes` of a connection: one each)
                total += 1 + inner
    return total


def estimate_cost(document: str, variables: Mapping[str, Any] | None = None) -> int:
    """The requested cost of `document` with `variables` (Shopify's figure once it told us)."""
    variables = variables or {}
    refined = _REFINED.get(_refine_key(document, variables))
    if refined is not None:
        return refined
    operations, fragments = _parsed(document)
    total = 0
    for op in operations:
        if op.operation.value == "mutation":
            total += MUTATION_COST * len(op.selection_set.selections)
        else:
            total += _cost(op.selection_set, fragments, variables)
    return max(1, total)


def per_node_cost(document: str, variables: Mapping[str, Any], size_variable: str = "first") -> float:
    """How much one more node on the `size_variable` connection adds to the cost."""
    one = estimate_cost(document, {**variables, size_variable: 1})
    two = estimate_cost(document, {**variables, size_variable: 2})
    return float(max(1, two - one))


def _refine_key(document: str, variables: Mapping[str, Any]) -> tuple[int, str]:
    sizes = ",".join(f"{k}={v}" for k, v in sorted(variables.items()) if isinstance(v, int))
    return hash(document), sizes


def refine(document: str, variables: Mapping[str, Any] | None, requested: Any) -> None:
    """Remember the requested cost Shopify reported for this document and these page sizes."""
    if isinstance(requested, int | float) and requested >= 0:
        if len(_REFINED) > 1024:
            _REFINED.clear()
        _REFINED[_refine_key(document, variables or {})] = int(requested)


def page_size(node_cost: float, overhead: float = 2.0, maximum: float = DEFAULT_MAXIMUM) -> int:
    """The most nodes (1..250) one query may ask for: its cost stays within Shopify's single
    query maximum and the store's bucket."""
    budget = min(float(SINGLE_QUERY_MAX), maximum) - overhead
    return max(1, min(MAX_PAGE_SIZE, math.floor(budget / max(node_cost, 1.0))))


@dataclass(frozen=True, slots=True)
class Throttle:
    """`extensions.cost.throttleStatus` of one answer."""

    maximum: float
    available: float
    restore_per_s: float

    @classmethod
    def of(cls, extensions: Any) -> Throttle | None:
        cost = extensions.get("cost") if isinstance(extensions, Mapping) else None
        status = cost.get("throttleStatus") if isinstance(cost, Mapping) else None
        if not isinstance(status, Mapping):
            return None
        try:
            maximum = float(status["maximumAvailable"])
            available = float(status["currentlyAvailable"])
            restore = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return None
        if maximum <= 0 or restore <= 0:
            return None
        return cls(maximum, max(0.0, available), restore)


class CostLimiter:
    """The store's cost bucket, shared by every process through Redis."""

    def __init__(self, shop: Shop, redis: Redis, limiter: RateLimiter, keys: Keys) -> None:
        self.shop, self.redis, self.limiter, self.keys = shop, redis, limiter, keys
        self.name = f"shopify-graphql:{shop.domain}"
        self._learned_key = keys.limiter(f"{self.name}:learned")
        self.maximum, self.restore_per_s = DEFAULT_MAXIMUM, DEFAULT_RESTORE_PER_S
        self.known = False  # learned from Redis or from an answer
        self._probe = asyncio.Lock()
        self._refund = redis.register_script(_REFUND)

    def bucket(self) -> Bucket:
        safety = self.shop.limits.safety
        return Bucket(
            self.name,
            self.restore_per_s * safety,
            max(1.0, math.floor(self.maximum * safety)),
            kind="shopify-graphql",
            shiftable=True,
        )

    async def load(self) -> None:
        """What Shopify last said of the store's bucket (another process may have learned it);
        read again until it is known."""
        if self.known:
            return
        raw = await self.redis.hgetall(self._learned_key)  # type: ignore[misc]
        if raw:
            self.maximum = float(raw.get(b"maximum", DEFAULT_MAXIMUM))
            self.restore_per_s = float(raw.get(b"restore", DEFAULT_RESTORE_PER_S))
            self.known = True

    @contextlib.asynccontextmanager
    async def turn(self, cost: float, *, max_wait_s: float | None) -> AsyncIterator[float]:
        """Spend `cost` and hold the turn while the request is out; the points spent. Until the
        store's bucket is known, one request of the whole pool goes first and spends nothing at a
        guessed rate: its answer tells the bucket, and how full Shopify's is
        (`settle` fills ours to match)."""
        await self.load()
        if not self.known:
            async with self._probe:
                if await self._first_of_pool():
                    yield 0.0
                    return
        await self.spend(cost, max_wait_s=max_wait_s)
        yield cost

    async def _first_of_pool(self) -> bool:
        """True when this request is to learn the bucket: it is unknown and no other process
        of the pool is learning it (else wait, a bounded while, for what that one learns)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROBE_TTL_S
        while True:
            await self.load()
            if self.known:
                return False
            probe_key = self.keys.limiter(f"{self.name}:probe")
            if await self.redis.set(probe_key, b"1", nx=True, px=round(PROBE_TTL_S * 1000)):
                return True
            if loop.time() > deadline:
                return True  # the other process's answer never came: learn it ourselves
            await asyncio.sleep(0.05)

    async def spend(self, cost: float, *, max_wait_s: float | None) -> float:
        """Wait for `cost` points (raises `WaitTooLongError` past `max_wait_s`); seconds waited."""
        await self.load()
        bucket = self.bucket()
        return await self.limiter.acquire_bucket(bucket, min(cost, bucket.burst), max_wait_s=max_wait_s)

    async def settle(self, extensions: Any, spent: float) -> None:
        """Learn from an answer's `extensions.cost`: the bucket's size and rate, what the query
        really cost (the rest is given back) and how full Shopify's bucket is."""
        throttle = Throttle.of(extensions)
        cost = extensions.get("cost") if isinstance(extensions, Mapping) else None
        if throttle is not None:
            await self._learn(throttle)
        bucket = self.bucket()
        actual = cost.get("actualQueryCost") if isinstance(cost, Mapping) else None
        if isinstance(actual, int | float) and 0 <= actual < spent:
            give_back = min(spent, bucket.burst) - actual
            if give_back > 0:
                await self._refund(
                    keys=[self.keys.limiter(bucket.name)], args=[round(give_back * bucket.interval_us)]
                )
        if throttle is not None:
            used = (throttle.maximum - throttle.available) * self.shop.limits.safety
            if used > 0:
                await self.limiter.raise_level(bucket, used)

    async def throttled(self, extensions: Any, cost: float) -> float:
        """A `THROTTLED` answer: every sender waits until `cost` points are back; the wait."""
        throttle = Throttle.of(extensions)
        if throttle is not None:
            await self._learn(throttle)
        available = throttle.available if throttle else 0.0
        wait = max(0.5, (cost - available) / self.restore_per_s)
        await self.limiter.delay(self.bucket(), wait, guard_s=wait / 2)
        return wait

    async def _learn(self, throttle: Throttle) -> None:
        if self.known and (throttle.maximum, throttle.restore_per_s) == (self.maximum, self.restore_per_s):
            return
        self.maximum, self.restore_per_s = throttle.maximum, throttle.restore_per_s
        self.known = True
        await self.redis.hset(  # type: ignore[misc]
            self._learned_key, mapping={"maximum": throttle.maximum, "restore": throttle.restore_per_s}
        )
        await self.redis.expire(self._learned_key, LEARNED_TTL_S)


__all__ = [
    "MAX_PAGE_SIZE",
    "MICROS",
    "CostLimiter",
    "Throttle",
    "estimate_cost",
    "page_size",
    "per_node_cost",
    "refine",
]
