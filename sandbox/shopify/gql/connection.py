"""Relay connections with Shopify's rules: `first`/`after` or `last`/`before`, `reverse`, opaque cursors.

A `Source(boundary, descending)` yields `(key, item)` strictly beyond `boundary` in key order
(ascending, or descending when asked); keys are tuples ending with the record id, so they are
unique and a cursor is the key itself (base64 JSON). The listing order is ascending keys, or
descending with `reverse: true`. Exactly one of `first` and `last` is required, 1 to 250: anything
else is a `GraphQLError`, as at Shopify.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any

import orjson
from graphql import GraphQLError

Key = tuple[Any, ...]
Source = Callable[[Key | None, bool], Iterator[tuple[Key, Any]]]
MAX_PAGE = 250


def encode_cursor(key: Key) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode()


def decode_cursor(cursor: str | None) -> Key | None:
    if cursor is None:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor}") from exc
    if not isinstance(value, list) or not value:
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor}")
    return tuple(value)


def page_size(first: int | None, last: int | None) -> int:
    if (first is None) == (last is None):
        raise GraphQLError("you must provide one of first or last")
    size = first if first is not None else last
    assert size is not None
    if not 0 <= size <= MAX_PAGE:
        raise GraphQLError(
            f"The value of `{'first' if first is not None else 'last'}` must be between 0 and {MAX_PAGE}"
        )
    return size


def list_source(keyed: Sequence[tuple[Key, Any]]) -> Source:
    """A source over records already sorted by key."""
    keys = [k for k, _ in keyed]

    def source(boundary: Key | None, descending: bool) -> Iterator[tuple[Key, Any]]:
        if descending:
            end = len(keyed) if boundary is None else bisect.bisect_left(keys, boundary)
            return (keyed[i] for i in range(end - 1, -1, -1))
        start = 0 if boundary is None else bisect.bisect_right(keys, boundary)
        return (keyed[i] for i in range(start, len(keyed)))

    return source


def _any_beyond(source: Source, key: Key | None, descending: bool) -> bool:
    """Whether any record lies beyond `key` in that direction (None: whether any record exists)."""
    return next(source(key, descending), None) is not None


def connection(
    source: Source,
    node: Callable[[Any], Any],
    *,
    first: int | None = None,
    last: int | None = None,
    after: str | None = None,
    before: str | None = None,
    reverse: bool = False,
) -> dict[str, Any]:
    """One page: `{edges: [{cursor, node}], nodes, pageInfo}`."""
    size = page_size(first, last)
    lo, hi = decode_cursor(after), decode_cursor(before)

    def inside(key: Key, bound: Key | None, upper: bool) -> bool:
        # `upper`: the bound is at the end of the listing order (before); else at its start (after).
        if bound is None:
            return True
        return (
            (key > bound if reverse else key < bound) if upper else (key < bound if reverse else key > bound)
        )

    if first is not None:
        picked = list(islice((kv for kv in source(lo, reverse) if inside(kv[0], hi, True)), size + 1))
        has_next = len(picked) > size
        picked = picked[:size]
        # Records before this page's first one (the cursor's own record among them).
        has_prev = lo is not None and _any_beyond(source, picked[0][0] if picked else None, not reverse)
    else:
        back = (kv for kv in source(hi, not reverse) if inside(kv[0], lo, False))
        picked = list(islice(back, size + 1))
        has_prev = len(picked) > size
        picked = list(reversed(picked[:size]))
        has_next = hi is not None and _any_beyond(source, picked[-1][0] if picked else None, reverse)
    edges = [{"cursor": encode_cursor(key), "node": node(item)} for key, item in picked]
    return {
        "edges": edges,
        "nodes": [edge["node"] for edge in edges],
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_prev,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }
