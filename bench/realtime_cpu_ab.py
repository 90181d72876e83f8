"""The worker's CPU per webhook of two source trees, side by side: `bench_realtime` run in each
tree in turn (A, B, A, B, ...), so both sides see the same machine drift; medians and the ratio.

    python -m shopsync.devredis -- .venv/bin/python -m bench.realtime_cpu_ab /tmp/old-tree [--pairs 3]

The first tree is "before" (a `git worktree add /tmp/old-tree <rev>`), the second "after" (this
checkout unless given). Each run is `bench_realtime` at 50 webhooks/s for 30 s in a subprocess
whose working directory is the tree, so its receiver and worker run that tree's code. Writes
`bench/results/realtime-cpu-ab.json`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("worker_cpu_ms_per_webhook", "receiver_cpu_ms_per_webhook", "p50_ms", "p99_ms", "lost")
RUN = (
    "import asyncio, orjson, bench.bench_realtime as b; "
    "print(orjson.dumps(asyncio.run(b._run(rate=50.0, seconds=30.0))).decode())"
)


def one(tree: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", RUN], cwd=tree, capture_output=True, text=True, check=True, timeout=600
    )
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    out = {k: result[k] for k in KEYS}
    # Present in results of trees from 2026-12-07 on: the round trips behind the CPU, and the
    # host's steal in that run (a noisy neighbour slows one side of a pair).
    out["redis_commands_per_webhook"] = (result.get("redis_commands_per_webhook") or {}).get("total")
    out["machine_steal_share"] = result.get("machine_steal_share")
    return out


def main(argv: list[str]) -> int:
    pairs = 3
    if "--pairs" in argv:
        at = argv.index("--pairs")
        pairs = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    if not argv:
        print("usage: python -m bench.realtime_cpu_ab BEFORE_TREE [AFTER_TREE] [--pairs N]")
        return 2
    before, after = Path(argv[0]), Path(argv[1]) if len(argv) > 1 else ROOT
    runs: list[dict[str, Any]] = []
    for n in range(1, pairs + 1):
        a, b = one(before), one(after)
        ratio = b["worker_cpu_ms_per_webhook"] / a["worker_cpu_ms_per_webhook"]
        runs.append({"pair": n, "before": a, "after": b, "ratio": round(ratio, 3)})
        print(
            f"pair {n}: worker CPU {a['worker_cpu_ms_per_webhook']} -> {b['worker_cpu_ms_per_webhook']}"
            f" ms/webhook ({ratio:.2f}x); Redis commands {a['redis_commands_per_webhook']} ->"
            f" {b['redis_commands_per_webhook']}; steal {a['machine_steal_share']}, {b['machine_steal_share']}",
            flush=True,
        )
    summary = {
        "before": str(before),
        "after": str(after),
        "pairs": runs,
        "median_before_ms": statistics.median(r["before"]["worker_cpu_ms_per_webhook"] for r in runs),
        "median_after_ms": statistics.median(r["after"]["worker_cpu_ms_per_webhook"] for r in runs),
        "median_ratio": statistics.median(r["ratio"] for r in runs),
    }
    out = ROOT / "bench" / "results" / "realtime-cpu-ab.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    print(
        f"median: {summary['median_before_ms']} -> {summary['median_after_ms']} ms/webhook,"
        f" ratio {summary['median_ratio']:.2f} ({out})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
