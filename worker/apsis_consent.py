"""Consent 2.0 as the APSIS client speaks it: the outcome of a write, the 403 of a keyspace that may
not manage consent, and the reading of `GET /v2/.../profiles/{pk}/sections/{s}/consents`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from worker.errors import ApiError, PermanentApiError

ConsentOutcome = Literal["created", "updated", "unchanged"]
CONSENT_OUTCOMES: dict[int, ConsentOutcome] = {201: "created", 204: "updated", 200: "unchanged"}


class ConsentForbiddenError(PermanentApiError):
    """403 on a consent route: the keyspace may not manage consent (`manage_subscriptions`)."""


def consent_forbidden(error: ApiError) -> ConsentForbiddenError:
    """A consent route's 403, its detail saying what to fix."""
    return ConsentForbiddenError(
        "apsis",
        403,
        error.title,
        f"{error.detail} (the keyspace may not manage consent: its manage_subscriptions flag must be"
        " true, see `shopsync check`)",
        method=error.method,
        route=error.route,
    )


@dataclass(frozen=True, slots=True)
class ProfileConsents:
    """What `GET /v2/.../consents` reports: consents by (channel, topic), and suppressed addresses."""

    # (channel, topic) -> (type, modified_at, source)
    consents: dict[tuple[str, str], tuple[str, datetime | None, str]] = field(default_factory=dict)
    suppressed: frozenset[str] = frozenset()


def parse_profile_consents(data: Any) -> ProfileConsents:
    """Read the consents answer. Suppressions are read from `suppressions[].address` (the reference
    shows that suppression is reported here; see docs/APSIS.md for the shape assumed)."""
    if not isinstance(data, Mapping):
        return ProfileConsents()
    consents: dict[tuple[str, str], tuple[str, datetime | None, str]] = {}
    for item in data.get("items") or ():
        if not isinstance(item, Mapping) or not item.get("topic_discriminator"):
            continue
        key = (str(item.get("channel_discriminator") or ""), str(item["topic_discriminator"]))
        consents[key] = (
            str(item.get("type") or ""),
            _time(item.get("modified_at")),
            str(item.get("source") or ""),
        )
    suppressed = {
        str(s["address"])
        for s in data.get("suppressions") or ()
        if isinstance(s, Mapping) and s.get("address")
    }
    return ProfileConsents(consents, frozenset(suppressed))


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
