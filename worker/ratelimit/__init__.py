"""Rate limits shared by every process of the pool, enforced in Redis (GCRA, reservation style).

Each bucket is one Redis string: its theoretical arrival time (TAT) in microseconds of Redis
server time. One Lua script per acquire reads the server clock (`TIME`, safe under Redis 7's
effects replication), reserves the caller's slot by moving the TAT forward, and answers how long
the caller must wait for that slot. The caller sleeps that long, then sends. So:

- many processes draw from one budget, and process clocks never matter;
- waiters are served in the order their acquire reached Redis (a reservation, not a race:
  no polling, no thundering herd, nobody starves);
- a bucket admits `burst` requests at once, then `rate_per_s` steadily; at any moment its level
  (requests in flight or reserved that have not leaked yet) is `(TAT - now) * rate`.

A request whose wait would exceed `max_wait_s`, or what is left of its job's budget
(`worker.budget`), reserves nothing and raises `WaitTooLongError`: the job should give its slot
back to the queue rather than hold a worker for minutes, or be cut off by its timeout.

The APIs' own view is fed back three ways. `raise_level` and `hold` move only the TAT, so they
act on new acquires (APSIS 429s hold the profile or address bucket). `delay` moves the whole
schedule: for `shiftable` buckets (Shopify's) waiters re-read a per-bucket shift after their
sleep, so reservations already handed out wait too; Shopify's call-limit header (its bucket fuller
than ours: another client of the same app and store) and its 429s use it, at most once per
congestion period (a guard key), since every answer in flight reports the same congestion.

Concurrency is limited too, per process (`concurrency()` gives one asyncio.Semaphore per name),
so a slow API cannot pile up open requests; with N processes the pool holds at most N * size.
Optionally `lease()` caps the whole pool as well (a Redis sorted set of expiring leases).

The package: `buckets` (the `Bucket` shape and the two APIs' buckets), `scripts` (the Lua),
`limiter` (`RateLimiter`), `state` (levels for the status page), `permit` (a client's right to
send one request). This module exposes their public names.
"""

from worker.ratelimit.buckets import (
    APSIS_TOKEN_REQUESTS_PER_MIN,
    Bucket,
    apsis_account_bucket,
    apsis_address_bucket,
    apsis_profile_bucket,
    apsis_token_bucket,
    shopify_bucket,
)
from worker.ratelimit.limiter import RateLimiter, WaitTooLongError
from worker.ratelimit.permit import permit
from worker.ratelimit.state import BucketState, limiter_state, state_key

__all__ = [
    "APSIS_TOKEN_REQUESTS_PER_MIN",
    "Bucket",
    "BucketState",
    "RateLimiter",
    "WaitTooLongError",
    "apsis_account_bucket",
    "apsis_address_bucket",
    "apsis_profile_bucket",
    "apsis_token_bucket",
    "limiter_state",
    "permit",
    "shopify_bucket",
    "state_key",
]
