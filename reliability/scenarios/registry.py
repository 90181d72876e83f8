"""Scenario names in the order `python -m reliability` runs them (the log scan comes last: it
reads every log the run produced)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from reliability.report import Result
from reliability.scenarios import faults, fuzz, load, security, shops, tokens
from reliability.stack import RunContext

Scenario = Callable[[RunContext], Awaitable[Result]]

SCENARIOS: dict[str, Scenario] = {
    "receiver-load": load.receiver_load,
    "pipeline-burst": load.pipeline_burst,
    "scale-out": load.scale_out,
    # The longest first: side by side (below), the short ones fill in beside them.
    "apsis-outage": faults.apsis_outage,
    "apsis-errors": faults.apsis_errors,
    "worker-kill": faults.worker_kill,
    "shopify-429": faults.shopify_429,
    "redis-down": faults.redis_down,
    "token-expiry": faults.token_expiry,
    "redis-restart": faults.redis_restart,
    "receiver-kill": faults.receiver_kill,
    "poison": faults.poison,
    "token-rotation": tokens.token_rotation,
    # Six shops, one's APSIS down: its timing goal (the others' p99) makes it run alone.
    "shop-apsis-down": shops.shop_apsis_down,
    "receiver-fuzz": fuzz.receiver_fuzz,
    "admin-and-hmac": security.admin_and_hmac,
    "log-scan": security.log_scan,
}
NAMES = tuple(SCENARIOS)
# The fault scenarios mostly wait (a fault held for minutes, retries backing off, at 10 changes/s)
# and assert no timing: they run side by side, `LANES` at a time, each on its own pipeline. The
# load scenarios (timing goals), the fuzz (CPU-bound) and the log scan (last) run alone.
SIDE_BY_SIDE = frozenset(
    {
        "apsis-outage",
        "apsis-errors",
        "worker-kill",
        "shopify-429",
        "redis-down",
        "token-expiry",
        "redis-restart",
        "receiver-kill",
        "poison",
        "admin-and-hmac",
    }
)
LANES = 2


async def run_one(name: str, run: RunContext) -> Result:
    """A scenario's result; a scenario that crashes is a failed result, not the end of a run."""
    started = time.monotonic()
    try:
        result = await SCENARIOS[name](run)
    except Exception as exc:
        result = Result(name)
        result.fail(f"scenario crashed: {type(exc).__name__}: {exc}"[:2000])
    result.seconds = round(time.monotonic() - started, 1)
    return result
