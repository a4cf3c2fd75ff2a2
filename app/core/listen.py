"""LISTEN on a channel over a connection of its own, reconnecting for as long as it runs.

Used by the delivery workers (woken by `hereabouts_outbox`) and by the API processes' device
token cache (`hereabouts_device_tokens`). The connection is outside the SQLAlchemy pool: a
pooled connection would lose its LISTEN when handed to another request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)


def listen_dsn(engine: AsyncEngine) -> str:
    """A plain asyncpg DSN for a LISTEN connection, from the engine's URL."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_forever(
    dsn: Callable[[], str],
    channel: str,
    on_notify: Callable[[Any, int, str, str], None],
    *,
    heartbeat: Callable[[asyncpg.Connection], Awaitable[None]],
    every_s: float,
    on_up: Callable[[asyncpg.Connection], None],
    on_down: Callable[[], None],
    name: str,
) -> None:
    """Listen until cancelled: connect, `on_up`, then `heartbeat` every `every_s` seconds.

    Any failure (the connection lost, a heartbeat raising or timing out) calls `on_down`, closes
    the connection and connects again after a backoff of 0.5 s doubling up to 30 s.
    """
    delay = 0.5
    while True:
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn(), timeout=5)
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            await conn.add_listener(channel, on_notify)
            on_up(conn)
            delay = 0.5
            while not lost.is_set():
                await heartbeat(conn)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=every_s)
                _raise_if_cancelling()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reconnect on any failure
            logger.warning("%s: LISTEN %s connection lost (%s)", name, channel, exc)
        finally:
            on_down()
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
        _raise_if_cancelling()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


def _raise_if_cancelling() -> None:
    """Python 3.11's `asyncio.wait_for` can lose a cancellation that arrives just as the awaited
    future completes (fixed in 3.12): this loop then listened on after its owner stopped it, and
    the owner's shutdown waited for ever. A pending cancel request is honoured here instead."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
