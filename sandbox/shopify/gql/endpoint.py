"""`POST /admin/api/{version}/graphql.json`: the GraphQL Admin API of the simulated store.

The app middleware has already checked the version and the access token. Then, in order:
1. fault switches (`store.rate_limit`): `latency_s` delays the answer, `fault_5xx_rate` answers
   503, `fault_429_rate` answers 429 with `Retry-After` (left out on `retry_after_omit_rate` of them);
2. a body that is not JSON with a string `query` -> 400 `{"errors": {"query": ...}}`;
3. a syntax error or a document the schema rejects -> 200 with `errors` only (nothing charged);
4. requested cost over 1,000 -> `MAX_COST_EXCEEDED`; more than the app's bucket holds ->
   `THROTTLED` (nothing runs, `actualQueryCost: null`);
5. execution: `data` (partial when a field fails) with `errors`; the bucket is refunded the
   difference between the requested and the actual cost.
Every answer after step 3 carries `extensions.cost` with the bucket's `throttleStatus`.
Each executed operation counts once per root field in `app[GRAPHQL_COUNTERS]`, keyed by
(operation name, root field), for tests that count reads (`/_sandbox/graphql_requests`).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from aiohttp import web
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)

from sandbox.shopify.appkeys import GRAPHQL_COUNTERS, STORE
from sandbox.shopify.gql.context import GQL_CONFIG, Context
from sandbox.shopify.gql.cost import operation_cost
from sandbox.shopify.gql.schema import SCHEMA
from sandbox.shopify.graphql import BULK
from sandbox.shopify.ratelimit import SINGLE_QUERY_MAX_COST, CostBucket, CostBuckets

BUCKETS: web.AppKey[CostBuckets] = web.AppKey("shopify_graphql_buckets", CostBuckets)
RATE_LIMITS_DOC = "https://shopify.dev/api/usage/rate-limits"
_UNDEFINED_FIELD = re.compile(r"^Cannot query field '(\w+)' on type '(\w+)'\.")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def _shopify_error(error: GraphQLError) -> dict[str, Any]:
    """graphql-core's error in Shopify's words where they differ (undefined fields)."""
    formatted: dict[str, Any] = dict(error.formatted)
    match = _UNDEFINED_FIELD.match(error.message)
    if match:
        field, type_name = match.groups()
        formatted["message"] = f"Field '{field}' doesn't exist on type '{type_name}'"
        formatted["extensions"] = {"code": "undefinedField", "typeName": type_name, "fieldName": field}
    return formatted


def _cost(bucket: CostBucket, now: float, requested: int, actual: int | None) -> dict[str, Any]:
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": float(bucket.maximum),
            "currentlyAvailable": int(bucket.refill(now)),
            "restoreRate": float(bucket.restore_rate),
        },
    }


async def handle(request: web.Request) -> web.Response:
    store = request.app[STORE]
    config = store.rate_limit
    if config.latency_s > 0:
        await asyncio.sleep(config.latency_s)
    if config.fault_5xx_rate > 0 and store.rng.random() < config.fault_5xx_rate:
        return _json({"errors": "Internal Server Error"}, 503)
    if config.fault_429_rate > 0 and store.rng.random() < config.fault_429_rate:
        omit = config.retry_after_omit_rate > 0 and store.rng.random() < config.retry_after_omit_rate
        return _json({"errors": "Too Many Requests"}, 429, None if omit else {"Retry-After": "2.0"})
    try:
        body = orjson.loads(await request.read())
        query = body["query"]
        variables = body.get("variables") or {}
        if not isinstance(query, str) or not isinstance(variables, dict):
            raise TypeError
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return _json({"errors": {"query": "Required parameter missing or invalid"}}, 400)
    try:
        document = parse(query)
    except GraphQLError as exc:
        return _json({"errors": [_shopify_error(exc)]})
    invalid = validate(SCHEMA, document)
    if invalid:
        return _json({"errors": [_shopify_error(e) for e in invalid]})
    operation_name = body.get("operationName") if isinstance(body.get("operationName"), str) else None
    operation = get_operation_ast(document, operation_name)
    if not isinstance(operation, OperationDefinitionNode):
        return _json(
            {
                "errors": [
                    {
                        "message": "An operation name is required"
                        if operation_name is None
                        else f"No operation named '{operation_name}'"
                    }
                ]
            }
        )
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    requested = operation_cost(SCHEMA, operation, fragments, variables)
    bucket = request.app[BUCKETS].for_app(request.headers.get("X-Shopify-Access-Token", ""), config)
    now = store.monotonic()
    if requested > SINGLE_QUERY_MAX_COST:
        message = (
            f"Query cost is {requested}, which exceeds the single query max cost limit ({SINGLE_QUERY_MAX_COST}).\n\n"
            f"See {RATE_LIMITS_DOC} for more information on how the\ncost of a query is calculated.\n\n"
            "To query larger amounts of data with fewer limits, bulk operations should be used instead.\n"
            "See https://shopify.dev/docs/api/usage/bulk-operations/queries for usage details.\n"
        )
        error = {
            "message": message,
            "extensions": {
                "code": "MAX_COST_EXCEEDED",
                "cost": requested,
                "maxCost": SINGLE_QUERY_MAX_COST,
                "documentation": RATE_LIMITS_DOC,
            },
        }
        return _json({"errors": [error], "extensions": {"cost": _cost(bucket, now, requested, None)}})
    if not bucket.spend(requested, now):
        error = {
            "message": "Throttled",
            "extensions": {"code": "THROTTLED", "documentation": RATE_LIMITS_DOC},
        }
        return _json({"errors": [error], "extensions": {"cost": _cost(bucket, now, requested, None)}})
    counters = request.app[GRAPHQL_COUNTERS]
    name = operation.name.value if operation.name else ""
    for selection in operation.selection_set.selections:
        if isinstance(selection, FieldNode):
            counters[(name, selection.name.value)] += 1
    context = Context(
        store=store,
        bulk=request.app[BULK],
        config=request.app[GQL_CONFIG],
        version=request.match_info.get("version", ""),
        base_url=str(request.url.origin()),
    )
    result = execute_sync(
        SCHEMA, document, context_value=context, variable_values=variables, operation_name=operation_name
    )
    actual = (
        operation_cost(SCHEMA, operation, fragments, variables, result.data) if result.data is not None else 0
    )
    bucket.refund(requested - actual)
    answer: dict[str, Any] = {}
    if result.errors:
        answer["errors"] = [_shopify_error(e) for e in result.errors]
    answer["data"] = result.data
    extensions: dict[str, Any] = {"cost": _cost(bucket, now, requested, actual)}
    if context.search:
        extensions["search"] = context.search
    answer["extensions"] = extensions
    return _json(answer)
