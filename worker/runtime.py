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
from typing import Any

import aiohttp
import structlog
from arq import Retry
from redis.exceptions import RedisError

from core.shopify_auth import NeedsApprovalError, TokenUnavailableError
from worker import budget
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


def needs_approval(exc: BaseException) -> NeedsApprovalError | None:
    """The `NeedsApprovalError` behind `exc` (itself, or its cause or context), if any."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, NeedsApprovalError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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
    with structlog.contextvars.bound_contextvars(
        job_id=job_id, function=function, job_try=job_try, **(bind or {})
    ):
        try:
            # The waits inside see the budget and end with a transient error before it is spent
            # (worker/budget.py); the timeout only cuts what no wait accounts for.
            with budget.deadline(timeout_s):
                async with asyncio.timeout(timeout_s):
                    result = await body(app, *args)
        except Retry:
            raise
        except Exception as exc:
            approval = needs_approval(exc)
            if approval is not None:
                held = HeldJob(
                    job_id, function, list(args), queue, approval.shop, approval.reason, time.time()
                )
                await hold(app.redis, app.keys, held)
                app.metrics.job_finished(function, "held", time.monotonic() - started)
                log.warning("job_held", shop=approval.shop, reason=approval.reason)
                return {"held": True, "shop": approval.shop}
            error = f"{type(exc).__name__}: {exc}"
            transient = is_transient(exc)
            final = not transient or job_try >= MAX_TRIES
            await record_failure(
                app.redis, app.keys, job_id=job_id, function=function, error=error, tries=job_try, final=final
            )
            app.metrics.job_finished(
                function, "dead_letter" if final else "retry", time.monotonic() - started
            )
            if not final:
                delay = backoff_s(job_try)
                log.warning("job_retry", error=error, retry_in_s=round(delay, 1))
                raise Retry(defer=delay) from exc
            await bury(
                app.redis,
                app.keys,
                DeadLetter(
                    job_id=job_id,
                    function=function,
                    args=list(args),
                    kwargs={},
                    queue=queue,
                    tries=job_try,
                    error_type=type(exc).__name__,
                    error=error[:2000],
                    failed_at=time.time(),
                ),
            )
            log.error("job_dead_letter", error=error, transient=transient, exc_info=not transient)
            return {"dead_letter": True, "error": error}
        app.metrics.job_finished(function, "ok", time.monotonic() - started)
        return result
