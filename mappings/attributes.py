"""Attribute mapping: field path -> APSIS attribute version id, and what to patch.

- Values are converted to what APSIS accepts: numbers and booleans as they are, times as
  ISO 8601 UTC strings, lists (tags) joined with ", ", other objects as compact JSON text.
  Empty values (null, "", empty list or object) become `null`, which clears the attribute.
- A field never known (`UNKNOWN`) is left out: we do not clear what we cannot see.
- `changed_attributes` patches only values that differ from what was last written; a `null` is
  not sent for an attribute never written (nothing to clear), unless `force`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mappings.installation import Section
from mappings.snapshot import JSON, UNKNOWN, plain


def attribute_value(value: Any) -> JSON:
    """The APSIS form of a field value (snapshot value or its JSON form). Not for `UNKNOWN`."""
    if type(value) is str:  # the most common by far: no conversion to ask `plain` for
        text: str = value
        return text if text.strip() else None
    value = plain(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, list):
        items = [str(v) for v in map(attribute_value, value) if v is not None]
        return ", ".join(items) if items else None
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":")) if value else None
    return str(value)


def map_attributes(
    section: Section, fields: Mapping[str, Any], extra: Mapping[str, str] | None = None
) -> dict[str, JSON]:
    """`{version_id: value}` for every mapped path whose value is known; `extra` adds
    `{path: version_id}` pairs the section needs besides the merchant's mapping (the address
    attributes of its consent channels)."""
    result: dict[str, JSON] = {}
    for path, version_id in [*section.attributes.items(), *(extra or {}).items()]:
        value = fields.get(path, UNKNOWN)
        if value is not UNKNOWN:
            result[version_id] = attribute_value(value)
    return result


def changed_attributes(
    desired: Mapping[str, JSON], written: Mapping[str, JSON] | None, *, force: bool = False
) -> dict[str, JSON]:
    """The patch body: the desired values that differ from what was last written."""
    written = written or {}
    body: dict[str, JSON] = {}
    for version_id, value in desired.items():
        if force:
            body[version_id] = value
        elif version_id in written:
            if written[version_id] != value or type(written[version_id]) is not type(value):
                body[version_id] = value
        elif value is not None:
            body[version_id] = value
    return body
