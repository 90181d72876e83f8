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
    return Bucket(
        f"apsis-profile:{account.client_id}:{keyspace}:{profile_key}",
        limits.apsis_profile_requests_per_s * limits.safety,
        1.0,
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
