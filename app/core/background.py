"""Long-running loops an API process runs next to itself (the push worker, the scheduled jobs),
started and stopped by the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

Run = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # runs until the event is set


class InProcess:
    """A long-running loop the API process runs next to itself, stopped by the lifespan."""

    def __init__(self, name: str, run: Run) -> None:
        self._stop = asyncio.Event()
        self._name = name
        self._task = asyncio.create_task(self._guarded(run), name=name)

    async def _guarded(self, run: Run) -> None:
        try:
            await run(self._stop)
        except Exception:
            logger.exception("the in-process %s stopped", self._name)

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to stop; cancel it after `timeout`; give up on it (logged) if it does not
        end within a few seconds more: a stuck loop must never hold the process's shutdown."""
        self._stop.set()
        await asyncio.wait({self._task}, timeout=timeout)
        if self._task.done():
            return
        self._task.cancel()
        await asyncio.wait({self._task}, timeout=5.0)
        if not self._task.done():
            logger.error("the in-process %s did not stop; abandoned", self._name)
