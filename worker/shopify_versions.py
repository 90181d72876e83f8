"""Shopify API versions and their support window (pure).

Shopify releases a stable version at the start of each quarter (`YYYY-01`, `-04`, `-07`, `-10`)
and supports each for at least 12 months; a call to a version out of support falls forward to
the oldest supported one (https://shopify.dev/docs/api/usage/versioning). `version_warning`
says when an installation's version is past that window (or close to it) and names the newest
stable version to move to.
"""

from __future__ import annotations

import re
from datetime import date

_VERSION = re.compile(r"^(\d{4})-(01|04|07|10)$")
WARN_DAYS = 90  # warn this long before support ends


def parse_version(version: str) -> date | None:
    """`2026-10` -> its release date (2026-10-01); None for `unstable` or anything else."""
    match = _VERSION.match(version.strip())
    return date(int(match[1]), int(match[2]), 1) if match else None


def supported_until(version: str) -> date | None:
    """The first day a stable version is no longer guaranteed (12 months after its release)."""
    released = parse_version(version)
    return None if released is None else released.replace(year=released.year + 1)


def newest_stable(today: date) -> str:
    """The newest stable version released by `today`."""
    month = ((today.month - 1) // 3) * 3 + 1
    return f"{today.year}-{month:02d}"


def version_warning(version: str, today: date, *, what: str = "api_version") -> str | None:
    """A warning line when `version` is out of support by `today` (or within `WARN_DAYS` of
    it), naming the version to move to; None while it is well supported."""
    until = supported_until(version)
    target = newest_stable(today)
    if until is None:
        return (
            None
            if version == "unstable"
            else f"{what} {version!r} is not a Shopify API version: use {target}"
        )
    if until <= today:
        return (
            f"{what} {version} is past Shopify's support window (ended {until.isoformat()}; Shopify"
            f" answers with the oldest supported version instead): move to {target}"
        )
    if (until - today).days <= WARN_DAYS:
        return f"{what} {version} leaves Shopify's support window on {until.isoformat()}: move to {target}"
    return None


BULK_CONCURRENT_FROM = "2026-01"  # https://shopify.dev/docs/api/usage/bulk-operations/queries


def max_bulk_operations(version: str) -> int:
    """Bulk query operations Shopify runs at once per app and shop on `version`: up to five from
    2026-01 (and `unstable`), one before."""
    return 5 if version >= BULK_CONCURRENT_FROM else 1
