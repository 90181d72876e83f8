"""Keeping APSIS request bodies under the 100 kB limit, as pure functions.

orjson writes no whitespace, so the size of a JSON object is exactly the braces plus its
members plus the commas between them: members can be packed greedily without re-encoding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

# APSIS: "at most 100 kB". Read as 100 000 bytes, the stricter of the two readings.
MAX_BODY_BYTES = 100_000


class TooLargeError(ValueError):
    def __init__(self, what: str, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        super().__init__(f"{what} alone is {size} bytes encoded, over the {limit} byte body limit")


def split_merge_patch(body: Mapping[str, Any], limit: int = MAX_BODY_BYTES) -> list[dict[str, Any]]:
    """Split a merge-patch object into as few objects as possible, each encoding within `limit`.

    Merge-patch members are independent, so the parts together mean what the whole meant.
    """
    parts: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    size = 2  # {}
    for key, value in body.items():
        member = len(orjson.dumps({key: value})) - 2
        if member + 2 > limit:
            raise TooLargeError(f"attribute {key!r}", member + 2, limit)
        extra = member + (1 if current else 0)
        if current and size + extra > limit:
            parts.append(current)
            current, size, extra = {}, 2, member
        current[key] = value
        size += extra
    if current or not parts:
        parts.append(current)
    return parts


_ITEMS_OVERHEAD = len(orjson.dumps({"items": []}))


def batch_items(items: Sequence[Any], limit: int = MAX_BODY_BYTES) -> list[list[Any]]:
    """Group `items` into as few `{"items": [...]}` bodies as possible, each within `limit`,
    keeping their order."""
    batches: list[list[Any]] = []
    current: list[Any] = []
    size = _ITEMS_OVERHEAD
    for index, item in enumerate(items):
        encoded = len(orjson.dumps(item))
        if encoded + _ITEMS_OVERHEAD > limit:
            raise TooLargeError(f"event item {index}", encoded + _ITEMS_OVERHEAD, limit)
        extra = encoded + (1 if current else 0)
        if current and size + extra > limit:
            batches.append(current)
            current, size, extra = [], _ITEMS_OVERHEAD, encoded
        current.append(item)
        size += extra
    if current:
        batches.append(current)
    return batches
