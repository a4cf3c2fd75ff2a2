"""Ingest keys resolved in memory, revoked in every API process by the device tokens' channel.

OwnTracks and Traccar Client send one fix per request, each with its ingest key, and resolving
the key was a database round trip of every such request. Keys never change in place: a key stops
being valid when its row goes (revoked, or its device or field worker removed). A trigger on
`ingest_keys` (migration 0035) sends the key's hash on `hereabouts_device_tokens` at commit,
the channel every API process already listens on for device tokens
(`app.accounts.tokens.DeviceTokenCache`); that cache forwards each notification here.

So this cache has the same guarantees: it answers only while that listener is live (its own
heartbeat came back lately), a revoked key is refused everywhere once its notification arrives
(milliseconds after the commit), and a lookup racing a revocation cannot put the old answer back
(a generation bumped by every notification).
"""

from __future__ import annotations

from collections import OrderedDict

from app.accounts.tokens import DeviceTokenCache
from app.presence.service import Subject


class IngestKeyCache:
    """Key hash -> the subject its fixes are about, while the token listener is healthy."""

    def __init__(self, tokens: DeviceTokenCache, max_entries: int = 50_000) -> None:
        self._tokens = tokens
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Subject] = OrderedDict()
        self._generation = 0
        tokens.follow(self.forget)

    def get(self, key_hash: str) -> Subject | None:
        """The cached subject, or None: ask the database (then `put` what it answered)."""
        if not self._tokens.live:
            return None
        return self._entries.get(key_hash)

    @property
    def generation(self) -> int:
        """Read before a database lookup and hand to `put` with its answer."""
        return self._generation

    def put(self, key_hash: str, subject: Subject, generation: int) -> None:
        if not self._tokens.live or generation != self._generation:
            return  # a revocation may have arrived while the database was asked
        self._entries[key_hash] = subject
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)  # the oldest entry

    def forget(self, key_hash: str | None = None) -> None:
        """Forget one key (None: all of them)."""
        self._generation += 1
        if key_hash:
            self._entries.pop(key_hash, None)
        else:
            self._entries.clear()
