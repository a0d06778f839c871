"""The one place for persistence: claims, requests and their states, thread memory, feedback.

SQLAlchemy 2 on SQLite (the default, in WAL mode) or PostgreSQL (to scale out); each operation is
one transaction, run where `bot.store.database` says. The schema is Alembic's, migrated when the
store opens. Callers get frozen records, never ORM objects.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    not_,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Result, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.context.models import Fetched
from bot.core.answer import Answer
from bot.core.conversation import ContextItem, Turn
from bot.store.database import Database, connect
from bot.store.tables import (
    Base,
    ChannelLink,
    ChannelSettings,
    Claim,
    ContextCacheEntry,
    Feedback,
    Request,
    RequestTransition,
    Thread,
    ThreadTurn,
    TokenUsage,
)

RequestState = Literal["received", "gathering", "thinking", "answered", "failed"]
RequestKind = Literal["command", "mention", "follow_up", "direct"]
Vote = Literal["up", "down"]
LinkKind = Literal["github", "linear"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_FINAL_STATES = ("answered", "failed")
_MIGRATION_LOCK = 0x6F69  # "oi": application-chosen advisory lock keys
_RATE_LOCK = 0x6F6972  # "oir"
# A request still unfinished this long after it was asked has failed or been resumed long since
# (OI_REQUEST_DEADLINE_SECONDS); the in-flight count looks no further back.
_IN_FLIGHT_WINDOW = timedelta(hours=1)
_CLAIM_BATCH = 500  # claims in one transaction, well within SQLite's bound on parameters
_Row = TypeVar("_Row")


def _table(entity: type[Base]) -> Table:
    return cast(Table, entity.__table__)


# What every question runs, built once and run with its values: building and keying a statement,
# and the ORM's bookkeeping around it, took longer than SQLite takes to run it.
_requests, _threads, _links_table = _table(Request), _table(Thread), _table(ChannelLink)
_SET_REQUEST = update(_requests).where(_requests.c.id == bindparam("request_id"))
_ADD_REQUESTS = insert(_requests)
_ADD_TRANSITIONS = insert(_table(RequestTransition))
_ADD_CACHE_ENTRIES = insert(_table(ContextCacheEntry))
_THREAD = select(_threads).where(
    _threads.c.team_id == bindparam("team_id"),
    _threads.c.channel_id == bindparam("channel_id"),
    _threads.c.thread_ts == bindparam("thread_ts"),
)
_LINKS = (
    select(_links_table.c.kind, _links_table.c.target)
    .where(
        _links_table.c.team_id == bindparam("team_id"),
        _links_table.c.channel_id == bindparam("channel_id"),
    )
    .order_by(_links_table.c.kind, _links_table.c.target)
)


@dataclass(frozen=True)
class Quota:
    """How much one person may ask: questions a minute, and questions being answered at once."""

    per_minute: int
    in_flight: int


class RateLimited(Exception):
    """The author is over their `Quota`: `asked` questions in the last minute, or `in_flight`
    still being answered (`busy`)."""

    def __init__(self, *, asked: int, in_flight: int, busy: bool) -> None:
        super().__init__(f"{asked} questions in the last minute, {in_flight} being answered")
        self.asked = asked
        self.in_flight = in_flight
        self.busy = busy


@dataclass(frozen=True, kw_only=True)
class NewRequest:
    """A question as it arrives; `claim_key` names the Slack delivery (event or message)."""

    claim_key: str
    kind: RequestKind
    team_id: str
    channel_id: str
    user_id: str
    thread_ts: str | None
    persona: str
    question: str
    user_team_id: str | None = None  # the asker's own team, where Slack's payload names it


@dataclass(frozen=True, kw_only=True)
class RequestRecord(NewRequest):
    """A stored request: the question, where it stands, and the message its answer replaces."""

    id: str
    state: RequestState
    error: str | None
    reply_ts: str | None
    continuation_ts: tuple[str, ...]
    attempts: int  # this try's number: crashes blamed on the request, plus one (`Store.acquire`)
    interruptions: int  # processes that died while it only waited


@dataclass(frozen=True)
class _PendingClaim:
    new: NewRequest
    quota: Quota | None
    outcome: asyncio.Future[RequestRecord | None]


@dataclass(frozen=True)
class _Upserts:
    """The dialect's INSERT … ON CONFLICT statements, built once per store."""

    add_thread: Any  # returns the new thread's row, or none when it exists already
    remember_turn: Any  # a resumed request's new answer replaces its old one
    add_tokens: Any  # adds to the workspace's day, in one statement so that replicas never race

    @classmethod
    def build(cls, dialect_insert: Any) -> _Upserts:
        turn, usage = dialect_insert(_table(ThreadTurn)), dialect_insert(_table(TokenUsage))
        return cls(
            add_thread=dialect_insert(_threads).on_conflict_do_nothing().returning(_threads),
            remember_turn=turn.on_conflict_do_update(
                index_elements=["request_id"], set_={"answer_json": turn.excluded.answer_json}
            ),
            add_tokens=usage.on_conflict_do_update(
                index_elements=["team_id", "day"],
                set_={"tokens": usage.table.c.tokens + usage.excluded.tokens},
            ),
        )


