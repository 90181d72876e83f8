"""A minimal GraphQL Admin endpoint: customer bulk exports and their polling, with query costs.

Queries are recognised by operation name, not parsed: `bulkOperationRunQuery` starts an export
of every customer (one bulk operation at a time per shop), `currentBulkOperation` (or `node(id:)` / `bulkOperation(id:)`) reports it
(CREATED -> RUNNING -> COMPLETED over a time proportional to the store size). The export is a
snapshot taken at start and is streamed as JSONL, generated lazily, from `/_sandbox/bulk/{n}.jsonl`.
Every answer carries Shopify's `extensions.cost` with the cost bucket's throttle status.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from sandbox.shopify.appkeys import STORE
from sandbox.shopify.data import CUSTOMER_BASE
from sandbox.shopify.models import Customer
from sandbox.shopify.serialize import fmt_utc, gid, graphql_customer
from sandbox.shopify.store import Store

RUN_COST = 10
POLL_COST = 1
_BY_ID = re.compile(r"\b(node|bulkOperation)\s*\(\s*id\s*:")
_GID = re.compile(r"gid://shopify/BulkOperation/(\d+)")


@dataclass
class BulkOperation:
    number: int
    query: str
    created: float
    next_index: int
    deleted: frozenset[int]
    overrides: dict[int, Customer]
    count: int
    duration: float
    completed_at: float | None = None

    @property
    def gid(self) -> str:
        return gid("BulkOperation", self.number)

    def status(self, now: float) -> str:
        elapsed = now - self.created
        if elapsed >= self.duration:
            if self.completed_at is None:
                self.completed_at = self.created + self.duration
            return "COMPLETED"
        return "CREATED" if elapsed < min(0.01, self.duration / 10) else "RUNNING"


@dataclass
class BulkRegistry:
    """Bulk operations of one shop; `objects_per_second` sets how long an export 'runs'."""

    objects_per_second: float = 50_000.0
    operations: dict[int, BulkOperation] = field(default_factory=dict)
    current: int | None = None
    _next: int = 3_000_000_001

    def start(self, store: Store, query: str) -> BulkOperation:
        count = store.customer_count()
        op = BulkOperation(
            number=self._next,
            query=query,
            created=store.monotonic(),
            next_index=store.next_index,
            deleted=frozenset(store.deleted),
            overrides=dict(store.overrides),
            count=count,
            duration=max(0.02, count / self.objects_per_second),
        )
        self._next += 1
        self.operations[op.number] = op
        self.current = op.number
        return op


BULK: web.AppKey[BulkRegistry] = web.AppKey("shopify_bulk", BulkRegistry)


def snapshot_customers(store: Store, op: BulkOperation) -> Iterator[Customer]:
    generator = store.generator
    for index in range(op.next_index):
        customer_id = CUSTOMER_BASE + index
        if customer_id in op.deleted:
            continue
        customer = op.overrides.get(customer_id)
        if customer is None and index < store.size:
            customer = generator.customer(index)[0]
        if customer is not None:
            yield customer


def _cost(store: Store, requested: int, actual: int, now: float) -> dict[str, Any]:
    bucket = store.graphql_bucket
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": bucket.maximum,
                "currentlyAvailable": int(bucket.refill(now)),
                "restoreRate": bucket.restore_rate,
            },
        }
    }


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json", charset="utf-8")


def describe(op: BulkOperation, base_url: str, now: float) -> dict[str, Any]:
    status = op.status(now)
    done = status == "COMPLETED"
    progress = op.count if done else int(op.count * min(1.0, (now - op.created) / op.duration))
    wall = time.time() - (now - op.created)
    return {
        "id": op.gid,
        "type": "QUERY",
        "status": status,
        "errorCode": None,
        "createdAt": fmt_utc(int(wall)),
        "completedAt": fmt_utc(int(wall + op.duration)) if done else None,
        "objectCount": str(progress),
        "rootObjectCount": str(progress),
        "fileSize": str(op.count * 900) if done and op.count else None,
        "url": f"{base_url}/_sandbox/bulk/{op.number}.jsonl" if done and op.count else None,
        "partialDataUrl": None,
        "query": op.query,
    }


async def handle(request: web.Request) -> web.Response:
    store = request.app[STORE]
    registry = request.app[BULK]
    try:
        body = orjson.loads(await request.read())
        query = str(body["query"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return web.Response(
            status=400,
            body=orjson.dumps({"errors": {"query": "Required parameter missing or invalid"}}),
            content_type="application/json",
        )
    now = store.monotonic()
    bucket = store.graphql_bucket
    bucket.maximum = store.rate_limit.graphql_maximum
    bucket.restore_rate = store.rate_limit.graphql_restore_rate
    running = "bulkOperationRunQuery" in query
    by_id = _BY_ID.search(query)  # `node(id: ...)` / `bulkOperation(id: ...)`: poll one operation
    polling = "currentBulkOperation" in query or by_id is not None
    if not running and not polling:
        return _json(
            {
                "errors": [
                    {
                        "message": "The sandbox only serves bulkOperationRunQuery and currentBulkOperation",
                        "extensions": {"code": "UNSUPPORTED"},
                    }
                ]
            }
        )
    cost = RUN_COST if running else POLL_COST
    if not bucket.spend(cost, now):
        return _json(
            {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {
                            "code": "THROTTLED",
                            "documentation": "https://shopify.dev/api/usage/rate-limits",
                        },
                    }
                ],
                "extensions": _cost(store, cost, 0, now),
            }
        )
    base_url = str(request.url.origin())
    if polling and not running:
        if by_id is not None:
            found = _GID.search(query + " " + orjson.dumps(body.get("variables") or {}).decode())
            op = registry.operations.get(int(found.group(1))) if found else None
            data = {by_id.group(1): describe(op, base_url, now) if op else None}
        else:
            op = registry.operations.get(registry.current) if registry.current is not None else None
            data = {"currentBulkOperation": describe(op, base_url, now) if op else None}
        return _json({"data": data, "extensions": _cost(store, cost, cost, now)})
    if "read_customers" not in store.granted_scopes:
        return _json(
            {
                "errors": [
                    {
                        "message": "Access denied for customers field. Required access: `read_customers` access scope.",
                        "extensions": {"code": "ACCESS_DENIED"},
                    }
                ],
                "extensions": _cost(store, cost, cost, now),
            }
        )
    inner = _inner_query(query, body.get("variables"))
    user_errors: list[dict[str, Any]] = []
    result: dict[str, Any] | None = None
    current = registry.operations.get(registry.current) if registry.current is not None else None
    if current is not None and current.status(now) != "COMPLETED":
        user_errors.append(
            {
                "field": None,
                "message": f"A bulk query operation for this app and shop is already in progress: {current.gid}.",
            }
        )
    elif "customers" not in inner:
        user_errors.append({"field": ["query"], "message": "The sandbox can only export customers."})
    else:
        op = registry.start(store, inner)
        result = {"id": op.gid, "status": "CREATED", "createdAt": fmt_utc(int(time.time()))}
    data = {"bulkOperationRunQuery": {"bulkOperation": result, "userErrors": user_errors}}
    return _json({"data": data, "extensions": _cost(store, cost, cost, now)})


def _inner_query(query: str, variables: Any) -> str:
    """The export query: a triple-quoted block in the mutation, or a string variable."""
    if '"""' in query:
        parts = query.split('"""')
        if len(parts) >= 3:
            return parts[1].strip()
    if isinstance(variables, dict):
        for value in variables.values():
            if isinstance(value, str):
                return value
    return query


async def download(request: web.Request) -> web.StreamResponse:
    """The JSONL result of a completed bulk operation, streamed and generated on the fly."""
    store = request.app[STORE]
    op = request.app[BULK].operations.get(int(request.match_info["number"]))
    if op is None or op.status(store.monotonic()) != "COMPLETED":
        return web.Response(status=404, text="NoSuchKey")
    response = web.StreamResponse(headers={"Content-Type": "application/jsonl"})
    await response.prepare(request)
    chunk: list[bytes] = []
    for customer in snapshot_customers(store, op):
        chunk.append(orjson.dumps(graphql_customer(customer)))
        if len(chunk) >= 500:
            await response.write(b"\n".join(chunk) + b"\n")
            chunk.clear()
    if chunk:
        await response.write(b"\n".join(chunk) + b"\n")
    await response.write_eof()
    return response
