"""A field worker's shift rules held in memory, forgotten in every API process by NOTIFY.

Every fix a field worker sends passes the shift gate (`service.tracking_gate`), which read their
shift window (`notification_preferences`) and their ad-hoc shifts and pauses (`staff_periods`):
two statements and ~2.9 ms of CPU per single-fix ping. These rows change a few times a day per
worker. Triggers on both tables (migration 0039) send `staff:<worker id>` on the device tokens'
channel (`hereabouts_device_tokens`) at commit, to every API process; the token cache
(`app.accounts.tokens.DeviceTokenCache`) already listens there and forwards every notification
to its followers, this cache among them.

What is cached are the rules — the shift window and the periods — never a decision: the gate
still judges each fix at its own time, so a window that opens or closes, or an ad-hoc shift
reaching its `ends_by`, takes effect without any notification. The guarantees are the token
cache's: answers only while its listener's heartbeat is fresh (otherwise the database is asked,
as before); an entry is dropped once the notification of a change arrives (milliseconds after
the commit; the process that made the change drops it itself right after its commit); and a
lookup racing a change cannot put the old rules back (a generation bumped by every
notification about a worker, and by every loss of the listener).

An entry holds the periods still open or ended since `since` (a day before it was loaded): a
fix older than that asks the database.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.accounts.tokens import DeviceTokenCache
from app.rules.windows import Prefs

PREFIX = "staff:"  # payload of migration 0039's triggers: "staff:<staff_users.id>"
# how far back an entry's periods reach when it is loaded
HORIZON = timedelta(hours=24)


@dataclass(frozen=True)
class PeriodRule:
    """The parts of a `StaffPeriod` the gate reads (a plain copy, no session attached)."""

    kind: str
    started_at: datetime
    ends_by: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True)
class Rules:
    prefs: Prefs
    periods: tuple[PeriodRule, ...]
    since: datetime  # every period ended at or after this is in `periods`


class ShiftRulesCache:
    """Worker id -> their shift rules, while the token listener is healthy."""

    def __init__(self, tokens: DeviceTokenCache, max_entries: int = 50_000) -> None:
        self._tokens = tokens
        self.max_entries = max_entries
        self._entries: OrderedDict[uuid.UUID, Rules] = OrderedDict()
        self._generation = 0
        tokens.follow(self.on_notify)

    def get(self, staff_id: uuid.UUID, since: datetime) -> Rules | None:
        """The worker's rules if they cover fixes from `since` on; None: ask the database."""
        if not self._tokens.live:
            return None
        rules = self._entries.get(staff_id)
        if rules is None or since < rules.since:
            return None
        return rules

    @property
    def generation(self) -> int:
        """Read before a database lookup and hand to `put` with its answer."""
        return self._generation

    def put(self, staff_id: uuid.UUID, rules: Rules, generation: int) -> None:
        if not self._tokens.live or generation != self._generation:
            return  # a change may have been notified while the database was asked
        self._entries[staff_id] = rules
        self._entries.move_to_end(staff_id)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)  # the oldest entry

    def forget(self, staff_id: uuid.UUID | None = None) -> None:
        """Forget one worker's rules (None: everyone's)."""
        self._generation += 1
        if staff_id is None:
            self._entries.clear()
        else:
            self._entries.pop(staff_id, None)

    def on_notify(self, payload: str | None) -> None:
        """A notification on the tokens' channel: ours (`staff:<id>`), a token's or key's hash
        (not ours: ignored), or None (the listener was lost or restarted: forget everything)."""
        if payload is None:
            self.forget()
        elif payload.startswith(PREFIX):
            try:
                self.forget(uuid.UUID(payload[len(PREFIX) :]))
            except ValueError:
                self.forget()
