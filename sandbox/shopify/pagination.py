"""Shopify REST cursor pagination: opaque `page_info` tokens and the `Link` header.

A token carries the direction, the boundary id and the filters of the first request, so a
follow-up request may only add `limit` and `fields` (anything else is a 400, as at Shopify).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

DEFAULT_LIMIT = 50
MAX_LIMIT = 250
PAGE_INFO_PARAMS = frozenset({"page_info", "limit", "fields"})


class PageError(ValueError):
    """A bad pagination request; `errors` is Shopify's error body value."""

    def __init__(self, errors: Any) -> None:
        super().__init__(str(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Cursor:
    direction: str  # "next": ids after `boundary`; "prev": ids before it
    boundary: int
    filters: dict[str, str]


def encode_cursor(cursor: Cursor) -> str:
    raw = orjson.dumps({"direction": cursor.direction, "last_id": cursor.boundary, "filters": cursor.filters})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        direction = data["direction"]
        if direction not in ("next", "prev"):
            raise ValueError(direction)
        filters = {str(k): str(v) for k, v in data["filters"].items()}
        return Cursor(direction, int(data["last_id"]), filters)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise PageError({"page_info": "Invalid value."}) from exc


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError as exc:
        raise PageError({"limit": "Invalid value."}) from exc
    if limit < 1 or limit > MAX_LIMIT:
        raise PageError({"limit": f"limit must be between 1 and {MAX_LIMIT}"})
    return limit


def check_page_info_params(params: dict[str, str]) -> None:
    extra = sorted(set(params) - PAGE_INFO_PARAMS)
    if extra:
        raise PageError({name: f"{name} cannot be passed when page_info is present." for name in extra})


def link_header(
    base_url: str, limit: int, fields: str | None, prev: Cursor | None, nxt: Cursor | None
) -> str | None:
    links = []
    for cursor, rel in ((prev, "previous"), (nxt, "next")):
        if cursor is None:
            continue
        query: dict[str, str] = {"limit": str(limit)}
        if fields:
            query["fields"] = fields
        query["page_info"] = encode_cursor(cursor)
        links.append(f'<{base_url}?{urlencode(query)}>; rel="{rel}"')
    return ", ".join(links) if links else None
