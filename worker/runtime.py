"""How every job runs: log context, a time budget, and the failure policy.

arq re-runs a job only when it raises `Retry`; any other exception fails it for good, and after
too many tries arq drops it without running it. So each job body runs inside `run_job`, which
turns failures into exactly one of:
- transient (API 5xx/429/timeouts, connection errors, a busy customer lock): `Retry` with
  exponential backoff and jitter, until `MAX_TRIES`, then a dead letter;
- permanent (a 4xx from an API, a payload the mapping cannot handle, a bug): a dead letter at
  once, with the job's arguments and the error, for `shopsync dead-letters replay`;
- the shop needs the merchant's approval again (`NeedsApprovalError`, from the Shopify token
  source): held (worker/held.py), neither retried nor dead-lettered, and run again as a new job
  once the shop is connected.
arq's own try limit is set far above ours so it never drops a job behind our back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import aiohttp
import structlog
from arq import Retry
from redis.exceptions import RedisError

from core.shopify_auth import NeedsApprovalError, TokenUnavailableError
from worker import budget, lanes, shop_backoff
from worker.deadletters import DeadLetter, bury, record_failure
from worker.errors import is_transient as api_error_is_transient
from worker.held import HeldJob, hold
from worker.ratelimit import WaitTooLongError

MAX_TRIES = 8
ARQ_MAX_TRIES = 1000
log = structlog.get_logger("worker")


class TransientError(Exception):
    """Worth retrying later (e.g. the customer is locked by another worker)."""


def backoff_s(job_try: int) -> float:
    """5 s, 15 s, 45 s, ... capped at 30 min, with +-25% jitter: about 80 minutes over 8 tries."""
    base = min(5 * 3 ** (job_try - 1), 1800)
    return float(base * random.uniform(0.75, 1.25))


def is_transient(exc: BaseException) -> bool:
    if isinstance(
        exc,
        TransientError
        | WaitTooLongError
        | TimeoutError
        | aiohttp.ClientError
        | RedisError
        | ConnectionError
        | TokenUnavailableError,
    ):
        return True
    return api_error_is_transient(exc)  # the API clients' errors say whether to retry


def _park_reason(app: Any, shop: str | None) -> str | None:
    """Why a job of `shop` must wait instead of running now, if it must (worker/shop_backoff.py)."""
    if shop is None:
        return None
    if app.installations.get(shop) is None:
        return "not in the installations file"
    parked = lanes.parked(shop, time.time())
    return None if parked is None else f"backoff: {parked[1]}"


def _finished(app: Any, shop: str | None, function: str, outcome: str, seconds: float) -> None:
    app.metrics.job_finished(function, outcome, seconds)
    if shop is not None and app.installations.get(shop) is not None:
        # Bounded: only shops of the installations file (jobs of others are parked unrun).
        app.metrics.inc("shopsync_shop_jobs_total", {"shop": shop, "outcome": outcome})


async def _park(app: Any, job: HeldJob) -> None:
    await shop_backoff.park(app.redis, app.keys, job)


E = TypeVar("E", bound=BaseException)


def _cause(exc: BaseException, kind: type[E]) -> E | None:
    """`exc` itself, or its cause or context, when it is a `kind`."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def needs_approval(exc: BaseException) -> NeedsApprovalError | None:
    """The `NeedsApprovalError` behind `exc` (itself, or its cause or context), if any."""
    return _cause(exc, NeedsApprovalError)


JobBody = Callable[..., Awaitable[Any]]
# The running job's try (1 on the first run): what a job body may need to tell a first run
# from arq running it again (after a Retry, or after its worker was killed).
JOB_TRY: ContextVar[int] = ContextVar("job_try", default=1)


