"""Retries inside one job run: exponential backoff with full jitter, bounded in tries and time.

Only transient errors are retried. A `Retry-After` from the API wins over the computed backoff.
When the budget (attempts or total seconds) is spent, the last transient error surfaces to the
caller; the job turns it into arq `Retry` so the queue, not a sleeping coroutine, holds the wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from core.logging import get_logger
from worker import budget, metrics
from worker.errors import ApiError, is_transient

T = TypeVar("T")
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    budget_s: float = 30.0  # total time the retries of one call may take, waits included

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)] (attempt counts from 0)."""
        cap = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        return (rng or random).uniform(0, cap)


NO_RETRY = RetryPolicy(max_attempts=1)


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    api: str = "",
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `call` until it succeeds, fails permanently, or the policy's budget is spent."""
    started = clock()
    attempt = 0
    while True:
        try:
            return await call()
        except ApiError as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            if attempt >= policy.max_attempts:
                raise
            delay = policy.backoff(attempt - 1)
            if exc.retry_after is not None:
                # Honour the server's wait; a little jitter keeps processes from returning together.
                delay = exc.retry_after + random.uniform(0, min(0.25, policy.base_delay_s))
            if clock() - started + delay > policy.budget_s or budget.cap_wait(delay) < delay:
                raise  # the policy's budget, or the job's (worker/budget.py), is spent
            metrics.retried(api or exc.api, _reason(exc))
            log.info(
                "api_retry",
                api=exc.api,
                route=exc.route,
                status=exc.status,
                attempt=attempt,
                delay_s=round(delay, 3),
            )
            await sleep(delay)


def _reason(exc: ApiError) -> str:
    return str(exc.status) if exc.status is not None else "connection"