@dataclass(frozen=True)
class LinkRecord:
    kind: LinkKind
    target: str


@dataclass(frozen=True)
class ThreadRecord:
    id: int
    team_id: str
    channel_id: str
    thread_ts: str
    persona: str


@dataclass(frozen=True)
class ThreadMemory:
    """A thread and what answering in it starts from."""

    thread: ThreadRecord
    history: list[Turn]
    links: list[LinkRecord]
    cached: dict[str, list[Fetched]]


class Store:
    """The store's operations, each one transaction on the process's `Database`."""

    def __init__(
        self, database: Database, *, owner: str | None = None, lease_seconds: float = 60
    ) -> None:
        self._database = database
        self._insert = sqlite.insert if database.dialect == "sqlite" else postgresql.insert
        self._upserts = _Upserts.build(self._insert)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds
        self._pending_claims: list[_PendingClaim] = []
        self._claim_writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, database_url: str, *, owner: str | None = None, lease_seconds: float = 60
    ) -> Store:
        """Connect and bring the schema up to date (migrations run at start-up).

        `owner` names this process in the leases it holds on requests; a lease not renewed
        within `lease_seconds` lets another process resume the request.
        """
        database = connect(database_url)
        try:
            await database.run(_upgrade_to_head)
        except BaseException:
            await database.close()
            raise
        return cls(database, owner=owner, lease_seconds=lease_seconds)

    async def close(self) -> None:
        if self._claim_writer is not None:
            await self._claim_writer
        await self._database.close()

    async def ping(self) -> bool:
        return await self._database.ping()

    async def claim(self, key: str) -> bool:
        """True for the first claim of `key`, False for every later one (any process)."""

        def work(session: Session) -> None:
            session.add(Claim(key=key, claimed_at=_now()))

        try:
            await self._database.run(work, claims=True)
        except IntegrityError:
            return False
        return True

    async def claim_request(
        self, new: NewRequest, *, quota: Quota | None = None
    ) -> RequestRecord | None:
        """Record the request, leased to this process, or None when another delivery of it was
        claimed already. The lease is how a crashed process's work is found and resumed.

        With `quota`, raises `RateLimited` instead when its author already asked that many
        questions in the last minute or has that many being answered, counted in the same
        transaction as the recording (under a PostgreSQL advisory lock across replicas), so a
        burst is never let through. Claims arriving together are written together: see
        `_write_claims`.
        """
        pending = _PendingClaim(new, quota, asyncio.get_running_loop().create_future())
        self._pending_claims.append(pending)
        if self._claim_writer is None or self._claim_writer.done():
            self._claim_writer = asyncio.create_task(self._write_claims(), name="store-claims")
        return await pending.outcome

    async def _write_claims(self) -> None:
        """Write the waiting claims in one transaction, again while more arrived meanwhile.

        Every ack waits for its claim, and SQLite takes one writer at a time: claimed one by
        one, a burst queued in front of its acks for seconds. Batched, it costs one transaction.
        A failure fails the batch's acks (Slack retries them); nothing is half-written.
        """
        while self._pending_claims:
            batch = self._pending_claims[:_CLAIM_BATCH]
            del self._pending_claims[:_CLAIM_BATCH]
            outcomes: Sequence[RequestRecord | RateLimited | Exception | None]
            try:
                outcomes = await self._database.run(
                    functools.partial(self._claim_batch, batch=batch), claims=True
                )
            except Exception as error:  # the database failed: each waiting ack sees why
                outcomes = [error] * len(batch)
            for pending, outcome in zip(batch, outcomes, strict=True):
                if pending.outcome.done():  # its ack was cancelled; a lease resumes it
                    continue
                if isinstance(outcome, Exception):
                    pending.outcome.set_exception(outcome)
                else:
                    pending.outcome.set_result(outcome)

    def _claim_batch(
        self, session: Session, batch: Sequence[_PendingClaim]
    ) -> list[RequestRecord | RateLimited | None]:
        now = _now()
        taken = set(
            session.scalars(
                select(Claim.key).where(Claim.key.in_([p.new.claim_key for p in batch]))
            )
        )
        asking = self._asking(
            session, {(p.new.team_id, p.new.user_id) for p in batch if p.quota}, now
        )
        outcomes: list[RequestRecord | RateLimited | None] = []
        for pending in batch:
            new, author = pending.new, (pending.new.team_id, pending.new.user_id)
            refused = _over_quota(asking[author], pending.quota)
            if new.claim_key in taken:
                outcomes.append(None)
            elif refused is not None:
                outcomes.append(refused)
            else:
                taken.add(new.claim_key)
                asking[author] = _Asking(asking[author].asked + 1, asking[author].in_flight + 1)
                outcomes.append(_new_record(new))
        records = [o for o in outcomes if isinstance(o, RequestRecord)]
        if not records:
            return outcomes
        inserted = set(
            session.scalars(
                self._insert(Claim)
                .values([{"key": r.claim_key, "claimed_at": now} for r in records])
                .on_conflict_do_nothing()
                .returning(Claim.key)
            )
        )
        # a key missing from `inserted` was claimed by another replica meanwhile
        records = [r for r in records if r.claim_key in inserted]
        outcomes = [
            None if isinstance(o, RequestRecord) and o.claim_key not in inserted else o
            for o in outcomes
        ]
        if records:
            session.execute(_ADD_REQUESTS, [self._request_row(r, now) for r in records])
            session.execute(
                _ADD_TRANSITIONS,
                [
                    {"request_id": r.id, "state": "received", "detail": None, "at": now}
                    for r in records
                ],
            )
        return outcomes

    def _asking(
        self, session: Session, authors: set[tuple[str, str]], now: datetime
    ) -> defaultdict[tuple[str, str], _Asking]:
        """Each author's questions in the last minute, and those still being answered (asked
        within `_IN_FLIGHT_WINDOW`: older ones have failed or been resumed long since). On
        PostgreSQL, replicas count under one lock, held until the batch is written, so that two
        never let the same burst through."""
        asking: defaultdict[tuple[str, str], _Asking] = defaultdict(lambda: _Asking(0, 0))
        if not authors:
            return asking
        if self._database.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _RATE_LOCK})
        recent = case((Request.created_at >= now - timedelta(seconds=60), 1), else_=0)
        unfinished = case((Request.state.not_in(_FINAL_STATES), 1), else_=0)
        rows = session.execute(
            select(Request.team_id, Request.user_id, func.sum(recent), func.sum(unfinished))
            .where(
                tuple_(Request.team_id, Request.user_id).in_(sorted(authors)),
                Request.created_at >= now - _IN_FLIGHT_WINDOW,
            )
            .group_by(Request.team_id, Request.user_id)
        )
        for team_id, user_id, asked, in_flight in rows:
            asking[(team_id, user_id)] = _Asking(int(asked), int(in_flight))
        return asking

    def _request_row(self, record: RequestRecord, now: datetime) -> dict[str, Any]:
        return {
            **asdict(record),
            "continuation_ts": "",
            "at_risk": False,
            "lease_owner": self.owner,
            "lease_expires_at": self._lease_end(now),
            "created_at": now,
            "updated_at": now,
        }

    async def get_request(self, request_id: str) -> RequestRecord | None:
        def work(session: Session) -> RequestRecord | None:
            row = session.get(Request, request_id)
            return _request_record(row) if row else None

        return await self._database.run(work)

    async def transition(
        self,
        request_id: str,
        state: RequestState,
        *,
        detail: str | None = None,
        reply_ts: str | None = None,
    ) -> None:
        """Move a request to `state`; a failure's detail is kept as its error. With `reply_ts`,
        also records the placeholder message the answer will replace."""
        await self._database.run(
            lambda session: _transition(session, request_id, state, detail, reply_ts)
        )

    async def reopen_failed(
        self, request_id: str, *, quota: Quota | None = None
    ) -> RequestRecord | None:
        """Failed → received, leased to this process, atomically: of two clicks on "Try again",
        only one wins. Attempts start again: a person asked for a new try.

        A retry is the question asked again, now: it counts toward its author's `quota` (and
        raises `RateLimited` over it) like a new question, and is dated now for later counts.
        """

        def work(session: Session) -> RequestRecord | None:
            now = _now()
            if quota is not None:
                author = session.execute(
                    select(Request.team_id, Request.user_id).where(Request.id == request_id)
                ).first()
                if author is not None:
                    asking = self._asking(session, {(author[0], author[1])}, now)
                    refused = _over_quota(asking[(author[0], author[1])], quota)
                    if refused is not None:
                        raise refused
            result = session.execute(
                update(Request)
                .where(Request.id == request_id, Request.state == "failed")
                .values(
                    state="received",
                    error=None,
                    attempts=1,
                    interruptions=0,
                    at_risk=False,
                    lease_owner=self.owner,
                    lease_expires_at=self._lease_end(now),
                    created_at=now,
                    updated_at=now,
                )
            )
            if _rowcount(result) != 1:
                return None
            session.add(
                RequestTransition(request_id=request_id, state="received", detail="retry", at=now)
            )
            return _request_record(_one(session.get(Request, request_id)))

        return await self._database.run(work)

    async def acquire(self, request_id: str) -> RequestRecord | None:
        """Take over an unfinished request whose lease is free or expired, counting how its last
        try ended.

        Attempts exist to stop a question that crashes its process, so a try counts only when
        the request can be blamed: its process died (or it was handed back as failed) while it
        was `at_risk`, working on its own content: reading what it refers to (`gathering`), or
        turning the model's reply into messages (`record_answer` until final). A process that
        died while the request only waited (for its turn, a concurrency slot, or the model) adds
        an interruption instead, which the responder bounds far higher; one that handed it back
        at shutdown adds neither. So crashes caused by others never use up a healthy question's
        attempts, and a question that kills its process every time still runs out of them.
        """
        died = Request.lease_owner.is_not(None)  # a handed-back request has no owner

        def work(session: Session) -> RequestRecord | None:
            now = _now()
            result = session.execute(
                update(Request)
                .where(
                    Request.id == request_id,
                    Request.state.not_in(_FINAL_STATES),
                    or_(Request.lease_expires_at.is_(None), Request.lease_expires_at < now),
                )
                .values(
                    lease_owner=self.owner,
                    lease_expires_at=self._lease_end(now),
                    attempts=Request.attempts + case((Request.at_risk, 1), else_=0),
                    interruptions=Request.interruptions
                    + case((and_(died, not_(Request.at_risk)), 1), else_=0),
                    at_risk=False,
                    updated_at=now,
                )
            )
            if _rowcount(result) != 1:
                return None
            return _request_record(_one(session.get(Request, request_id)))

        return await self._database.run(work)

    async def renew(self, request_id: str) -> bool:
        """Extend this process's lease; False when it is no longer ours (or the request is done)."""

        def work(session: Session) -> bool:
            result = session.execute(
                update(Request)
                .where(Request.id == request_id, Request.lease_owner == self.owner)
                .values(lease_expires_at=self._lease_end(_now()))
            )
            return bool(_rowcount(result))

        return await self._database.run(work)

    async def release(self, request_id: str, *, failed: bool = False) -> None:
        """Hand an unfinished request back at once, so another process resumes it: at shutdown
        (no fault of its own), or `failed` (its try broke), which `acquire` counts as an attempt."""
        await self._database.run(
            lambda session: session.execute(
                update(Request)
                .where(Request.id == request_id, Request.lease_owner == self.owner)
                .values(lease_owner=None, lease_expires_at=None, at_risk=failed)
            )
        )

    async def resumable(self, *, limit: int = 50) -> list[str]:
        """Unfinished requests nobody holds: their process died, or handed them back."""

        def work(session: Session) -> list[str]:
            return list(
                session.scalars(
                    select(Request.id)
                    .where(
                        Request.state.not_in(_FINAL_STATES),
                        or_(Request.lease_expires_at.is_(None), Request.lease_expires_at < _now()),
                    )
                    .order_by(Request.created_at)
                    .limit(limit)
                )
            )

        return await self._database.run(work)

    async def reserve_tokens(self, team_id: str, day: str, tokens: int, *, budget: int) -> bool:
        """Count `tokens` against the workspace's day before an LLM call, unless the day's
        count has reached `budget` already: in one statement, so that calls starting together
        (on any replica) each see the others' reservations. `record_answer` settles the
        difference with what the call really used."""
        usage = {"team_id": team_id, "day": day, "tokens": 0}
        reserve = (
            update(TokenUsage)
            .where(
                TokenUsage.team_id == team_id, TokenUsage.day == day, TokenUsage.tokens < budget
            )
            .values(tokens=TokenUsage.tokens + tokens)
        )

        def work(session: Session) -> bool:
            session.execute(self._upserts.add_tokens, usage)
            return _rowcount(session.execute(reserve)) == 1

        return await self._database.run(work)

    async def add_tokens(self, team_id: str, day: str, tokens: int) -> None:
        """Add to (or, negative, give back to) the workspace's count for the day."""
        usage = {"team_id": team_id, "day": day, "tokens": tokens}
        await self._database.run(lambda session: session.execute(self._upserts.add_tokens, usage))

    async def tokens_used(self, team_id: str, day: str) -> int:
        def work(session: Session) -> int:
            row = session.get(TokenUsage, (team_id, day))
            return row.tokens if row else 0

        return await self._database.run(work)

    async def set_continuation_ts(self, request_id: str, continuation_ts: Sequence[str]) -> None:
        """The answer's further messages, so a resumed request updates them instead of reposting."""
        await self._database.run(
            lambda session: session.execute(
                update(Request)
                .where(Request.id == request_id)
                .values(continuation_ts=",".join(continuation_ts), updated_at=_now())
            )
        )

    async def find_thread(
        self, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None:
        def work(session: Session) -> ThreadRecord | None:
            row = session.execute(_THREAD, _thread_key(team_id, channel_id, thread_ts)).first()
            return _thread_record(row) if row else None

        return await self._database.run(work)

    async def open_thread(
        self,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        persona: str,
        *,
        request_id: str | None = None,
    ) -> ThreadMemory:
        """The thread, created with this persona unless it exists already, and what answering
        in it starts from: its answered questions (oldest first), the channel's links, and what
        earlier questions read. A new thread has no history to read.

        With `request_id`, also records that the request's question is the thread's first
        message (a slash command's, just posted), so a resumed request never posts it again.
        """
        key = _thread_key(team_id, channel_id, thread_ts)

        def work(session: Session) -> ThreadMemory:
            # reads first: SQLite's write lock is only taken at the first write, for less time
            row = session.execute(_THREAD, key).first()
            links = _links(session, team_id, channel_id)
            history = _history(session, row.id) if row else []
            cached = _cached_context(session, row.id) if row else {}
            if request_id is not None:
                session.execute(
                    _SET_REQUEST,
                    {"request_id": request_id, "thread_ts": thread_ts, "updated_at": _now()},
                )
            if row is None:
                created = {**key, "persona": persona, "created_at": _now()}
                row = (
                    session.execute(self._upserts.add_thread, created).first()
                    or session.execute(_THREAD, key).first()
                )
            return ThreadMemory(
                thread=_thread_record(_one(row)), history=history, links=links, cached=cached
            )

        return await self._database.run(work)

    async def record_gathered(
        self, request_id: str, thread_id: int, fetched: Mapping[str, Sequence[Fetched]]
    ) -> None:
        """Keep what was read (already redacted) for the thread's follow-ups, and move the
        request on to thinking."""

        def work(session: Session) -> None:
            now = _now()
            rows = [
                {
                    "thread_id": thread_id,
                    "reference": reference,
                    "source": one.item.source,
                    "title": one.item.title,
                    "text": one.item.text,
                    "priority": one.priority,
                    "revision": one.revision,
                    "private": one.private,
                    "fetched_at": now,
                }
                for reference, items in fetched.items()
                for one in items
            ]
            if rows:
                session.execute(_ADD_CACHE_ENTRIES, rows)
            _transition(session, request_id, "thinking")

        await self._database.run(work)

    async def record_answer(
        self, request: RequestRecord, thread_id: int, answer: Answer, *, day: str, tokens: int
    ) -> None:
        """Remember the request's answer in its thread (a resumed request's new answer replaces
        its old one) and add `tokens` to the workspace's day (what the call used beyond what
        was reserved for it; less than none gives back the rest), in one statement each so
        that replicas never race. The request is at risk again until it is answered: its reply
        is being turned into messages."""
        turn = {
            "thread_id": thread_id,
            "request_id": request.id,
            "question": request.question,
            "answer_json": answer.model_dump_json(),
            "created_at": _now(),
        }
        usage = {"team_id": request.team_id, "day": day, "tokens": tokens}

        def work(session: Session) -> None:
            session.execute(self._upserts.remember_turn, turn)
            session.execute(self._upserts.add_tokens, usage)
            session.execute(
                _SET_REQUEST, {"request_id": request.id, "at_risk": True, "updated_at": _now()}
            )

        await self._database.run(work)

    async def record_feedback(self, request_id: str, user_id: str, vote: Vote) -> None:
        await self._database.run(
            lambda session: session.merge(
                Feedback(request_id=request_id, user_id=user_id, vote=vote, updated_at=_now())
            )
        )

    async def feedback(self, request_id: str) -> dict[str, Vote]:
        def work(session: Session) -> dict[str, Vote]:
            rows = session.scalars(select(Feedback).where(Feedback.request_id == request_id))
            return {row.user_id: row.vote for row in rows}  # type: ignore[misc]

        return await self._database.run(work)

    async def set_channel_persona(self, team_id: str, channel_id: str, persona: str) -> None:
        await self._database.run(
            lambda session: session.merge(
                ChannelSettings(
                    team_id=team_id,
                    channel_id=channel_id,
                    default_persona=persona,
                    updated_at=_now(),
                )
            )
        )

    async def channel_persona(self, team_id: str, channel_id: str) -> str | None:
        def work(session: Session) -> str | None:
            row = session.get(ChannelSettings, (team_id, channel_id))
            return row.default_persona if row else None

        return await self._database.run(work)

    async def add_link(
        self, team_id: str, channel_id: str, link: LinkRecord, *, linked_by: str
    ) -> bool:
        """Link a repository or team to a channel; False when it was linked already."""
        row = ChannelLink(
            team_id=team_id,
            channel_id=channel_id,
            kind=link.kind,
            target=link.target,
            linked_by=linked_by,
            created_at=_now(),
        )
        try:
            await self._database.run(lambda session: session.add(row))
        except IntegrityError:
            return False
        return True

    async def remove_link(self, team_id: str, channel_id: str, link: LinkRecord) -> bool:
        def work(session: Session) -> bool:
            result = session.execute(
                delete(ChannelLink).where(
                    ChannelLink.team_id == team_id,
                    ChannelLink.channel_id == channel_id,
                    ChannelLink.kind == link.kind,
                    ChannelLink.target == link.target,
                )
            )
            return bool(_rowcount(result))

        return await self._database.run(work)

    async def links(self, team_id: str, channel_id: str) -> list[LinkRecord]:
        """This channel's links only: a repository linked elsewhere is never read here."""
        return await self._database.run(lambda session: _links(session, team_id, channel_id))

    def _lease_end(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_seconds)


@dataclass(frozen=True)
class _Asking:
    """One author's questions in the last minute, and those still being answered."""

    asked: int
    in_flight: int


def _over_quota(asking: _Asking, quota: Quota | None) -> RateLimited | None:
    if quota is None:
        return None
    if asking.asked >= quota.per_minute or asking.in_flight >= quota.in_flight:
        busy = asking.asked < quota.per_minute
        return RateLimited(asked=asking.asked, in_flight=asking.in_flight, busy=busy)
    return None


def _transition(
    session: Session,
    request_id: str,
    state: RequestState,
    detail: str | None = None,
    reply_ts: str | None = None,
) -> None:
    now = _now()
    # gathering reads what the question refers to: at risk; thinking waits for the model: not
    values: dict[str, Any] = {"state": state, "at_risk": state == "gathering", "updated_at": now}
    if state == "failed":
        values["error"] = detail
    if state in _FINAL_STATES:
        values.update(lease_owner=None, lease_expires_at=None)
    if reply_ts is not None:
        values["reply_ts"] = reply_ts
    session.execute(_SET_REQUEST, {"request_id": request_id, **values})
    session.execute(
        _ADD_TRANSITIONS, {"request_id": request_id, "state": state, "detail": detail, "at": now}
    )


def _thread_key(team_id: str, channel_id: str, thread_ts: str) -> dict[str, str]:
    return {"team_id": team_id, "channel_id": channel_id, "thread_ts": thread_ts}


def _links(session: Session, team_id: str, channel_id: str) -> list[LinkRecord]:
    rows = session.execute(_LINKS, {"team_id": team_id, "channel_id": channel_id})
    return [LinkRecord(kind=row.kind, target=row.target) for row in rows]


def _history(session: Session, thread_id: int) -> list[Turn]:
    rows = session.scalars(
        select(ThreadTurn).where(ThreadTurn.thread_id == thread_id).order_by(ThreadTurn.id)
    )
    return [
        Turn(question=row.question, answer=Answer.model_validate_json(row.answer_json))
        for row in rows
    ]


def _cached_context(session: Session, thread_id: int) -> dict[str, list[Fetched]]:
    """What earlier questions in the thread read, by reference, in the order it was read."""
    rows = session.scalars(
        select(ContextCacheEntry)
        .where(ContextCacheEntry.thread_id == thread_id)
        .order_by(ContextCacheEntry.id)
    )
    cached: dict[str, list[Fetched]] = {}
    for row in rows:
        item = ContextItem(source=row.source, title=row.title, text=row.text)
        fetched = Fetched(
            item=item, priority=row.priority, revision=row.revision, private=row.private
        )
        cached.setdefault(row.reference, []).append(fetched)
    return cached


def _new_record(new: NewRequest) -> RequestRecord:
    return RequestRecord(
        **asdict(new),
        id=uuid.uuid4().hex,
        state="received",
        error=None,
        reply_ts=None,
        continuation_ts=(),
        attempts=1,
        interruptions=0,
    )


def _rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (SQLAlchemy types its cursor result as a plain one)."""
    return cast(CursorResult[Any], result).rowcount


def _upgrade_to_head(session: Session) -> None:
    """Migrate under a lock, so processes starting together migrate one at a time."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    else:  # SQLite: take the write lock now, not at the first write (pysqlite defers it)
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _one(row: _Row | None) -> _Row:
    """The row a statement of this transaction has just written."""
    assert row is not None
    return row


def _now() -> datetime:
    return datetime.now(UTC)


def _request_record(row: Request) -> RequestRecord:
    values = {field.name: getattr(row, field.name) for field in fields(RequestRecord)}
    values["continuation_ts"] = tuple(ts for ts in row.continuation_ts.split(",") if ts)
    return RequestRecord(**values)


def _thread_record(row: Row[Any]) -> ThreadRecord:
    return ThreadRecord(**{field.name: getattr(row, field.name) for field in fields(ThreadRecord)})
