"""The garbage collector of an API process, tuned for a large, long-lived heap.

An API process holds ~200,000 objects it keeps for its lifetime (modules, FastAPI's routes and
models, SQLAlchemy's mappers, pydantic's validators). With CPython's default thresholds
(700, 10, 10) the collector traverses them again and again: in the bench profile of single
pings the young and middle collections and a full collection every few seconds (~170 ms each on
the shared machine) took 18 % of an API worker's CPU, and each full collection stalled every
request in flight (docs/benchmarks.md). `settle_heap` runs once startup is done: it collects,
then freezes what is left (those objects are never traversed again: they are not garbage), and
collects the young generation every 10,000 allocations instead of 700. Reference counting
still frees almost everything at once; only reference cycles wait a little longer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Collect, freeze the surviving startup objects, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
