"""Let the event loop breathe during long stretches of Python.

An evaluated set of hundreds of subjects, and its hooks (rules, decisions, outbox), are tens
of milliseconds of Python with little to wait for. An embedded evaluator shares its process's
event loop with the requests (the 202 acknowledgments), which would wait for each stretch to
end. Loops over many subjects or events call `breathe()` once per item: it yields to the loop
(`asyncio.sleep(0)`: whatever is ready runs, new requests included) once `SLICE_S` has passed
since the last time it did, and otherwise costs a clock read.
"""

from __future__ import annotations

import asyncio
import time

# the longest stretch a loop that breathes keeps the event loop to itself (about 0.2 ms of
# loop work per yield: under 2 % at this slice)
SLICE_S = 0.002

_last = time.perf_counter()


async def breathe() -> None:
    """Yield to the event loop if this process's loops have not for `SLICE_S`."""
    global _last
    now = time.perf_counter()
    if now - _last >= SLICE_S:
        await asyncio.sleep(0)
        _last = time.perf_counter()
