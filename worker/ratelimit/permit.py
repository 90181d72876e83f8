"""A client's right to send one request (`permit`): this process's concurrency semaphore
and, when the installation caps the whole pool, a pool-wide lease, both bounded by the job's
budget; a permit that cannot be had in time raises `LimiterTimeoutError` before anything
is sent."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Literal

from worker import budget
from worker.errors import LimiterTimeoutError
from worker.ratelimit.limiter import RateLimiter, WaitTooLongError


@contextlib.asynccontextmanager
async def permit(
    limiter: RateLimiter,
    semaphore: asyncio.Semaphore,
    *,
    api: Literal["apsis", "shopify"],
    name: str,
    pool_size: int | None,
    max_wait_s: float | None,
    method: str,
    route: str,
) -> AsyncIterator[None]:
    """A client's right to send one request: this process's semaphore and, when `pool_size`
    is set, a pool-wide lease (a busy pool raises `LimiterTimeoutError`). Inside a job, the wait
    for the semaphore ends with the job's budget too (requests queued behind a slow API)."""
    limit = budget.cap_wait(math.inf)
    try:
        async with asyncio.timeout(None if math.isinf(limit) else limit):
            await semaphore.acquire()
    except TimeoutError:
        raise LimiterTimeoutError(
            api, None, "concurrency", "process permits busy", limit, method=method, route=route
        ) from None
    try:
        if pool_size is None:
            yield
            return
        try:
            lease = limiter.lease(name, pool_size, max_wait_s=max_wait_s)
            await lease.__aenter__()
        except WaitTooLongError as exc:
            raise LimiterTimeoutError(
                api, None, "concurrency", "pool-wide permits busy", exc.wait_s, method=method, route=route
            ) from None
        try:
            yield
        finally:
            await lease.__aexit__(None, None, None)
    finally:
        semaphore.release()
