"""Group commit for ping requests: batches arriving together are evaluated and stored together.

A single-ping request alone costs a transaction of its own: BEGIN, the read, the write, the
rules' statements and COMMIT — round trips whose CPU (both sides of the loopback socket) is
most of the request. When requests from different devices arrive while earlier ones are being
evaluated, they wait, and the next request to run takes all of them as one group
(`service.ingest_ping_batches`): one transaction and the same two statements for the whole
group, each batch still evaluated exactly as if it were alone.

Leader-based: the request that finds a free slot leads — it runs the group on its own session
and commits before anyone is answered, so a 2xx always means stored. Followers give their
connection back to the pool while they wait. Under light load every request leads at once
(nothing waits for a timer); under heavy load groups grow by themselves. A failed group never
fails its followers: each then runs alone, so one bad batch only fails its own request. A group
that meets a deadlock or a serialization failure (two API processes storing one subject's
batches at once, a distributed deadlock on Citus) is rolled back and run again from its start,
a few times (`app.core.db.commit_retrying`), before it counts as failed.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections import deque
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import commit_retrying
from app.core.metrics import PING_GROUP_SIZE
from app.presence import service
from app.presence.errors import BackgroundLocationOff
from app.presence.service import BatchRequest, BatchResult


class _Turn(enum.Enum):
    LEAD = "lead"  # run a group (this one and whoever waits) on your own session
    ALONE = "alone"  # the group failed: run your batch alone on your own session


@dataclass
class _Waiting:
    request: BatchRequest
    future: asyncio.Future[BatchResult | BackgroundLocationOff | _Turn] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def size(self) -> int:
        return len(self.request.pings)


class PingGroups:
    """Per process: at most `slots` groups run at once; the others' requests wait to join one."""

    def __init__(self, settings: Settings, on_events: service.EventHook | None = None) -> None:
        self.settings = settings
        self.on_events = on_events  # the rules (app factory); runs in each group's transaction
        self.slots = settings.ping_group_slots
        self.max_requests = settings.ping_group_max_requests
        self.max_pings = settings.ping_group_max_pings
        self._running = 0
        self._waiting: deque[_Waiting] = deque()
        self._busy: set[uuid.UUID] = set()  # subjects in a running group

    async def ingest(self, session: AsyncSession, request: BatchRequest) -> BatchResult:
        """Evaluate and store one request's batch, committed, possibly with others'.

        `session` is the request's own; it is committed here when this request leads (or runs
        alone), and only used for that. Raises what the batch alone would raise.
        """
        sid = request.subject.id
        if (
            self._running < self.slots
            and sid not in self._busy
            and not any(w.request.subject.id == sid for w in self._waiting)
        ):
            self._running += 1
            return await self._lead(session, _Waiting(request))
        me = _Waiting(request)
        if session.in_transaction():  # give the connection back while waiting (auth used it)
            await session.commit()
        self._waiting.append(me)
        try:
            turn = await me.future
        except asyncio.CancelledError:
            if me.future.done() and not me.future.cancelled() and me.future.result() is _Turn.LEAD:
                self._running -= 1  # handed a slot, then cancelled before using it
                self._promote()
            raise
        if turn is _Turn.LEAD:
            return await self._lead(session, me)
        if turn is _Turn.ALONE:
            return await self._alone(session, request)
        if isinstance(turn, BackgroundLocationOff):
            raise turn
        return turn

    def _take(self, leader: _Waiting) -> list[_Waiting]:
        """The leader plus the waiting requests that fit, oldest first, one per subject."""
        group = [leader]
        seen = {leader.request.subject.id}
        pings = leader.size
        kept: deque[_Waiting] = deque()
        while self._waiting:
            w = self._waiting.popleft()
            if w.future.done():  # its request was cancelled (client gone): drop it
                continue
            sid = w.request.subject.id
            if (
                sid in seen
                or sid in self._busy
                or len(group) >= self.max_requests
                or pings + w.size > self.max_pings
            ):
                kept.append(w)  # a subject's later requests stay behind its earlier ones
                seen.add(sid)
                continue
            group.append(w)
            seen.add(sid)
            pings += w.size
        self._waiting = kept
        return group

    async def _lead(self, session: AsyncSession, me: _Waiting) -> BatchResult:
        group = self._take(me)
        subjects = {w.request.subject.id for w in group}
        self._busy |= subjects
        followers = group[1:]
        try:
            try:
                requests = [w.request for w in group]
                outcomes = await commit_retrying(
                    session,
                    lambda: service.ingest_ping_batches(
                        session, self.settings, requests, on_events=self.on_events
                    ),
                    what="ping group",
                )
            except Exception:
                await session.rollback()
                if not followers:
                    raise
                for w in followers:
                    _answer(w, _Turn.ALONE)
                return await self._alone(session, me.request)
            PING_GROUP_SIZE.observe(len(group))
            for w, outcome in zip(followers, outcomes[1:], strict=True):
                _answer(w, outcome)
            mine = outcomes[0]
            if isinstance(mine, BackgroundLocationOff):
                raise mine
            return mine
        finally:
            for w in followers:  # cancelled half-way: nobody is left waiting for an answer
                _answer(w, _Turn.ALONE)
            self._busy -= subjects
            self._running -= 1
            self._promote()

    def _promote(self) -> None:
        """Hand free slots to the oldest waiting requests whose subject is not busy."""
        kept: deque[_Waiting] = deque()
        while self._waiting and self._running < self.slots:
            w = self._waiting.popleft()
            if w.request.subject.id in self._busy or w.future.done():
                if not w.future.done():
                    kept.append(w)
                continue
            self._running += 1
            w.future.set_result(_Turn.LEAD)
        kept.extend(self._waiting)
        self._waiting = kept

    async def _alone(self, session: AsyncSession, request: BatchRequest) -> BatchResult:
        r = request
        return await commit_retrying(
            session,
            lambda: service.ingest_ping_batch(
                session,
                self.settings,
                r.subject,
                r.pings,
                check_background_location=r.check_background_location,
                on_events=self.on_events,
            ),
            what="ping group",
        )


def _answer(w: _Waiting, outcome: BatchResult | BackgroundLocationOff | _Turn) -> None:
    if not w.future.done():
        w.future.set_result(outcome)
