"""`python -m reliability [SCENARIO ...] [--short]` (`make reliability`): run the scenarios, print
the table, write `bench/results/reliability-<time>.json`. Exit 1 when any scenario fails."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from reliability.report import Result, results_path, table, write
from reliability.scenarios import registry
from reliability.stack import RunContext


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument("scenarios", nargs="*", help=f"default: all of {', '.join(registry.NAMES)}")
    parser.add_argument("--short", action="store_true", help="the short versions (as make test runs)")
    parser.add_argument("--logs", type=Path, help="keep every process's log here")
    args = parser.parse_args(argv)
    names = args.scenarios or list(registry.NAMES)
    unknown = [n for n in names if n not in registry.NAMES]
    if unknown:
        print(f"unknown scenario(s) {', '.join(unknown)}; available: {', '.join(registry.NAMES)}")
        return 2
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="reliability-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    run = RunContext(log_dir=log_dir, short=args.short)
    command = (
        "python -m reliability"
        + (" --short" if args.short else "")
        + "".join(f" {n}" for n in args.scenarios)
    )
    # SIGTERM ends the run like Ctrl-C: the scenarios' context managers stop their processes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    path = results_path()
    started = time.monotonic()

    def save(done: list[Result]) -> None:
        write(done, command, args.short, path, wall_s=time.monotonic() - started)

    results = asyncio.run(run_all(run, names, save))
    print(table(results, wall_s=time.monotonic() - started))
    print(f"logs: {log_dir}\nresult: {path}")
    return 0 if all(r.passed for r in results) else 1


async def run_all(
    run: RunContext, names: list[str], save: Callable[[list[Result]], object] = lambda _: None
) -> list[Result]:
    """The scenarios in order; consecutive side-by-side ones (`registry.SIDE_BY_SIDE`) run
    `registry.LANES` at a time. `save` gets the results so far after each one ends (an
    interrupted run keeps what it measured); the results come back in the order of `names`."""
    done: dict[str, Result] = {}
    lanes = asyncio.Semaphore(registry.LANES)

    async def one(name: str) -> None:
        async with lanes:
            print(f"== {name} ...", flush=True)
            result = await registry.run_one(name, run)
        report(result)
        done[name] = result
        save([done[n] for n in names if n in done])

    group: list[str] = []
    for name in names:
        if name in registry.SIDE_BY_SIDE:
            group.append(name)
            continue
        if group:
            await asyncio.gather(*(one(n) for n in group))
            group = []
        await one(name)
    if group:
        await asyncio.gather(*(one(n) for n in group))
    return [done[n] for n in names]


def report(result: Result) -> None:
    status = "pass" if result.passed else "FAIL"
    print(f"   {result.scenario}: {status} in {result.seconds:.0f} s {result.figures}", flush=True)
    for line in result.problems[:10]:
        print(f"   ! {line}", flush=True)
    for line in result.notes:
        print(f"   - {line}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
