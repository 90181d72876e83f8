"""Value formats the simulated API checks: RFC 3339 times, attribute types, email and E.164 addresses."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from sandbox.apsis.definitions import EMAIL_CHANNEL, SMS_CHANNEL

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_MOBILE_RE = re.compile(r"^\+[0-9]{8,15}$")  # E.164: a plus and 8 to 15 digits
_RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def kept_json(value: Any) -> bytes:
    """JSON bytes to keep for long: a copy of orjson's answer at its own size. orjson 3.12 and
    later hand back a buffer of about 4 KB for any small document, so a million log entries kept
    as they come would hold 4 GB, and touching that much new memory was a third of this
    sandbox's CPU while it applied an import."""
    return bytes(memoryview(orjson.dumps(value)))


def iso(ts: float) -> str:
    """Epoch seconds -> RFC 3339 UTC (`...Z`)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def is_rfc3339(value: object) -> bool:
    if not isinstance(value, str) or not _RFC3339_RE.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def value_fits(kind: str, value: object) -> bool:
    """Whether a JSON value suits an attribute type (string, integer, double, boolean, date)."""
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "double":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "date":
        if not isinstance(value, str):
            return False
        if _DATE_RE.match(value):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return False
            return True
        return is_rfc3339(value)
    return isinstance(value, str)


def is_email(value: object) -> bool:
    return isinstance(value, str) and _EMAIL_RE.match(value) is not None


def is_mobile(value: object) -> bool:
    """E.164: `+` and 8 to 15 digits, nothing else."""
    return isinstance(value, str) and _MOBILE_RE.match(value) is not None


def address_channel(address: str) -> str | None:
    """The channel an address belongs to by its shape (email or E.164 phone), None for neither."""
    if is_email(address):
        return EMAIL_CHANNEL
    if is_mobile(address):
        return SMS_CHANNEL
    return None


def address_key(address: str) -> str:
    """How suppressions are looked up: email addresses without case, phone numbers as they are."""
    return address.lower() if "@" in address else address
