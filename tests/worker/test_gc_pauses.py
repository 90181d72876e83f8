"""The worker's garbage-collector settings (worker/gc_pauses.py): young collections rarer, the
objects alive after startup out of every collection."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from worker import gc_pauses


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_young_collections_are_rarer_and_the_older_thresholds_stay() -> None:
    _, middle, old = gc.get_threshold()
    gc_pauses.tune()
    assert gc.get_threshold() == (gc_pauses.YOUNG_THRESHOLD, middle, old)


@pytest.mark.usefixtures("restored_gc")
def test_startup_objects_leave_the_collections() -> None:
    kept = [{"startup": n} for n in range(1000)]  # stands for a started process's clients and settings
    gc_pauses.freeze_startup_objects()
    assert gc.get_freeze_count() >= len(kept)
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in tracked for o in kept), "frozen objects are not walked by a collection"
