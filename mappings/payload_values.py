"""Reading one value of a Shopify payload into its typed form, the same way for every payload.

Ids (integers, numeric strings or `gid://shopify/<Type>/<n>`), ISO 8601 times (naive ones are
UTC), optional strings (blank is None), email addresses (lower-cased), booleans, whole numbers,
decimals, consent states, tag lists (a comma-separated string or a list, deduplicated ignoring
case) and addresses (REST keys from either API). A value of the wrong shape raises
`PayloadError` naming its key. Used by `mappings.normalize`, `mappings.normalize_graphql`,
`mappings.orders` and `mappings.state`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from mappings.snapshot import CONSENT_STATES, PayloadError

_GID = re.compile(r"^gid://shopify/([A-Za-z]+)/(\d+)(\?.*)?$")
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def parse_id(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise PayloadError(key, "must be an id, not a boolean")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str):
        match = _GID.match(value.strip())
        text = match.group(2) if match else value.strip()
        if not text.isdigit():
            raise PayloadError(key, f"not a customer id: {value!r}")
        result = int(text)
    else:
        raise PayloadError(key, f"must be an id, not {type(value).__name__}")
    if result <= 0:
        raise PayloadError(key, f"not a customer id: {value!r}")
    return result


def parse_time(value: Any, key: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(key, f"must be an ISO 8601 time, not {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PayloadError(key, f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_object(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(key, f"must be an object, not {type(value).__name__}")
    return value


def opt_object(value: Any, key: str) -> Mapping[str, Any] | None:
    return None if value is None else as_object(value, key)


def opt_str(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(key, f"must be a string, not {type(value).__name__}")
    return value.strip() or None


def opt_email(value: Any, key: str) -> str | None:
    text = opt_str(value, key)
    return text.lower() if text else None


def opt_bool(value: Any, key: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise PayloadError(key, f"must be true or false, not {type(value).__name__}")


def opt_int(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise PayloadError(key, f"must be a whole number, not {value!r}")


def opt_decimal(value: Any, key: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PayloadError(key, f"must be a number, not {type(value).__name__}")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise PayloadError(key, f"not a number: {value!r}") from None
    if not result.is_finite():
        raise PayloadError(key, f"not a number: {value!r}")
    return result


def consent_state(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(key, f"must be a consent state, not {type(value).__name__}")
    state = value.strip().lower()
    if state not in CONSENT_STATES:
        raise PayloadError(key, f"unknown consent state {value!r}")
    return state


def parse_tags(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise PayloadError(key, f"must be a comma-separated string or a list, not {type(value).__name__}")
    tags: list[str] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise PayloadError(key, f"every tag must be a string, not {type(item).__name__}")
        tag = item.strip()
        if tag and tag.casefold() not in seen:
            tags.append(tag)
            seen.add(tag.casefold())
    return tuple(tags)


def parse_addresses(value: Any, key: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise PayloadError(key, f"must be a list, not {type(value).__name__}")
    result = []
    for i, item in enumerate(value):
        address = parse_address(item, f"{key}[{i}]")
        if address is not None:
            result.append(address)
    return tuple(result)


def parse_address(value: Any, key: str) -> Mapping[str, Any] | None:
    """An address with REST keys (`country_code`, `province_code`, ...), from either API."""
    obj = opt_object(value, key)
    if obj is None:
        return None
    result: dict[str, Any] = {}
    for name, item in obj.items():
        snake = snake_case(name)
        if snake in ("country_code_v2", "country_code"):
            snake = "country_code"
        if isinstance(item, str) and _GID.match(item):
            item = parse_id(item, f"{key}.{name}")
        result.setdefault(snake, item)
    return result


@functools.lru_cache(maxsize=1024)
def snake_case(name: str) -> str:
    # Cached: every payload repeats the same few dozen keys, and the regex was 2 % of a worker's
    # CPU in the real-time benchmark (py-spy). Bounded, so odd keys cannot grow it.
    return _CAMEL.sub(r"_\1", name).lower()
