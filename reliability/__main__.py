"""`python -m reliability [SCENARIO ...] [--short]` (`make reliability`): run the scenarios, print
the table, write `bench/results/reliability-<time>.json`. Exit 1 when any scenario fails."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
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
    results = asyncio.run(run_all(run, names, lambda done: write(done, command, args.short, path)))
    print(table(results))
    print(f"logs: {log_dir}\nresult: {path}")
    return 0 if all(r.passed for r in results) else 1


async def run_all(
    run: RunContext, names: list[str], save: Callable[[list[Result]], object] = lambda _: None
) -> list[Result]:
    """Each scenario in turn; `save` gets the results so far after each (an interrupted run
    keeps what it measured)."""
    results: list[Result] = []
    for name in names:
        print(f"== {name} ...", flush=True)
        result = await registry.run_one(name, run)
        status = "pass" if result.passed else "FAIL"
        print(f"   {status} in {result.seconds:.0f} s {result.figures}", flush=True)
        for line in result.problems[:10]:
            print(f"   ! {line}", flush=True)
        for line in result.notes:
            print(f"   - {line}", flush=True)
        results.append(result)
        save(results)
    return results


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
