"""Which APSIS limit a 429 on a profile route hit: the profile key's or the account's.

APSIS answers both with the same 429 and a Retry-After; neither the reference
(https://developer.apsis.com/reference/limits) nor the answer says which limit it was. Holding the
wrong bucket costs either way: an account refusal taken for the profile's leaves the account
sending at full pace into more refusals (measured: 30 in 0.3 s of the fairness benchmark's full
sync, every one on the account by the sandbox's own count), and a profile refusal taken for the
account's stops every write of the account for a second.

The rule: our profile buckets keep each key under its limit, so two *different* profile keys
refused within `WINDOW_S` are the account's limit showing; a key refused alone is its own. The
first refusal of a burst is taken as the profile's (cheap to be wrong about: one key waits)."""

from __future__ import annotations

from worker.ratelimit.buckets import Bucket

WINDOW_S = 1.0  # APSIS counts both limits per second


class RefusalAttribution:
    """One per APSIS client (one account in one process); no I/O, the caller passes the time."""

    __slots__ = ("_last_at", "_last_key")

    def __init__(self) -> None:
        self._last_key: str | None = None
        self._last_at = float("-inf")

    def account_wide(self, profile_key: str, now: float) -> bool:
        """Record a 429 on `profile_key`'s route at `now` (monotonic seconds); True when another
        key was refused within `WINDOW_S`, so the account's limit is the one reached."""
        other = self._last_key is not None and self._last_key != profile_key
        wide = other and now - self._last_at < WINDOW_S
        self._last_key, self._last_at = profile_key, now
        return wide

    def held(self, first: Bucket, account: Bucket, now: float) -> Bucket:
        """The bucket a 429 is held on, given the request's first bucket: the account's when
        that is the first (no profile route) or the refusals point at it; else the profile's."""
        if first is account or self.account_wide(first.name, now):
            return account
        return first