async def run_job(
    ctx: dict[str, Any],
    function: str,
    body: JobBody,
    args: tuple[Any, ...],
    *,
    queue: str,
    timeout_s: float,
    bind: dict[str, Any] | None = None,
) -> Any:
    app = ctx["app"]
    job_id: str = ctx.get("job_id", "?")
    job_try: int = ctx.get("job_try", 1)
    started = time.monotonic()
    JOB_TRY.set(job_try)  # each arq job runs in a task of its own, with its own context
    shop = (bind or {}).get("shop")
    shop = str(shop) if shop else None
    lanes.enter(shop, "bulk" if queue == app.keys.fullsync_queue else "realtime")
    job = _Job(app, job_id, function, args, queue, shop, job_try, started)
    with structlog.contextvars.bound_contextvars(
        job_id=job_id, function=function, job_try=job_try, **(bind or {})
    ):
        try:
            parked = _park_reason(app, shop)
            if parked is not None and shop is not None:
                return await job.park(parked)
            try:
                # The waits inside see the budget and end with a transient error before it is
                # spent (worker/budget.py); the timeout only cuts what no wait accounts for.
                with budget.deadline(timeout_s):
                    async with asyncio.timeout(timeout_s):
                        result = await body(app, *args)
            except Retry:
                raise
            except Exception as exc:
                return await job.failed(exc)
        except (RedisError, OSError) as exc:
            # Redis failed this job's own bookkeeping (parking it, counting its failure, burying
            # it): any exception but Retry would make arq fail the job for good, and the
            # delivery would be lost (found by the redis-restart scenario). Run it again later.
            delay = backoff_s(1)
            log.warning(
                "job_bookkeeping_failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 1)
            )
            job.finished("retry")
            raise Retry(defer=delay) from exc
        job.finished("ok")
        return result


class _Job:
    """One run of a job, for what `run_job` does when it does not run to the end."""

    def __init__(
        self,
        app: Any,
        job_id: str,
        function: str,
        args: tuple[Any, ...],
        queue: str,
        shop: str | None,
        job_try: int,
        started: float,
    ) -> None:
        self.app, self.job_id, self.function, self.args = app, job_id, function, args
        self.queue, self.shop, self.job_try, self.started = queue, shop, job_try, started

    def held_job(self, shop: str, reason: str) -> HeldJob:
        return HeldJob(self.job_id, self.function, list(self.args), self.queue, shop, reason, time.time())

    def finished(self, outcome: str) -> None:
        _finished(self.app, self.shop, self.function, outcome, time.monotonic() - self.started)

    async def park(self, reason: str) -> dict[str, Any]:
        """The shop is backing off (or gone): keep the job aside, unrun (worker/shop_backoff.py)."""
        assert self.shop is not None
        await _park(self.app, self.held_job(self.shop, reason))
        self.finished("parked")
        return {"parked": True, "shop": self.shop, "reason": reason}

    async def failed(self, exc: Exception) -> dict[str, Any]:
        """Hold, park, retry (raises `Retry`) or bury the job, by what `exc` says."""
        app = self.app
        approval = needs_approval(exc)
        if approval is not None:
            await hold(app.redis, app.keys, self.held_job(approval.shop, approval.reason))
            self.finished("held")
            log.warning("job_held", shop=approval.shop, reason=approval.reason)
            return {"held": True, "shop": approval.shop}
        backing_off = _cause(exc, lanes.ShopParkedError)
        if backing_off is not None and self.shop is not None and self.queue != app.keys.fullsync_queue:
            return await self.park(f"backoff: {backing_off.reason}")
        error = f"{type(exc).__name__}: {exc}"
        transient = is_transient(exc)
        final = not transient or self.job_try >= MAX_TRIES
        if self.shop is not None:
            await shop_backoff.record_error(
                app.redis,
                app.keys,
                self.shop,
                {"at": time.time(), "job": self.function, "error": error[:300]},
            )
        await record_failure(
            app.redis,
            app.keys,
            job_id=self.job_id,
            function=self.function,
            error=error,
            tries=self.job_try,
            final=final,
        )
        if not final:
            delay = backoff_s(self.job_try)
            self.finished("retry")
            log.warning("job_retry", error=error, retry_in_s=round(delay, 1))
            raise Retry(defer=delay) from exc
        letter = DeadLetter(
            job_id=self.job_id,
            function=self.function,
            args=list(self.args),
            kwargs={},
            queue=self.queue,
            tries=self.job_try,
            error_type=type(exc).__name__,
            error=error[:2000],
            failed_at=time.time(),
        )
        await bury(app.redis, app.keys, letter)
        self.finished("dead_letter")
        log.error("job_dead_letter", error=error, transient=transient, exc_info=not transient)
        return {"dead_letter": True, "error": error}
