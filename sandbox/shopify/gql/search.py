"""Shopify's search syntax for the `query:` argument, the part this sandbox filters by.

`updated_at:>'2026-01-01T00:00:00Z' AND tag:vip` is a list of terms joined by spaces or `AND`
(`OR` and parentheses are not supported: a `GraphQLError`). A term is `field:value` with an
optional comparator (`>`, `>=`, `<`, `<=`) after the colon; values may be quoted. Times are ISO
8601 (a date alone is midnight UTC); `id` compares numeric ids. A field the resource does not
know is skipped and reported, as Shopify does, in `extensions.search` warnings.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLError

_TERM = re.compile(r"""(-?)([a-z_]+):(>=|<=|>|<)?("[^"]*"|'[^']*'|\S+)""")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "": operator.eq,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: str
    negated: bool = False

    def compare(self, actual: Any, wanted: Any) -> bool:
        result = _OPS[self.op](actual, wanted)
        return not result if self.negated else result


@dataclass
class Parsed:
    terms: list[Term] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)


def parse_time(value: str) -> int:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise GraphQLError(f"Invalid date in search query: {value}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def parse(query: str | None, known: frozenset[str]) -> Parsed:
    out = Parsed()
    if not query or not query.strip():
        return out
    rest = query
    for token in (" OR ", "(", ")"):
        if token in rest:
            raise GraphQLError(f"The sandbox search supports AND only, not {token.strip()!r}: {query}")
    rest = re.sub(r"\bAND\b", " ", rest)
    consumed = _TERM.sub(" ", rest).strip()
    if consumed:
        raise GraphQLError(f"The sandbox search needs field:value terms, not {consumed!r}")
    for neg, name, op, raw in _TERM.findall(rest):
        value = raw[1:-1] if raw[:1] in "\"'" else raw
        if name not in known:
            out.warnings.append({"field": name, "message": "Invalid search field for this query."})
            continue
        out.terms.append(Term(name, op or "", value, bool(neg)))
    return out


def numeric_id(value: str) -> int:
    try:
        return int(value.rsplit("/", 1)[-1])
    except ValueError as exc:
        raise GraphQLError(f"Invalid id in search query: {value}") from exc
