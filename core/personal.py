"""What an operator sees of a job or a dead letter: the customer's data masked, the rest kept.

A job's arguments carry the webhook as Shopify sent it (a JSON body inside the job) or a customer
as the walk read it: names, addresses, notes and the like besides emails and phone numbers. For
`shopsync job` and `shopsync dead-letters list --json` they are shown with every such field
masked by its name (its first letter only), JSON bodies parsed so that their fields are masked
too, and any email address or phone number left in other text masked as in the logs
(core/logging.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from core.logging import mask_email, mask_phone, scrub_text

# Field names (lower case, without `_`) whose values are a person's: Shopify's REST payloads
# (`first_name`, `address1`, `browser_ip`, ...) and GraphQL shapes (`firstName`, `emailAddress`, ...).
PERSONAL_FIELDS = frozenset(
    {
        "firstname",
        "lastname",
        "name",
        "displayname",
        "company",
        "address1",
        "address2",
        "city",
        "zip",
        "note",
        "latitude",
        "longitude",
        "browserip",
        "useragent",
        "ip",
        "email",
        "emailaddress",
        "contactemail",
        "phone",
        "phonenumber",
    }
)
_PHONE_FIELDS = frozenset({"phone", "phonenumber"})
_DEPTH = 12


def mask_personal(value: Any) -> Any:
    """`value` with personal fields masked (see the module docstring); JSON bodies parsed."""
    return _walk(value, 0)


def _walk(value: Any, depth: int) -> Any:
    if depth > _DEPTH:
        return "***"
    if isinstance(value, dict):
        # A name/value pair (an order's line-item properties, note attributes): the value is
        # whatever the buyer typed, a gift message with a name in it as often as not.
        pair = "name" in value and "value" in value
        return {k: _field("note" if pair and k == "value" else str(k), v, depth) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, depth + 1) for v in value]
    if isinstance(value, str):
        parsed = _json_document(value)
        return scrub_text(value) if parsed is None else _walk(parsed, depth + 1)
    return value


def _field(name: str, value: Any, depth: int) -> Any:
    field = name.replace("_", "").lower()
    if field not in PERSONAL_FIELDS or value is None or value == "":
        return _walk(value, depth + 1)
    if isinstance(value, str):
        if "@" in value:
            return mask_email(value)
        if field in _PHONE_FIELDS:
            return mask_phone(value)
        # No hash: names, cities and zip codes are few enough that any hash of them can be
        # looked up by trying them all.
        return f"{value[:1]}***"
    if isinstance(value, dict | list | tuple):
        return _walk(value, depth + 1)
    return "***"


def _json_document(text: str) -> Any:
    """A string holding a JSON object or array (a webhook body inside a job), parsed; else None."""
    stripped = text.lstrip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
