"""The one place for persistence: claims, requests and their states, thread memory, feedback.

SQLAlchemy 2 async on SQLite (the default, in WAL mode) or PostgreSQL (to scale out); the schema
is Alembic's, migrated when the store opens. Callers get frozen records, never ORM objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, delete, event, func, insert, or_, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Result, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.context.models import Fetched
from bot.core.answer import Answer
from bot.core.conversation import ContextItem, Turn
from bot.store.tables import (
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
_DATABASE_TIMEOUT_SECONDS = 30  # connecting, waiting for a pooled connection, one statement
_MIGRATION_LOCK = 0x6F69  # "oi": application-chosen advisory lock keys
_RATE_LOCK = 0x6F6972  # "oir"
_CLAIM_BATCH = 500  # claims in one transaction, well within SQLite's bound on parameters


class RateLimited(Exception):
    """The author asked too many questions in the last minute; `asked` says how many."""

    def __init__(self, asked: int) -> None:
        super().__init__(f"{asked} questions in the last minute")
        self.asked = asked


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


@dataclass(frozen=True, kw_only=True)
class RequestRecord(NewRequest):
    """A stored request: the question, where it stands, and the message its answer replaces."""

    id: str
    state: RequestState
    error: str | None
    reply_ts: str | None
    continuation_ts: tuple[str, ...]
    attempts: int


@dataclass(frozen=True)
class _PendingClaim:
    new: NewRequest
    per_minute: int | None
    outcome: asyncio.Future[RequestRecord | None]


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
    """Async access to the database; one engine (and connection pool) per process.

    Claims have a connection of their own (`claims_engine`): every ack waits for its claim, so
    claims must not queue behind the answers' work for a connection.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        claims_engine: AsyncEngine | None = None,
        owner: str | None = None,
        lease_seconds: float = 60,
    ) -> None:
        self._engine = engine
        self._claims_engine = claims_engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._claim_sessions = async_sessionmaker(claims_engine or engine, expire_on_commit=False)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds
        # SQLite takes one writer at a time. Its busy handler makes the others sleep and poll (up
        # to 100 ms at a time): this process's writers take turns here instead, woken the
        # moment the writer before them is done. PostgreSQL takes concurrent writers itself.
        self._one_writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
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
        engine = _create_engine(database_url)
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to_head)
        claims_engine = _create_engine(database_url, connections=1)
        return cls(engine, claims_engine=claims_engine, owner=owner, lease_seconds=lease_seconds)

    async def close(self) -> None:
        if self._claim_writer is not None:
            await self._claim_writer
        if self._claims_engine is not None:
            await self._claims_engine.dispose()
        await self._engine.dispose()

    @asynccontextmanager
    async def _writing(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed at the end (rolled back on an error).

        The connection comes first, then the writer's turn: waiting for a connection is the
        queue for each engine, so at most one claims batch and one other transaction ever
        wait for a turn, and claims never wait behind a queue of answers.
        """
        async with sessions() as session:
            await session.connection()
            async with self._one_writer or contextlib.nullcontext():
                yield session
                await session.commit()

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # any failure to reach the database means "not ready"
            return False
        return True

    async def claim(self, key: str) -> bool:
        """True for the first claim of `key`, False for every later one (any process)."""
        try:
            async with self._writing(self._claim_sessions) as session:
                session.add(Claim(key=key, claimed_at=_now()))
        except IntegrityError:
            return False
        return True

    async def claim_request(
        self, new: NewRequest, *, per_minute: int | None = None
    ) -> RequestRecord | None:
        """Record the request, leased to this process, or None when another delivery of it was
        claimed already. The lease is how a crashed process's work is found and resumed.

        With `per_minute`, raises `RateLimited` instead when its author already asked that
        many questions in the last minute, counted in the same transaction as the recording
        (under a PostgreSQL advisory lock across replicas), so a burst is never let through.
        Claims arriving together are written together: see `_write_claims`.
        """
        pending = _PendingClaim(new, per_minute, asyncio.get_running_loop().create_future())
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
                outcomes = await self._claim_batch(batch)
            except Exception as error:  # the database failed: each waiting ack sees why
                outcomes = [error] * len(batch)
            for pending, outcome in zip(batch, outcomes, strict=True):
                if pending.outcome.done():  # its ack was cancelled; a lease resumes it
                    continue
                if isinstance(outcome, Exception):
                    pending.outcome.set_exception(outcome)
                else:
                    pending.outcome.set_result(outcome)

    async def _claim_batch(
        self, batch: Sequence[_PendingClaim]
    ) -> list[RequestRecord | RateLimited | None]:
        now = _now()
        async with self._writing(self._claim_sessions) as session:
            taken = set(
                await session.scalars(
                    select(Claim.key).where(Claim.key.in_([p.new.claim_key for p in batch]))
                )
            )
            asked = await self._questions_asked(
                session, {(p.new.team_id, p.new.user_id) for p in batch if p.per_minute}, now
            )
            outcomes: list[RequestRecord | RateLimited | None] = []
            for pending in batch:
                new, author = pending.new, (pending.new.team_id, pending.new.user_id)
                if new.claim_key in taken:
                    outcomes.append(None)
                elif pending.per_minute is not None and asked[author] >= pending.per_minute:
                    outcomes.append(RateLimited(asked[author]))
                else:
                    taken.add(new.claim_key)
                    asked[author] += 1
                    outcomes.append(_new_record(new))
            records = [o for o in outcomes if isinstance(o, RequestRecord)]
            if not records:
                return outcomes
            inserted = set(
                await session.scalars(
                    _dialect_insert(self._engine.dialect.name)(Claim)
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
                await session.execute(insert(Request), [self._request_row(r, now) for r in records])
                await session.execute(
                    insert(RequestTransition),
                    [{"request_id": r.id, "state": "received", "at": now} for r in records],
                )
        return outcomes

    async def _questions_asked(
        self, session: AsyncSession, authors: set[tuple[str, str]], now: datetime
    ) -> defaultdict[tuple[str, str], int]:
        """Each author's questions in the last minute. On PostgreSQL, replicas count under one
        lock, held until the batch is written, so that two never let the same burst through."""
        asked: defaultdict[tuple[str, str], int] = defaultdict(int)
        if not authors:
            return asked
        if self._engine.dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _RATE_LOCK})
        rows = await session.execute(
            select(Request.team_id, Request.user_id, func.count())
            .where(
                tuple_(Request.team_id, Request.user_id).in_(sorted(authors)),
                Request.created_at >= now - timedelta(seconds=60),
            )
            .group_by(Request.team_id, Request.user_id)
        )
        for team_id, user_id, count in rows:
            asked[(team_id, user_id)] = count
        return asked

    def _request_row(self, record: RequestRecord, now: datetime) -> dict[str, Any]:
        return {
            **asdict(record),
            "continuation_ts": "",
            "lease_owner": self.owner,
            "lease_expires_at": self._lease_end(now),
            "created_at": now,
            "updated_at": now,
        }

    async def get_request(self, request_id: str) -> RequestRecord | None:
        async with self._sessions() as session:
            row = await session.get(Request, request_id)
            return _request_record(row) if row else None

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
        async with self._writing(self._sessions) as session:
            await self._transition(session, request_id, state, detail=detail, reply_ts=reply_ts)

    async def _transition(
        self,
        session: AsyncSession,
        request_id: str,
        state: RequestState,
        *,
        detail: str | None = None,
        reply_ts: str | None = None,
    ) -> None:
        now = _now()
        values: dict[str, Any] = {"state": state, "updated_at": now}
        if state == "failed":
            values["error"] = detail
        if state in _FINAL_STATES:
            values.update(lease_owner=None, lease_expires_at=None)
        if reply_ts is not None:
            values["reply_ts"] = reply_ts
        await session.execute(update(Request).where(Request.id == request_id).values(values))
        await session.execute(
            insert(RequestTransition).values(
                request_id=request_id, state=state, detail=detail, at=now
            )
        )

    async def reopen_failed(self, request_id: str) -> RequestRecord | None:
        """Failed → received, leased to this process, atomically: of two clicks on "Try again",
        only one wins. Attempts start again: a person asked for a new try."""
        now = _now()
        async with self._writing(self._sessions) as session:
            result = await session.execute(
                update(Request)
                .where(Request.id == request_id, Request.state == "failed")
                .values(
                    state="received",
                    error=None,
                    attempts=1,
                    lease_owner=self.owner,
                    lease_expires_at=self._lease_end(now),
                    updated_at=now,
                )
            )
            if _rowcount(result) != 1:
                return None
            session.add(
                RequestTransition(request_id=request_id, state="received", detail="retry", at=now)
            )
            row = await session.get(Request, request_id)
            assert row is not None
            return _request_record(row)

    async def acquire(self, request_id: str) -> RequestRecord | None:
        """Take over an unfinished request whose lease is free or expired; counts an attempt."""
        now = _now()
        async with self._writing(self._sessions) as session:
            result = await session.execute(
                update(Request)
                .where(
                    Request.id == request_id,
                    Request.state.not_in(_FINAL_STATES),
                    or_(Request.lease_expires_at.is_(None), Request.lease_expires_at < now),
                )
                .values(
                    lease_owner=self.owner,
                    lease_expires_at=self._lease_end(now),
                    attempts=Request.attempts + 1,
                    updated_at=now,
                )
            )
            if _rowcount(result) != 1:
                return None
            row = await session.get(Request, request_id)
            assert row is not None
            return _request_record(row)

    async def renew(self, request_id: str) -> bool:
        """Extend this process's lease; False when it is no longer ours (or the request is done)."""
        async with self._writing(self._sessions) as session:
            result = await session.execute(
                update(Request)
                .where(Request.id == request_id, Request.lease_owner == self.owner)
                .values(lease_expires_at=self._lease_end(_now()))
            )
            return bool(_rowcount(result))

    async def release(self, request_id: str) -> None:
        """Hand an unfinished request back at once (shutdown), so another process resumes it."""
        async with self._writing(self._sessions) as session:
            await session.execute(
                update(Request)
                .where(Request.id == request_id, Request.lease_owner == self.owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    async def resumable(self, *, limit: int = 50) -> list[str]:
        """Unfinished requests nobody holds: their process died, or handed them back."""
        now = _now()
        async with self._sessions() as session:
            ids = await session.scalars(
                select(Request.id)
                .where(
                    Request.state.not_in(_FINAL_STATES),
                    or_(Request.lease_expires_at.is_(None), Request.lease_expires_at < now),
                )
                .order_by(Request.created_at)
                .limit(limit)
            )
            return list(ids)

    async def tokens_used(self, team_id: str, day: str) -> int:
        async with self._sessions() as session:
            row = await session.get(TokenUsage, (team_id, day))
            return row.tokens if row else 0

    async def set_continuation_ts(self, request_id: str, continuation_ts: Sequence[str]) -> None:
        """The answer's further messages, so a resumed request updates them instead of reposting."""
        async with self._writing(self._sessions) as session:
            await session.execute(
                update(Request)
                .where(Request.id == request_id)
                .values(continuation_ts=",".join(continuation_ts), updated_at=_now())
            )

    async def find_thread(
        self, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(
                select(Thread).where(
                    Thread.team_id == team_id,
                    Thread.channel_id == channel_id,
                    Thread.thread_ts == thread_ts,
                )
            )
            return _thread_record(row) if row else None

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
        where = (
            Thread.team_id == team_id,
            Thread.channel_id == channel_id,
            Thread.thread_ts == thread_ts,
        )
        async with self._writing(self._sessions) as session:
            # reads first: SQLite's write lock is only taken at the first write, for less time
            row = await session.scalar(select(Thread).where(*where))
            links = await self._links(session, team_id, channel_id)
            history = await self._history(session, row.id) if row else []
            cached = await self._cached_context(session, row.id) if row else {}
            if request_id is not None:
                await session.execute(
                    update(Request)
                    .where(Request.id == request_id)
                    .values(thread_ts=thread_ts, updated_at=_now())
                )
            if row is None:
                created = _dialect_insert(self._engine.dialect.name)(Thread).values(
                    team_id=team_id,
                    channel_id=channel_id,
                    thread_ts=thread_ts,
                    persona=persona,
                    created_at=_now(),
                )
                row = await session.scalar(
                    created.on_conflict_do_nothing().returning(Thread)
                ) or await session.scalar(select(Thread).where(*where))
            assert row is not None
            return ThreadMemory(
                thread=_thread_record(row), history=history, links=links, cached=cached
            )

    async def record_gathered(
        self, request_id: str, thread_id: int, fetched: Mapping[str, Sequence[Fetched]]
    ) -> None:
        """Keep what was read (already redacted) for the thread's follow-ups, and move the
        request on to thinking."""
        now = _now()
        async with self._writing(self._sessions) as session:
            rows = [
                {
                    "thread_id": thread_id,
                    "reference": reference,
                    "source": one.item.source,
                    "title": one.item.title,
                    "text": one.item.text,
                    "priority": one.priority,
                    "revision": one.revision,
                    "fetched_at": now,
                }
                for reference, items in fetched.items()
                for one in items
            ]
            if rows:
                await session.execute(insert(ContextCacheEntry), rows)
            await self._transition(session, request_id, "thinking")

    async def record_answer(
        self, request: RequestRecord, thread_id: int, answer: Answer, *, day: str, tokens: int
    ) -> None:
        """Remember the request's answer in its thread (a resumed request's new answer replaces
        its old one) and count its tokens for the workspace's day, in one statement each so
        that replicas never race."""
        dialect_insert = _dialect_insert(self._engine.dialect.name)
        turn = dialect_insert(ThreadTurn).values(
            thread_id=thread_id,
            request_id=request.id,
            question=request.question,
            answer_json=answer.model_dump_json(),
            created_at=_now(),
        )
        turn = turn.on_conflict_do_update(
            index_elements=[ThreadTurn.request_id],
            set_={"answer_json": turn.excluded.answer_json},
        )
        usage = dialect_insert(TokenUsage).values(team_id=request.team_id, day=day, tokens=tokens)
        usage = usage.on_conflict_do_update(
            index_elements=[TokenUsage.team_id, TokenUsage.day],
            set_={"tokens": TokenUsage.tokens + usage.excluded.tokens},
        )
        async with self._writing(self._sessions) as session:
            await session.execute(turn)
            await session.execute(usage)

    async def record_feedback(self, request_id: str, user_id: str, vote: Vote) -> None:
        async with self._writing(self._sessions) as session:
            await session.merge(
                Feedback(request_id=request_id, user_id=user_id, vote=vote, updated_at=_now())
            )

    async def feedback(self, request_id: str) -> dict[str, Vote]:
        async with self._sessions() as session:
            rows = await session.scalars(select(Feedback).where(Feedback.request_id == request_id))
            return {row.user_id: row.vote for row in rows}  # type: ignore[misc]

    async def set_channel_persona(self, team_id: str, channel_id: str, persona: str) -> None:
        async with self._writing(self._sessions) as session:
            await session.merge(
                ChannelSettings(
                    team_id=team_id,
                    channel_id=channel_id,
                    default_persona=persona,
                    updated_at=_now(),
                )
            )

    async def channel_persona(self, team_id: str, channel_id: str) -> str | None:
        async with self._sessions() as session:
            row = await session.get(ChannelSettings, (team_id, channel_id))
            return row.default_persona if row else None

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
            async with self._writing(self._sessions) as session:
                session.add(row)
        except IntegrityError:
            return False
        return True

    async def remove_link(self, team_id: str, channel_id: str, link: LinkRecord) -> bool:
        async with self._writing(self._sessions) as session:
            result = await session.execute(
                delete(ChannelLink).where(
                    ChannelLink.team_id == team_id,
                    ChannelLink.channel_id == channel_id,
                    ChannelLink.kind == link.kind,
                    ChannelLink.target == link.target,
                )
            )
            return bool(_rowcount(result))

    async def links(self, team_id: str, channel_id: str) -> list[LinkRecord]:
        """This channel's links only: a repository linked elsewhere is never read here."""
        async with self._sessions() as session:
            return await self._links(session, team_id, channel_id)

    @staticmethod
    async def _links(session: AsyncSession, team_id: str, channel_id: str) -> list[LinkRecord]:
        rows = await session.scalars(
            select(ChannelLink)
            .where(ChannelLink.team_id == team_id, ChannelLink.channel_id == channel_id)
            .order_by(ChannelLink.kind, ChannelLink.target)
        )
        return [LinkRecord(kind=row.kind, target=row.target) for row in rows]  # type: ignore[arg-type]

    @staticmethod
    async def _history(session: AsyncSession, thread_id: int) -> list[Turn]:
        rows = await session.scalars(
            select(ThreadTurn).where(ThreadTurn.thread_id == thread_id).order_by(ThreadTurn.id)
        )
        return [
            Turn(question=row.question, answer=Answer.model_validate_json(row.answer_json))
            for row in rows
        ]

    @staticmethod
    async def _cached_context(session: AsyncSession, thread_id: int) -> dict[str, list[Fetched]]:
        """What earlier questions in the thread read, by reference, in the order it was read."""
        rows = await session.scalars(
            select(ContextCacheEntry)
            .where(ContextCacheEntry.thread_id == thread_id)
            .order_by(ContextCacheEntry.id)
        )
        cached: dict[str, list[Fetched]] = {}
        for row in rows:
            item = ContextItem(source=row.source, title=row.title, text=row.text)
            fetched = Fetched(item=item, priority=row.priority, revision=row.revision)
            cached.setdefault(row.reference, []).append(fetched)
        return cached

    def _lease_end(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_seconds)


def _new_record(new: NewRequest) -> RequestRecord:
    return RequestRecord(
        **asdict(new),
        id=uuid.uuid4().hex,
        state="received",
        error=None,
        reply_ts=None,
        continuation_ts=(),
        attempts=1,
    )


def _rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (SQLAlchemy types its cursor result as a plain one)."""
    return cast(CursorResult[Any], result).rowcount


def _dialect_insert(dialect: str) -> Any:
    """The INSERT that knows ON CONFLICT: SQLite's or PostgreSQL's."""
    return sqlite.insert if dialect == "sqlite" else postgresql.insert


def _create_engine(database_url: str, *, connections: int | None = None) -> AsyncEngine:
    """An engine and its pool: `connections` at most (SQLAlchemy's default pool without)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        pool = {} if connections is None else {"pool_size": connections, "max_overflow": 0}
        # pre-ping replaces connections a database restart or a network drop killed
        return create_async_engine(
            url,
            **pool,
            pool_pre_ping=True,
            pool_timeout=_DATABASE_TIMEOUT_SECONDS,
            connect_args={
                "timeout": _DATABASE_TIMEOUT_SECONDS,
                "command_timeout": _DATABASE_TIMEOUT_SECONDS,
            },
        )
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # One connection an engine: SQLite writes one transaction at a time anyway, and connections
    # waiting for each other sleep in its busy handler (up to 100 ms at a time) instead of
    # queueing in order. The store has two: one for claims, one for everything else.
    engine = create_async_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_timeout=_DATABASE_TIMEOUT_SECONDS,
        connect_args={"timeout": _DATABASE_TIMEOUT_SECONDS},
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    """WAL lets readers and the writer proceed together; foreign keys are off by default.

    `synchronous=NORMAL` (SQLite's advice for WAL) syncs to disk at checkpoints, not at every
    commit (about 1 ms each here, most of a question's store time): a crash of the process
    loses nothing, a power cut may lose the last commits. PostgreSQL is the durable choice.

    WAL is a property of the file: when several processes open a new database at once, one
    switches it and the others may find it locked meanwhile, which is fine.
    """
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_DATABASE_TIMEOUT_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    with contextlib.suppress(sqlite3.OperationalError):
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _upgrade_to_head(connection: Connection) -> None:
    """Migrate under a lock, so processes starting together migrate one at a time."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    else:  # SQLite: take the write lock now, not at the first write (pysqlite defers it)
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _now() -> datetime:
    return datetime.now(UTC)


def _request_record(row: Request) -> RequestRecord:
    values = {field.name: getattr(row, field.name) for field in fields(RequestRecord)}
    values["continuation_ts"] = tuple(ts for ts in row.continuation_ts.split(",") if ts)
    return RequestRecord(**values)


def _thread_record(row: Thread) -> ThreadRecord:
    return ThreadRecord(**{field.name: getattr(row, field.name) for field in fields(ThreadRecord)})
