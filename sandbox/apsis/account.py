"""The simulated APSIS One account: credentials, definitions, profiles, consents, and what happened.

Everything the HTTP app does goes through an `Account`, so tests configure the account in code
(definitions, limits, faults, a fake clock, consents given in APSIS, suppressions), run traffic
through the real HTTP app, and read the outcome back with the inspection methods (`profile`,
`profile_consents`, `opted_in_topics`, `request_count`, `writes`).

`Account` is assembled from one part per responsibility: access.py (tokens, limits), catalog.py
(definitions), profiles.py (attributes, events, delete), consents.py with suppression.py
(Consent 2.0) and writelog.py (the write log). This module adds the request counters.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sandbox.apsis.access import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AccessMixin
from sandbox.apsis.consents import ConsentRecord, ConsentsMixin
from sandbox.apsis.defaults import (
    KEYSPACE,
    OTHER_SECTION,
    SECTION,
    VIP_SECTION,
    default_definitions,
    definitions_of,
)
from sandbox.apsis.definitions import Definitions
from sandbox.apsis.faults import Faults
from sandbox.apsis.profiles import ProfileView
from sandbox.apsis.writelog import WriteRecord

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "KEYSPACE",
    "MAX_BODY",
    "OTHER_SECTION",
    "SECTION",
    "VIP_SECTION",
    "Account",
    "ConsentRecord",
    "ProfileView",
    "WriteRecord",
    "default_account",
    "default_definitions",
    "definitions_of",
]

MAX_BODY = 102_400  # "at most 100 kB" per APSIS One

# Consent 1.0 routes: a migrated account refuses them (app.py answers 403), and counts them.
CONSENT_1_ROUTES = (
    "/audience/channels/{channel}/addresses/{address}/consents",
    "/audience/channels/{channel}/addresses/{address}/consents"
    "/sections/{section}/consent-lists/{consent_list}/evaluations",
    "/audience/sections/{section}/consent-lists",
    "/audience/sections/{section}/consent-lists/{consent_list}/topics",
    "/audience/keyspaces/{keyspace}/profiles/{profile_key}/sections/{section}/subscriptions",
)


class Account(ConsentsMixin, AccessMixin):
    """One APSIS One account. Configure in code; the HTTP app (`create_app`) serves it."""

    def __init__(
        self,
        definitions: Definitions | None = None,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_lifetime: float = 86_400,
        token_limit_per_minute: int | None = 10,
        account_rate: int | None = 100,
        profile_rate: int | None = 10,
        max_body: int = MAX_BODY,
        max_write_log: int | None = 1_000_000,
        delete_missing_status: int = 404,
        strict_types: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.max_body = max_body
        # 404 (the profile was not there) or 204 (treat as done): see README of the sandbox.
        self.delete_missing_status = delete_missing_status
        self.faults = Faults()
        self._init_access(
            client_id=client_id,
            client_secret=client_secret,
            token_lifetime=token_lifetime,
            token_limit_per_minute=token_limit_per_minute,
            account_rate=account_rate,
            profile_rate=profile_rate,
        )
        self._init_catalog(definitions)
        self._init_profiles(strict_types)
        self._init_consents()
        self._init_write_log(max_write_log)
        # what happened
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (method, route template, status)
        self.rate_limited: Counter[str] = Counter()  # account | profile | token
        self.faults_injected: Counter[str] = Counter()  # "500", "latency", "outage", ...

    def count_request(self, method: str, route: str, status: int) -> None:
        self.requests[(method, route, status)] += 1

    def request_count(
        self, method: str | None = None, route: str | None = None, status: int | None = None
    ) -> int:
        """Requests seen, filtered by method, route template (e.g. `/oauth/token`) and status."""
        return sum(
            n
            for (m, r, s), n in self.requests.items()
            if (method is None or m == method)
            and (route is None or r == route)
            and (status is None or s == status)
        )

    def consent_1_requests(self) -> int:
        """How many requests came to a Consent 1.0 route (all refused)."""
        return sum(n for (_, r, _), n in self.requests.items() if r in CONSENT_1_ROUTES)

    def reset_state(self) -> None:
        """Forget profiles, consents, suppressions, tokens, counters and the write log.

        Definitions and configuration stay (keyspaces' manage_subscriptions flags included).
        """
        self._reset_access()
        self._reset_profiles()
        self._reset_consents()
        self._reset_write_log()
        self.requests.clear()
        self.rate_limited.clear()
        self.faults_injected.clear()

    def summary(self) -> dict[str, Any]:
        return {
            "profiles": len(self.profiles),
            "profiles_with_consents": sum(1 for states in self._consents.values() if states),
            "suppressions": len(self._suppressions),
            "writes": self._write_seq,
            "requests": sum(self.requests.values()),
            "rate_limited": dict(self.rate_limited),
            "faults_injected": dict(self.faults_injected),
            "limits": self.limits_json(),
        }


def default_account(**options: Any) -> Account:
    """The account `shopsync sandbox` serves: mappings/demo.toml's definitions and credentials.

    Keyword options go to `Account` (limits, token lifetime, clock, ...).
    """
    return Account(default_definitions(), **options)
