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
CONCURRENT = (
    "receiver-kill",
    "worker-kill",
    "redis-restart",
    "redis-down",
    "apsis-errors",
    "apsis-outage",
    "token-expiry",
    "shopify-429",
    "poison",
    "receiver-fuzz",
    "admin-and-hmac",
    "pipeline-burst",
    "scale-out",
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
    assert set(registry.NAMES) == {*CONCURRENT, *ALONE, "receiver-load", "log-scan"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ALONE)
async def test_heavy_scenarios_short(reliability_run: RunContext, name: str) -> None:
    result = await registry.run_one(name, reliability_run)
    assert result.passed, explain([result])


async def test_receiver_load_short(reliability_run: RunContext) -> None:
    result = await registry.SCENARIOS["receiver-load"](reliability_run)
    assert result.passed, explain([result])


async def test_fault_and_input_scenarios_short(reliability_run: RunContext) -> None:
    slots = asyncio.Semaphore(SIDE_BY_SIDE)

    async def one(name: str) -> Result:
        async with slots:
            return await registry.run_one(name, reliability_run)

    results = await asyncio.gather(*(one(name) for name in CONCURRENT))
    assert all(r.passed for r in results), explain(list(results))


async def test_log_scan_of_the_whole_run(reliability_run: RunContext) -> None:
    result = await registry.SCENARIOS["log-scan"](reliability_run)
    assert result.passed, explain([result])
