"""Keeping Python's cyclic garbage collector from stalling a worker's event loop.

A full collection (generation 2) walks every tracked object and holds the event loop meanwhile.
In a worker running a full sync beside webhooks, a batch's customers live for seconds, survive
the young collections and pile into the old generation, so full collections came every few
seconds, each 55-86 ms (measured: 20 shops at 20 webhooks/s beside a full sync, 85,000-98,000
tracked objects, `gc.callbacks` timing), and the webhooks that came meanwhile waited: the others'
p99 tail beside a full sync.

Two measures, both common for long-running Python servers:
- `gc.freeze()` once the process has started: the ~50,000 objects of its modules, clients and
  settings, which live as long as the process, move to a permanent generation that collections
  skip;
- a higher first threshold: the worker's garbage is almost all freed by reference counting (JSON
  dicts and lists), so collecting every 700 allocations mostly walks live objects; every
  `YOUNG_THRESHOLD` makes young collections, and with them old ones, that many times rarer.
  A young collection then takes longer (12-30 ms, every few seconds), but the same benchmark saw
  no full collection while the full sync ran (docs/PERFORMANCE.md).
A frozen object is never collected: what startup made and a reload later drops (a replaced
installations object) stays in memory, a few kilobytes a reload.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def tune() -> None:
    """At process start: collect young objects less often (the older thresholds stay)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def freeze_startup_objects() -> None:
    """Once started: collect what startup left, then exempt the survivors from every collection."""
    gc.collect()
    gc.freeze()
