"""API processes freeze their startup heap, collect young objects less often (app/core/heap.py)."""

from __future__ import annotations

import gc

from app.core.heap import YOUNG_THRESHOLD, settle_heap


def test_settle_heap_freezes_the_startup_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        startup = [object() for _ in range(10)]  # noqa: F841 - alive while the heap settles
        kept: list[list[int]] = [[i] for i in range(1000)]  # tracked by the collector
        settle_heap()
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
        # frozen objects are in no generation the collector traverses
        traversed = {id(o) for o in gc.get_objects()}
        assert not any(id(x) in traversed for x in kept)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
