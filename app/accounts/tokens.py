"""Device tokens resolved in memory, each replica told of a revoked one through LISTEN/NOTIFY.

Every request from a resident's device presents its token, and resolving it was a database
round trip of its own (plus the session's checkout, BEGIN and COMMIT) before the request could
do anything: for a single-ping request that joins a group, most of its database work. Tokens
never change in place; a device's token stops being valid only when the device row goes
(erasure, an organisation removed, retention). A trigger on `devices` (migration 0020) sends the
old token's hash on `hereabouts_device_tokens` when a row is deleted or its token or
organisation changes, at commit, to every process listening.

The cache answers only while this process is listening and its own heartbeat came back within
the last `2 × heartbeat_s` (1 s by default): otherwise every lookup goes to the database, as
before. The heartbeat is a notification the listener sends itself on the same channel, so it
proves the whole path works — not only that the connection is up. Through a pooler that does
not keep LISTEN (PgBouncer in transaction mode), or any other way notifications stop arriving,
it does not come back and the cache stops answering. A revoked token is therefore refused
everywhere once its notification arrives (milliseconds after the commit), and never later
than the heartbeat limit even if notifications stop arriving silently. A lookup racing a
revocation cannot put the old answer back: every notification bumps a generation, and a
database answer is only kept when no notification arrived while it was being looked up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

import asyncpg

from app.core.listen import listen_forever

CHANNEL = "hereabouts_device_tokens"
BEAT_PREFIX = "beat:"  # token hashes are hex, never this

Identity = tuple[uuid.UUID, uuid.UUID]  # (device id, organisation id)


class DeviceTokenCache:
    """Token hash -> (device id, organisation id), for as long as the listener is healthy."""

    def __init__(self, max_entries: int = 50_000, heartbeat_s: float = 1.0) -> None:
        self.max_entries = max_entries
        self.heartbeat_s = heartbeat_s
        self._entries: OrderedDict[str, Identity] = OrderedDict()
        self._by_device: dict[uuid.UUID, str] = {}
        self._generation = 0
        self._beat = -1e9  # monotonic time our last heartbeat notification came back
        self._listening = False
        self._expected_beat = ""  # the payload of the heartbeat in flight
        # other caches told by the same channel (ingest keys, shift rules): called with the
        # payload, or None
        self._followers: list[Callable[[str | None], None]] = []

    @property
    def live(self) -> bool:
        return self._listening and time.monotonic() - self._beat < 2 * self.heartbeat_s

    def get(self, token_hash: str) -> Identity | None:
        """The cached identity, or None: ask the database (then `put` what it answered)."""
        if not self.live:
            return None
        return self._entries.get(token_hash)

    @property
    def generation(self) -> int:
        """Read before a database lookup and hand to `put` with its answer."""
        return self._generation

    def put(self, token_hash: str, identity: Identity, generation: int) -> None:
        if not self.live or generation != self._generation:
            return  # a revocation may have arrived while the database was asked
        self._entries[token_hash] = identity
        self._by_device[identity[0]] = token_hash
        if len(self._entries) > self.max_entries:
            _, (device_id, _org) = self._entries.popitem(last=False)  # the oldest entry
            self._by_device.pop(device_id, None)

    def follow(self, forget: Callable[[str | None], None]) -> None:
        """Also call `forget(hash)` (None: everything) on every invalidation: a cache of other
        credentials revoked on the same channel, answering only while `live` is true."""
        self._followers.append(forget)

    def invalidate(self, token_hash: str | None = None) -> None:
        """Forget one token (None or '': all of them)."""
        self._generation += 1
        if token_hash:
            identity = self._entries.pop(token_hash, None)
            if identity is not None:
                self._by_device.pop(identity[0], None)
        else:
            self._entries.clear()
            self._by_device.clear()
        for forget in self._followers:
            forget(token_hash or None)

    def invalidate_device(self, device_id: uuid.UUID) -> None:
        """Forget a device's token now, in this process (the erasure's request; the others are
        told by the notification its commit sends)."""
        token_hash = self._by_device.get(device_id)
        if token_hash is None:
            self._generation += 1  # not cached: still, a lookup in flight must not keep it
        else:
            self.invalidate(token_hash)

    def _stop_listening(self) -> None:
        self._listening = False
        self.invalidate()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(BEAT_PREFIX):  # a heartbeat: ours, or another process's
            if payload == self._expected_beat:
                self._beat = time.monotonic()
            return
        self.invalidate(payload)

    async def run(self, dsn: str) -> None:
        """Listen (reconnecting with backoff) until cancelled. The cache answers meanwhile."""
        await listen_forever(
            lambda: dsn,
            CHANNEL,
            self._on_notify,
            heartbeat=self._heartbeat,
            every_s=self.heartbeat_s,
            on_up=self._start_listening,
            on_down=self._stop_listening,
            name="device tokens",
        )

    def _start_listening(self, _conn: object) -> None:
        self.invalidate()  # whatever was revoked while not listening
        self._listening = True

    async def _heartbeat(self, conn: asyncpg.Connection) -> None:
        """Send ourselves the next heartbeat; `_on_notify` marks it heard when it comes back."""
        self._expected_beat = f"{BEAT_PREFIX}{uuid.uuid4().hex}"
        await asyncio.wait_for(
            conn.execute("SELECT pg_notify($1, $2)", CHANNEL, self._expected_beat),
            timeout=self.heartbeat_s,
        )
