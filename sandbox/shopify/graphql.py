"""Bulk operations of the simulated store: the registry, their life cycle and the JSONL result.

`bulkOperationRunQuery` (see `gql/admin_resolvers.py`) checks the export query against the
schema (`gql/bulk_query.py`) and starts an operation here: a snapshot of the customers at that
moment that runs CREATED -> RUNNING -> COMPLETED over `count / objects_per_second` seconds (or
FAILED with `ACCESS_DENIED` when it selects protected fields the app may not read). Shopify runs
up to 5 bulk query operations at once per app and shop from API version 2026-01, one before
(https://shopify.dev/docs/api/usage/bulk-operations/queries): the version of the start call
decides, and one more is refused (`OPERATION_IN_PROGRESS` where one is allowed, `LIMIT_REACHED`
where five are) and counted; `/_sandbox/state` shows the most that ever ran at once (`peak`).
The result is JSONL from `/_sandbox/bulk/{n}.jsonl`, one line per customer holding exactly the
fields the export query selected, in its order, under its aliases, generated once into a file and
served from it with byte ranges, as storage serves Shopify's (`bulk_files.py`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from graphql import FieldNode, FragmentDefinitionNode, FragmentSpreadNode, InlineFragmentNode, SelectionNode

from sandbox.shopify import bulk_files
from sandbox.shopify.appkeys import STORE
from sandbox.shopify.data import CUSTOMER_BASE
from sandbox.shopify.gql.shapes import customer_node
from sandbox.shopify.models import Customer
from sandbox.shopify.serialize import fmt_utc, gid
from sandbox.shopify.store import Store

CONCURRENT_FROM_2026_01 = 5


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
    selections: Sequence[SelectionNode] = ()
    fragments: dict[str, FragmentDefinitionNode] = field(default_factory=dict)
    error_code: str | None = None
    completed_at: float | None = None

    @property
    def gid(self) -> str:
        return gid("BulkOperation", self.number)

    def status(self, now: float) -> str:
        elapsed = now - self.created
        if elapsed < min(0.01, self.duration / 10):
            return "CREATED"
        if self.error_code is not None:
            return "FAILED"
        if elapsed >= self.duration:
            if self.completed_at is None:
                self.completed_at = self.created + self.duration
            return "COMPLETED"
        return "RUNNING"


@dataclass
class BulkRegistry:
    """Bulk operations of one shop; `objects_per_second` sets how long an export 'runs'."""

    objects_per_second: float = 50_000.0
    operations: dict[int, BulkOperation] = field(default_factory=dict)
    current: int | None = None
    files: bulk_files.BulkFiles = field(default_factory=bulk_files.BulkFiles)
    peak: int = 0  # the most bulk queries that ever ran at once
    refused: int = 0  # starts refused because as many as the version allows were running
    _next: int = 3_000_000_001

    def running(self, now: float) -> list[BulkOperation]:
        return [op for op in self.operations.values() if op.status(now) in ("CREATED", "RUNNING")]

    @staticmethod
    def concurrent_limit(version: str) -> int:
        return CONCURRENT_FROM_2026_01 if version >= "2026-01" else 1

    def start(
        self,
        store: Store,
        query: str,
        selections: Sequence[SelectionNode] = (),
        fragments: dict[str, FragmentDefinitionNode] | None = None,
        error_code: str | None = None,
    ) -> BulkOperation:
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
            selections=selections,
            fragments=fragments or {},
            error_code=error_code,
        )
        self._next += 1
        self.operations[op.number] = op
        self.current = op.number
        self.peak = max(self.peak, len(self.running(op.created)))
        return op

    def describe_counts(self, now: float) -> dict[str, Any]:
        """For `/_sandbox/state`: how the store's bulk queries ran against the limit."""
        return {
            "objects_per_second": self.objects_per_second,
            "running": len(self.running(now)),
            "started": len(self.operations),
            "peak": self.peak,
            "refused": self.refused,
        }

    def latest(self) -> BulkOperation | None:
        return self.operations.get(self.current) if self.current is not None else None


BULK: web.AppKey[BulkRegistry] = web.AppKey("shopify_bulk", BulkRegistry)


def snapshot_customers(store: Store, op: BulkOperation, start: int = 0) -> Iterator[tuple[int, Customer]]:
    """The operation's customers from index `start`: (the index after it, customer)."""
    generator = store.generator
    for index in range(start, op.next_index):
        customer_id = CUSTOMER_BASE + index
        if customer_id in op.deleted:
            continue
        customer = op.overrides.get(customer_id)
        if customer is None and index < store.size:
            customer = generator.customer(index)[0]
        if customer is not None:
            yield index + 1, customer


def describe(op: BulkOperation, base_url: str, now: float) -> dict[str, Any]:
    """The `BulkOperation` object as the GraphQL API shows it."""
    status = op.status(now)
    done = status == "COMPLETED"
    progress = (
        op.count
        if done
        else 0
        if status == "FAILED"
        else int(op.count * min(1.0, (now - op.created) / op.duration))
    )
    wall = time.time() - (now - op.created)
    return {
        "id": op.gid,
        "type": "QUERY",
        "status": status,
        "errorCode": op.error_code if status == "FAILED" else None,
        "createdAt": fmt_utc(int(wall)),
        "completedAt": fmt_utc(int(wall + op.duration)) if done or status == "FAILED" else None,
        "objectCount": str(progress),
        "rootObjectCount": str(progress),
        "fileSize": str(op.count * 900) if done and op.count else None,
        "url": f"{base_url}/_sandbox/bulk/{op.number}.jsonl" if done and op.count else None,
        "partialDataUrl": None,
        "query": op.query,
    }


def project(
    value: dict[str, Any], selections: Sequence[SelectionNode], fragments: dict[str, FragmentDefinitionNode]
) -> dict[str, Any]:
    """The fields a selection set asks for, from a record dict, in selection order."""
    out: dict[str, Any] = {}
    for selection in selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            key = selection.alias.value if selection.alias else name
            item = value.get(name)
            if selection.selection_set is not None and item is not None:
                inner = selection.selection_set.selections
                item = (
                    [project(x, inner, fragments) for x in item]
                    if isinstance(item, list)
                    else project(item, inner, fragments)
                )
            out[key] = item
        elif isinstance(selection, InlineFragmentNode):
            out.update(project(value, selection.selection_set.selections, fragments))
        elif isinstance(selection, FragmentSpreadNode):
            out.update(project(value, fragments[selection.name.value].selection_set.selections, fragments))
    return out


async def download(request: web.Request) -> web.StreamResponse:
    """The JSONL result of a completed bulk operation: generated once into its file
    (sandbox/shopify/bulk_files.py), served from it."""
    store = request.app[STORE]
    op = request.app[BULK].operations.get(int(request.match_info["number"]))
    if op is None or op.status(store.monotonic()) != "COMPLETED":
        return web.Response(status=404, text="NoSuchKey")

    def lines(start: int) -> Iterator[tuple[int, bytes]]:
        for position, customer in snapshot_customers(store, op, start):
            yield position, orjson.dumps(project(customer_node(customer), op.selections, op.fragments))

    return await bulk_files.serve(request, request.app[BULK].files.of(op.number), lines)
