"""The aiohttp application keys shared by the REST, GraphQL and control modules."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from sandbox.shopify.store import Store

STORE: web.AppKey[Store] = web.AppKey("shopify_store", Store)
COUNTERS: web.AppKey[Counter[tuple[str, int]]] = web.AppKey("shopify_counters", Counter)
# GraphQL operations executed (charged), by (operation name or "", root field): one per root
# field per request, so a read of `customer` or `nodes` counts as REST routes did.
GRAPHQL_COUNTERS: web.AppKey[Counter[tuple[str, str]]] = web.AppKey("shopify_graphql_counters", Counter)
