"""The one place for persistence: claims, requests and their states, thread memory, feedback.

SQLAlchemy 2 on SQLite (the default, in WAL mode) or PostgreSQL (to scale out); each operation is
one transaction, run where `bot.store.database` says. The schema is Alembic's, migrated when the
store opens. Callers get frozen records, never ORM objects.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import and_, case, delete, not_, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Result, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.context.models import Fetched
from bot.core.answer import Answer
from bot.core.conversation import ContextItem, Turn
from bot.store.claims import ClaimBatcher, over_quota
from bot.store.database import Database, connect
from bot.store.records import (
    FINAL_STATES,
    LinkRecord,
    NewRequest,
    Quota,
    RequestRecord,
    RequestState,
    ThreadMemory,
    ThreadRecord,
    Vote,
)
from bot.store.statements import (
    ADD_CACHE_ENTRIES,
    ADD_TRANSITIONS,
    LINKS,
    SET_REQUEST,
    THREAD,
)
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
    table,
    utc_now,
)

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 0x6F69  # "oi": application-chosen advisory lock keys
_Row = TypeVar("_Row")


@dataclass(frozen=True)
class _Upserts:
    """The dialect's INSERT … ON CONFLICT statements, built once per store."""

    add_thread: Any  # returns the new thread's row, or none when it exists already
    remember_turn: Any  # a resumed request's new answer replaces its old one
    add_tokens: Any  # adds to the workspace's day, in one statement so that replicas never race

    @classmethod
    def build(cls, dialect_insert: Any) -> _Upserts:
        turn, usage = dialect_insert(table(ThreadTurn)), dialect_insert(table(TokenUsage))
        threads = table(Thread)
        return cls(
            add_thread=dialect_insert(threads).on_conflict_do_nothing().returning(threads),
            remember_turn=turn.on_conflict_do_update(
                index_elements=["request_id"], set_={"answer_json": turn.excluded.answer_json}
            ),
            add_tokens=usage.on_conflict_do_update(
                index_elements=["team_id", "day"],
                set_={"tokens": usage.table.c.tokens + usage.excluded.tokens},
            ),
        )


