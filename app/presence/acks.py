"""Group commit for 202 answers: single fixes arriving together are queued together.

A single-fix request answered 202 costs little besides its statement: one INSERT and its
commit's WAL flush (no BEGIN/COMMIT round trips: the statement is its own transaction unless
the request had already begun one). Requests that arrive while this process is storing others
wait (their connection goes back to the pool), and the next one to run stores all of them with
one statement and one commit (`service.enqueue_ping_batches`), one request per subject per group.
The leader commits before anyone is answered, so a 202 still means stored; a group that fails
is not its followers' failure (each then runs alone). The same leader-based shape as
`groups.py`, with one slot per process.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.presence import evaluator, service
from app.presence.errors import BackgroundLocationOff
from app.presence.service import AckResult, BatchRequest


class _Turn(enum.Enum):
    LEAD = "lead"
    ALONE = "alone"


@dataclass
class _Waiting:
    request: BatchRequest
    future: asyncio.Future[AckResult | BackgroundLocationOff | _Turn] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class AckGroups:
    """Per process: one group of 202 requests is stored at a time; the others wait to join."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_requests = settings.ping_group_max_requests
        self._busy = False
        self._waiting: deque[_Waiting] = deque()

    async def enqueue(
        self,
        session: AsyncSession | None,
        request: BatchRequest,
        *,
        sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> AckResult:
        """Store one request's fixes in the queue, committed, possibly with others'.

        `session`: the request's own; or None and `sessions`, to open one only if this request
        leads a group or runs alone (a request that joins a group never touches the database:
        the HTTP fast path, app/presence/fastpath.py).
        """
        if session is None:
            if sessions is None:
                raise ValueError("a session or a sessionmaker is needed")
            return await self._enqueue_with(sessions, request)
        if not self._busy:
            self._busy = True
            return await self._lead(session, _Waiting(request))
        me = _Waiting(request)
        if session.in_transaction():  # give the connection back while waiting
            await session.commit()
        self._waiting.append(me)
        turn = await self._wait(me)
        if turn is _Turn.LEAD:
            return await self._lead(session, me)
        if turn is _Turn.ALONE:
            return await self._alone(session, request)
        if isinstance(turn, BackgroundLocationOff):
            raise turn
        return turn

    async def _enqueue_with(
        self, sessions: async_sessionmaker[AsyncSession], request: BatchRequest
    ) -> AckResult:
        if not self._busy:
            self._busy = True
            async with sessions() as session:
                return await self._lead(session, _Waiting(request))
        me = _Waiting(request)
        self._waiting.append(me)
        turn = await self._wait(me)
        if turn is _Turn.LEAD:
            async with sessions() as session:
                return await self._lead(session, me)
        if turn is _Turn.ALONE:
            async with sessions() as session:
                return await self._alone(session, request)
        if isinstance(turn, BackgroundLocationOff):
            raise turn
        return turn

    async def _wait(self, me: _Waiting) -> AckResult | BackgroundLocationOff | _Turn:
        try:
            return await me.future
        except asyncio.CancelledError:
            if me.future.done() and not me.future.cancelled() and me.future.result() is _Turn.LEAD:
                self._busy = False
                self._promote()
            raise

    def _take(self, leader: _Waiting) -> list[_Waiting]:
        group = [leader]
        seen = {leader.request.subject.id}
        kept: deque[_Waiting] = deque()
        while self._waiting:
            w = self._waiting.popleft()
            if w.future.done():
                continue
            sid = w.request.subject.id
            if sid in seen or len(group) >= self.max_requests:
                kept.append(w)  # a subject's later request stays behind its earlier one
                seen.add(sid)
                continue
            group.append(w)
            seen.add(sid)
        self._waiting = kept
        return group

    async def _lead(self, session: AsyncSession, me: _Waiting) -> AckResult:
        group = self._take(me)
        followers = group[1:]
        try:
            try:
                # one statement, committed as it completes when the session has not begun a
                # transaction (the fast path's, or a route whose token came from memory)
                outcomes = await service.enqueue_ping_batches(
                    session, self.settings, [w.request for w in group], autocommit=True
                )
                await session.commit()
            except Exception:
                await session.rollback()
                if not followers:
                    raise
                for w in followers:
                    _answer(w, _Turn.ALONE)
                return await self._alone(session, me.request)
            if any(isinstance(o, AckResult) and o.accepted for o in outcomes):
                evaluator.nudge()
            for w, outcome in zip(followers, outcomes[1:], strict=True):
                _answer(w, outcome)
            mine = outcomes[0]
            if isinstance(mine, BackgroundLocationOff):
                raise mine
            return mine
        finally:
            for w in followers:
                _answer(w, _Turn.ALONE)
            self._busy = False
            self._promote()

    def _promote(self) -> None:
        while self._waiting and not self._busy:
            w = self._waiting.popleft()
            if w.future.done():
                continue
            self._busy = True
            w.future.set_result(_Turn.LEAD)

    async def _alone(self, session: AsyncSession, request: BatchRequest) -> AckResult:
        r = request
        ack = await service.enqueue_ping_batch(
            session,
            self.settings,
            r.subject,
            r.pings,
            check_background_location=r.check_background_location,
        )
        await session.commit()
        if ack.accepted:
            evaluator.nudge()
        return ack


def _answer(w: _Waiting, outcome: AckResult | BackgroundLocationOff | _Turn) -> None:
    if not w.future.done():
        w.future.set_result(outcome)
