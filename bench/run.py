"""`make bench`: run the benchmarks, write JSON under bench/results/, print a short table.

`python -m bench.run [NAME ...] [--quick] [--sizes N[,N...]]`; names are the `bench/bench_<name>.py`
modules; `--sizes` goes to the benchmarks whose `run` takes `sizes` (`import`; `fairness`: shop A's store size).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import time
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent / "results"


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(
        m.name[len("bench_") :] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_")
    )


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    sizes: list[int] | None = None
    if "--sizes" in argv:
        at = argv.index("--sizes")
        if at + 1 >= len(argv):
            print("bench: --sizes needs a value, e.g. --sizes 20000 or --sizes 100000,1000000")
            return 2
        try:
            sizes = [int(s.replace("_", "")) for s in argv[at + 1].split(",") if s]
        except ValueError:
            print(f"bench: --sizes takes whole numbers separated by commas, not {argv[at + 1]!r}")
            return 2
        argv = argv[:at] + argv[at + 2 :]
    names = [a for a in argv if not a.startswith("--")] or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"bench: unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available())}")
        return 2
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"== {name} ...", flush=True)
        options: dict[str, Any] = {"quick": quick}
        if sizes is not None and "sizes" in inspect.signature(module.run).parameters:
            options["sizes"] = sizes
        result: dict[str, Any] = module.run(**options)
        path = RESULTS / f"{name}-{stamp}.json"
        path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        _table(name, result)
        print(f"   (full result: {path})")
    return 0


def _table(name: str, result: dict[str, Any]) -> None:
    rows = [(k, v) for k, v in result.items() if isinstance(v, int | float | str) and k != "name"]
    width = max((len(k) for k, _ in rows), default=10)
    for key, value in rows:
        print(f"   {key:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
