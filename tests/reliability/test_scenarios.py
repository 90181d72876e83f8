"""The short version of every reliability scenario (`python -m reliability --short` runs the same).

The fault scenarios each run their own pipeline (private Redis, sandboxes, receiver and worker
processes), so they run side by side to keep `make test` short; the receiver load test runs
alone; the log scan runs last and reads every log the others produced. Timing goals are
reported, not asserted, here (`make reliability` asserts them)."""

from __future__ import annotations

import asyncio

import pytest

from reliability.report import Result
from reliability.scenarios import registry
from reliability.stack import RunContext

SIDE_BY_SIDE = 5  # pipelines at once on a 2-core machine (each: Redis, receiver, 2 workers)
# A representative set runs side by side in `make test`: a process killed, Redis restarted, APSIS
# failing, tokens expiring, Shopify throttling, poison input, and the security checks.
CONCURRENT = (
    "worker-kill",
    "redis-restart",
    "apsis-errors",
    "token-expiry",
    "shopify-429",
    "poison",
    "admin-and-hmac",
)
# The rest run side by side under the slow marker (`make test-all`; `make reliability` runs all):
# their faults have fast tests of their own too (receiver answers 503 with Redis down, an APSIS
# outage in tests/e2e/test_realtime_failures.py, the receiver's fuzz tests).
CONCURRENT_SLOW = (
    "receiver-kill",
    "redis-down",
    "apsis-outage",
    "receiver-fuzz",
    "pipeline-burst",
    "scale-out",
    "shop-apsis-down",
)


def explain(results: list[Result]) -> str:
    lines = []
    for r in results:
        if not r.passed:
            lines.append(f"{r.scenario}: lost {r.lost}, duplicated {r.duplicated}")
            lines += [f"  ! {p}" for p in r.problems[:8]]
    return "\n".join(lines)


# Four worker processes of their own: too heavy to run beside the others on two cores; it runs
# alone under `make test-all` and in `make reliability`.
ALONE = ("token-rotation",)


def test_every_scenario_is_run_here() -> None:
    assert set(registry.NAMES) == {*CONCURRENT, *CONCURRENT_SLOW, *ALONE, "receiver-load", "log-scan"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ALONE)
async def test_heavy_scenarios_short(reliability_run: RunContext, name: str) -> None:
    result = await registry.run_one(name, reliability_run)
    assert result.passed, explain([result])


async def test_receiver_load_short(reliability_run: RunContext) -> None:
    result = await registry.SCENARIOS["receiver-load"](reliability_run)
    assert result.passed, explain([result])


async def _side_by_side(run: RunContext, names: tuple[str, ...]) -> None:
    slots = asyncio.Semaphore(SIDE_BY_SIDE)

    async def one(name: str) -> Result:
        async with slots:
            return await registry.run_one(name, run)

    results = await asyncio.gather(*(one(name) for name in names))
    assert all(r.passed for r in results), explain(list(results))


async def test_fault_and_input_scenarios_short(reliability_run: RunContext) -> None:
    await _side_by_side(reliability_run, CONCURRENT)


@pytest.mark.slow
async def test_more_fault_and_input_scenarios_short(reliability_run: RunContext) -> None:
    await _side_by_side(reliability_run, CONCURRENT_SLOW)


async def test_log_scan_of_the_whole_run(reliability_run: RunContext) -> None:
    result = await registry.SCENARIOS["log-scan"](reliability_run)
    assert result.passed, explain([result])
