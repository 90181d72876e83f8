"""Shopify GraphQL export: customers per second and per cost point, pages against a bulk operation.

One in-process sandbox store (20,000 customers; 3,000 with `--quick`), the worker's own documents
(`worker.shopify_queries`): (1) walk `CUSTOMERS_QUERY` pages as large as
the 1,000-point single query limit allows, with cursors, summing the
actual cost Shopify reports; (2) run `BULK_CUSTOMERS_QUERY` as a bulk operation, poll it with
`BULK_OPERATION_QUERY` every 50 ms, stream the JSONL. The bucket is unlimited here so the run
measures the sandbox and the cost, not the throttle; `*_per_s_at_standard` is what the cost
allows on a Standard plan (100 points/s): customers per point x 100. The bulk operation's
running time is the sandbox's model (50,000 objects/s), not a measurement of Shopify.

    python -m bench.run shopify [--quick]
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from sandbox.shopify import ShopifySandbox, Store
from worker.shopify_queries import (
    BULK_CUSTOMERS_QUERY,
    BULK_OPERATION_QUERY,
    BULK_RUN_MUTATION,
    CUSTOMERS_QUERY,
)

HEADERS = {"X-Shopify-Access-Token": "shpat_sandbox_token"}
VERSION = "2026-10"
STANDARD_RESTORE = 100.0
SINGLE_QUERY_MAX_COST = 1000


async def _post(
    session: aiohttp.ClientSession, url: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    async with session.post(url, json={"query": query, "variables": variables}) as resp:
        resp.raise_for_status()
        body: dict[str, Any] = await resp.json()
    if "errors" in body:
        raise RuntimeError(f"GraphQL errors: {body['errors'][:1]}")
    return body


async def _pages(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    probe = await _post(session, url, CUSTOMERS_QUERY, {"first": 1})  # learn one item's cost
    item = probe["extensions"]["cost"]["requestedQueryCost"] - 2
    size = min(250, (SINGLE_QUERY_MAX_COST - 2) // item)  # the largest page under the 1,000 limit
    customers = points = requested = requests = 0
    after: str | None = None
    started = time.perf_counter()
    while True:
        body = await _post(session, url, CUSTOMERS_QUERY, {"first": size, "after": after})
        page = body["data"]["customers"]
        customers += len(page["nodes"])
        points += body["extensions"]["cost"]["actualQueryCost"]
        requested = max(requested, body["extensions"]["cost"]["requestedQueryCost"])
        requests += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    seconds = time.perf_counter() - started
    return {
        "customers": customers,
        "seconds": seconds,
        "points": points,
        "requests": requests,
        "page_size": size,
        "page_requested_cost": requested,
    }


async def _bulk(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    started = time.perf_counter()
    body = await _post(session, url, BULK_RUN_MUTATION, {"query": BULK_CUSTOMERS_QUERY})
    points = body["extensions"]["cost"]["actualQueryCost"]
    op = body["data"]["bulkOperationRunQuery"]["bulkOperation"]
    polls = 0
    while True:
        await asyncio.sleep(0.05)
        body = await _post(session, url, BULK_OPERATION_QUERY, {"id": op["id"]})
        points += body["extensions"]["cost"]["actualQueryCost"]
        polls += 1
        node = body["data"]["node"]
        if node["status"] == "COMPLETED":
            break
        if node["status"] not in ("CREATED", "RUNNING"):
            raise RuntimeError(f"bulk operation {node['status']}: {node['errorCode']}")
    ready = time.perf_counter()
    lines = 0
    async with session.get(node["url"]) as resp:
        async for _line in resp.content:
            lines += 1
    seconds = time.perf_counter() - started
    return {
        "customers": lines,
        "seconds": seconds,
        "wait_seconds": ready - started,
        "download_seconds": seconds - (ready - started),
        "points": points,
        "polls": polls,
    }


async def _run(size: int) -> dict[str, Any]:
    store = Store(seed=11, size=size)
    store.rate_limit.graphql_maximum = 10.0**9
    async with ShopifySandbox(store) as sandbox, aiohttp.ClientSession(headers=HEADERS) as session:
        url = f"{sandbox.url}/admin/api/{VERSION}/graphql.json"
        pages = await _pages(session, url)
        bulk = await _bulk(session, url)
    return {"pages": pages, "bulk": bulk}


def _rates(part: dict[str, Any]) -> dict[str, float]:
    per_point = part["customers"] / max(part["points"], 1)
    return {
        "customers_per_s": round(part["customers"] / part["seconds"]),
        "customers_per_point": round(per_point, 2),
        "customers_per_s_at_standard": round(per_point * STANDARD_RESTORE),
    }


def run(quick: bool = False) -> dict[str, Any]:
    size = 3_000 if quick else 20_000
    details = asyncio.run(_run(size))
    pages, bulk = _rates(details["pages"]), _rates(details["bulk"])
    return {
        "name": "shopify",
        "store_customers": size,
        "pages_customers_per_s": pages["customers_per_s"],
        "bulk_customers_per_s": bulk["customers_per_s"],
        "pages_customers_per_point": pages["customers_per_point"],
        "bulk_customers_per_point": bulk["customers_per_point"],
        "pages_customers_per_s_at_standard": pages["customers_per_s_at_standard"],
        "bulk_customers_per_s_at_standard": bulk["customers_per_s_at_standard"],
        "page_size": details["pages"]["page_size"],
        "page_requested_cost": details["pages"]["page_requested_cost"],
        "pages_points": details["pages"]["points"],
        "bulk_points": details["bulk"]["points"],
        "details": details,
    }


if __name__ == "__main__":
    import sys

    import orjson

    print(orjson.dumps(run(quick="--quick" in sys.argv), option=orjson.OPT_INDENT_2).decode())