class Store:
    """The store's operations, each one transaction on the process's `Database`."""

    def __init__(
        self, database: Database, *, owner: str | None = None, lease_seconds: float = 60
    ) -> None:
        self._database = database
        insert = sqlite.insert if database.dialect == "sqlite" else postgresql.insert
        self._upserts = _Upserts.build(insert)
        self._claims = ClaimBatcher(database, insert=insert, request_row=self._request_row)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds

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
        await self._claims.close()
        await self._database.close()

    async def ping(self) -> bool:
        return await self._database.ping()

    async def claim(self, key: str) -> bool:
        """True for the first claim of `key`, False for every later one (any process)."""

        def work(session: Session) -> None:
            session.add(Claim(key=key, claimed_at=utc_now()))

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
        `ClaimBatcher._write_claims`.
        """
        return await self._claims.claim(new, quota)

    def _request_row(self, record: RequestRecord, now: datetime) -> dict[str, Any]:
        return {
            **asdict(record),
            "continuation_ts": "",
            "at_risk": False,
            "lease_owner": self.owner,
            "lease_expires_at": self._lease_end(now),
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
        streamed: bool = False,
    ) -> None:
        """Move a request to `state`; a failure's detail is kept as its error. With `reply_ts`,
        also records the message the answer will replace or finish (`streamed`: a stream)."""
        await self._database.run(
            lambda session: _transition(session, request_id, state, detail, reply_ts, streamed)
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
            now = utc_now()
            if quota is not None:
                author = session.execute(
                    select(Request.team_id, Request.user_id).where(Request.id == request_id)
                ).first()
                if author is not None:
                    asking = self._claims.asking(session, {(author[0], author[1])}, now)
                    refused = over_quota(asking[(author[0], author[1])], quota)
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
            now = utc_now()
            result = session.execute(
                update(Request)
                .where(
                    Request.id == request_id,
                    Request.state.not_in(FINAL_STATES),
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
                .values(lease_expires_at=self._lease_end(utc_now()))
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
                        Request.state.not_in(FINAL_STATES),
                        or_(
                            Request.lease_expires_at.is_(None),
                            Request.lease_expires_at < utc_now(),
                        ),
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
                .values(continuation_ts=",".join(continuation_ts), updated_at=utc_now())
            )
        )

    async def set_attachment(self, request_id: str, file_id: str) -> None:
        """The answer's overflow file, shared once: a resumed request does not share it again."""
        await self._database.run(
            lambda session: session.execute(
                SET_REQUEST,
                {"request_id": request_id, "attachment_file_id": file_id, "updated_at": utc_now()},
            )
        )

    async def find_thread(
        self, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None:
        def work(session: Session) -> ThreadRecord | None:
            row = session.execute(THREAD, _thread_key(team_id, channel_id, thread_ts)).first()
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
            row = session.execute(THREAD, key).first()
            links = _links(session, team_id, channel_id)
            history = _history(session, row.id) if row else []
            cached = _cached_context(session, row.id) if row else {}
            if request_id is not None:
                session.execute(
                    SET_REQUEST,
                    {"request_id": request_id, "thread_ts": thread_ts, "updated_at": utc_now()},
                )
            if row is None:
                created = {**key, "persona": persona, "created_at": utc_now()}
                row = (
                    session.execute(self._upserts.add_thread, created).first()
                    or session.execute(THREAD, key).first()
                )
            return ThreadMemory(
                thread=_thread_record(_one(row)), history=history, links=links, cached=cached
            )

        return await self._database.run(work)

    async def record_gathered_and_think(
        self, request_id: str, thread_id: int, fetched: Mapping[str, Sequence[Fetched]]
    ) -> None:
        """Keep what was read (already redacted) for the thread's follow-ups, and move the
        request on to thinking."""

        def work(session: Session) -> None:
            now = utc_now()
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
                session.execute(ADD_CACHE_ENTRIES, rows)
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
            "created_at": utc_now(),
        }
        usage = {"team_id": request.team_id, "day": day, "tokens": tokens}

        def work(session: Session) -> None:
            session.execute(self._upserts.remember_turn, turn)
            session.execute(self._upserts.add_tokens, usage)
            session.execute(
                SET_REQUEST, {"request_id": request.id, "at_risk": True, "updated_at": utc_now()}
            )

        await self._database.run(work)

    async def record_feedback(self, request_id: str, user_id: str, vote: Vote) -> None:
        await self._database.run(
            lambda session: session.merge(
                Feedback(request_id=request_id, user_id=user_id, vote=vote, updated_at=utc_now())
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
                    updated_at=utc_now(),
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
            created_at=utc_now(),
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


def _transition(
    session: Session,
    request_id: str,
    state: RequestState,
    detail: str | None = None,
    reply_ts: str | None = None,
    streamed: bool = False,
) -> None:
    now = utc_now()
    # gathering reads what the question refers to: at risk; thinking waits for the model: not
    values: dict[str, Any] = {"state": state, "at_risk": state == "gathering", "updated_at": now}
    if state == "failed":
        values["error"] = detail
    if state in FINAL_STATES:
        values.update(lease_owner=None, lease_expires_at=None)
    if reply_ts is not None:
        values.update(reply_ts=reply_ts, reply_streamed=streamed)
    session.execute(SET_REQUEST, {"request_id": request_id, **values})
    session.execute(
        ADD_TRANSITIONS, {"request_id": request_id, "state": state, "detail": detail, "at": now}
    )


def _thread_key(team_id: str, channel_id: str, thread_ts: str) -> dict[str, str]:
    return {"team_id": team_id, "channel_id": channel_id, "thread_ts": thread_ts}


def _links(session: Session, team_id: str, channel_id: str) -> list[LinkRecord]:
    rows = session.execute(LINKS, {"team_id": team_id, "channel_id": channel_id})
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


def _request_record(row: Request) -> RequestRecord:
    values = {field.name: getattr(row, field.name) for field in fields(RequestRecord)}
    values["continuation_ts"] = tuple(ts for ts in row.continuation_ts.split(",") if ts)
    values["created_at"] = row.created_at.replace(tzinfo=row.created_at.tzinfo or UTC)  # SQLite
    return RequestRecord(**values)


def _thread_record(row: Row[Any]) -> ThreadRecord:
    return ThreadRecord(**{field.name: getattr(row, field.name) for field in fields(ThreadRecord)})
