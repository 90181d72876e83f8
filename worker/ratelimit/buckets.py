"""The buckets: what one shared budget is (`Bucket`: name, steady rate, burst) and which
buckets the two APIs get and how they are named (Shopify per store; APSIS per account, per
profile or consent address, and for token requests). Names become Redis keys, which is why
consent addresses are hashed into theirs."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from mappings.installation import ApsisAccount, Limits, Shop

MICROS = 1_000_000  # microseconds per second: buckets are kept in Redis server microseconds


@dataclass(frozen=True, slots=True)
class Bucket:
    """One shared budget. `kind` labels metrics; `listed` buckets appear in `state()`."""

    name: str
    rate_per_s: float
    burst: float
    kind: str = ""
    listed: bool = True
    shiftable: bool = False  # waiters honour `delay()` of reservations already handed out

    @property
    def interval_us(self) -> int:
        return max(1, round(MICROS / self.rate_per_s))


# --- the buckets of the two APIs -------------------------------------------------------------
#
# Shopify's REST limit is a leaky bucket (40 deep, 2/s leak by default): ours is the same shape,
# scaled by `safety`. APSIS documents requests per second (the sandbox enforces it as a sliding
# one-second window): no burst there, so the margin (100 - 95 per second) is left to absorb
# timing jitter between our clock and the server's (a process or the server running late bunches
# requests up); with a burst of 5 the very first second after a cold start already overflowed.


def shopify_bucket(shop: Shop) -> Bucket:
    limits = shop.limits
    return Bucket(
        f"shopify:{shop.domain}",
        limits.shopify_leak_per_s * limits.safety,
        max(1.0, math.floor(limits.shopify_bucket_size * limits.safety)),
        kind="shopify",
        shiftable=True,  # the call-limit header and 429s delay reservations already handed out
    )


def apsis_account_bucket(account: ApsisAccount, limits: Limits) -> Bucket:
    return Bucket(
        f"apsis:{account.client_id}", limits.apsis_requests_per_s * limits.safety, 1.0, kind="apsis"
    )


def apsis_profile_bucket(account: ApsisAccount, limits: Limits, keyspace: str, profile_key: str) -> Bucket:
    """A profile key's budget, shaped for how a profile is written: a few requests back to back
    (a new customer's attribute PATCH and a consent per topic, an order's event beside them),
    seldom a long stream (a customer's queued updates merge, worker/coalesce.py).

    The reference allows "consecutive operations using the same profile key - up to 10 requests
    per second" (https://developer.apsis.com/reference/limits); we read it as a count per second
    (the sandbox: a sliding one-second window). A GCRA of rate r and burst b admits at most
    b + ceil(r) - 1 in any window shorter than a second, so the budget less the safety margin (9
    of 10) is split: `apsis_profile_burst` (default 4) back to back, the rest as the pace (6 a
    second). With a burst of 1 at 9.5 a second each request after a profile's first waited 105
    ms: a new customer's attributes reached APSIS 105-210 ms after its webhook (`python -m
    reliability pipeline-burst`, docs/RELIABILITY.md). Should APSIS space a key's requests
    strictly instead, `apsis_profile_burst = 1` in `[shop.limits]` is that shape."""
    per_window = max(1, math.floor(limits.apsis_profile_requests_per_s * limits.safety))
    burst = max(1, min(limits.apsis_profile_burst, per_window))
    return Bucket(
        f"apsis-profile:{account.client_id}:{keyspace}:{profile_key}",
        per_window - burst + 1,
        burst,
        kind="apsis-profile",
        listed=False,  # one per customer: too many to list
    )


def apsis_address_bucket(account: ApsisAccount, limits: Limits, channel: str, address: str) -> Bucket:
    """The per-subject limit applies to a consent address like to a profile key. The address is
    hashed: bucket names are Redis keys, and keys must not hold personal data."""
    digest = hashlib.sha256(address.strip().lower().encode()).hexdigest()[:20]
    return apsis_profile_bucket(account, limits, channel, f"address-{digest}")


APSIS_TOKEN_REQUESTS_PER_MIN = 10


def apsis_token_bucket(account: ApsisAccount, limits: Limits) -> Bucket:
    """10 token requests per minute: a burst of 2 (a revoked token is replaced at once even just
    after a refresh) and 7 per minute after it, so no 60 s window ever sees more than 9."""
    return Bucket(f"apsis-token:{account.client_id}", 7 / 60, 2.0, kind="apsis-token")
