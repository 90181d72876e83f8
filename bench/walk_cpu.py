"""The import walk's CPU per customer, without Redis or HTTP, of one or two source trees side by side.

What an import full sync's walk does for each line of the bulk export before its Redis
transaction (worker/fullsync/imports.py): parse the JSON line, normalise it, route it through the
pure mappings (`mappings.import_rows.route_customer`, which plans it as the per-profile path
would), build its CSV rows and its expected state's JSON. On the fairness benchmark's machine that
work is the walk child's CPU, the CPU the other shops' webhooks share (docs/PERFORMANCE.md).

The lines are a real bulk export of a Shopify sandbox store (`--customers`, default 20,000;
made once and kept in the temporary directory). Each tree runs in its own subprocess (working
directory the tree, so it imports that tree's code), alternating A, B, A, B for `--pairs`, each
pass over every line timed by `time.process_time`; medians per tree and B over A.

    .venv/bin/python -m bench.walk_cpu                      # this tree alone
    .venv/bin/python -m bench.walk_cpu /tmp/old-tree        # /tmp/old-tree (A) against this tree (B)

Writes `bench/results/walk-cpu.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.bench_import import bulk_export_url, shopify_session
from bench.fullsync_procs import _sandbox

ROOT = Path(__file__).resolve().parent.parent
# Runs inside a tree: argv = lines file, passes. Prints {"us_per_customer": [...], "routes": {...}}.
MEASURE = r"""
import sys, time, collections, orjson
from mappings.import_rows import layouts, route_customer
from mappings.installation_parse import parse_installations
from sandbox.installation import installation_document
from worker.sync_update import Update

shop = [*parse_installations(installation_document("http://s", "http://a", "2024-10"), env={}, source="bench").shops.values()][0]
addresses = {s.discriminator: {"email": "1001", "sms": "1004"} for s in shop.sections if s.consents}
files = layouts(shop, addresses)
raw = open(sys.argv[1], "rb").read().splitlines()
times, routes = [], collections.Counter()
for _ in range(int(sys.argv[2])):
    began = time.process_time()
    for line in raw:
        customer = orjson.loads(line)
        snapshot = Update(kind="bulk", payload=customer, received_at=0.0, source="fullsync").normalized()
        routed = route_customer(shop, None, snapshot, addresses, files)
        state = routed.state.to_dict() if routed.rows else None
        for index, row in enumerate(routed.rows):
            row.csv()
            orjson.dumps({"state": state, "count": index == 0})
        routes[routed.route] += 1
    times.append((time.process_time() - began) / len(raw) * 1e6)
print(orjson.dumps({"us_per_customer": times, "routes": routes}).decode())
"""


async def _export(customers: int) -> bytes:
    """The lines of a bulk export of a sandbox store of `customers`."""
    proc, url = _sandbox("sandbox.shopify", ["--customers", str(customers), "--seed", "1"])
    try:
        async with shopify_session() as session:
            async with session.get(await bulk_export_url(session, url)) as response:
                body = await response.read()
        return b"\n".join(line for line in body.splitlines() if line.strip())
    finally:
        proc.kill()
        proc.wait()


def _one(tree: Path, lines: Path, passes: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(lines), str(passes)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", nargs="?", help="a tree to compare this one with (A)")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--passes", type=int, default=2, help="passes over the lines per run (min taken)")
    args = parser.parse_args(argv)
    lines = Path(tempfile.gettempdir()) / f"shopsync-walk-lines-{args.customers}.jsonl"
    if not lines.exists():
        lines.write_bytes(asyncio.run(_export(args.customers)))
    trees = {"after": ROOT} if args.before is None else {"before": Path(args.before), "after": ROOT}
    runs: dict[str, list[float]] = {name: [] for name in trees}
    routes: dict[str, Any] = {}
    for _ in range(args.pairs):
        for name, tree in trees.items():
            result = _one(tree, lines, args.passes)
            runs[name].append(min(result["us_per_customer"]))
            routes[name] = result["routes"]
    out: dict[str, Any] = {
        "customers": args.customers,
        "command": "python -m bench.walk_cpu " + " ".join(argv if argv is not None else sys.argv[1:]),
        "us_per_customer": {name: round(statistics.median(v), 1) for name, v in runs.items()},
        "runs": {name: [round(x, 1) for x in v] for name, v in runs.items()},
        "routes": routes,
    }
    if "before" in runs:
        out["after_over_before"] = round(
            statistics.median(runs["after"]) / statistics.median(runs["before"]), 3
        )
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "walk-cpu.json").write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    print("   tree    | µs per customer (median) | runs")
    for name, v in runs.items():
        print(f"   {name:<7} | {statistics.median(v):24.1f} | {', '.join(f'{x:.1f}' for x in v)}")
    if "after_over_before" in out:
        print(f"   after / before: {out['after_over_before']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
