"""Claiming requests as Slack delivers them: written together, counted against their authors'
quotas in the same transaction."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, text, tuple_
from sqlalchemy.orm import Session

from bot.store.database import Database
from bot.store.records import FINAL_STATES, NewRequest, Quota, RateLimited, RequestRecord
from bot.store.statements import ADD_REQUESTS, ADD_TRANSITIONS
from bot.store.tables import Claim, Request, utc_now

_RATE_LOCK = 0x6F6972  # "oir": an application-chosen advisory lock key
# A request still unfinished this long after it was asked has failed or been resumed long since
# (OI_REQUEST_DEADLINE_SECONDS); the in-flight count looks no further back.
_IN_FLIGHT_WINDOW = timedelta(hours=1)
_CLAIM_BATCH = 500  # claims in one transaction, well within SQLite's bound on parameters

RequestRow = Callable[[RequestRecord, datetime], dict[str, Any]]


@dataclass(frozen=True)
class _PendingClaim:
    new: NewRequest
    quota: Quota | None
    outcome: asyncio.Future[RequestRecord | None]


@dataclass(frozen=True)
class Asking:
    """One author's questions in the last minute, and those still being answered."""

    asked: int
    in_flight: int


class ClaimBatcher:
    """The store's claims of new requests, each written with those waiting beside it.

    `insert` is the dialect's INSERT (for ON CONFLICT); `request_row` is a claimed request's row,
    leased to the store's process.
    """

    def __init__(self, database: Database, *, insert: Any, request_row: RequestRow) -> None:
        self._database = database
        self._insert = insert
        self._request_row = request_row
        self._pending_claims: list[_PendingClaim] = []
        self._claim_writer: asyncio.Task[None] | None = None

    async def claim(self, new: NewRequest, quota: Quota | None) -> RequestRecord | None:
        """The claimed request, None when claimed already; raises `RateLimited` over `quota`."""
        pending = _PendingClaim(new, quota, asyncio.get_running_loop().create_future())
        self._pending_claims.append(pending)
        if self._claim_writer is None or self._claim_writer.done():
            self._claim_writer = asyncio.create_task(self._write_claims(), name="store-claims")
        return await pending.outcome

    async def close(self) -> None:
        """Wait for the claims being written."""
        if self._claim_writer is not None:
            await self._claim_writer

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
        now = utc_now()
        taken = set(
            session.scalars(
                select(Claim.key).where(Claim.key.in_([p.new.claim_key for p in batch]))
            )
        )
        asking = self.asking(
            session, {(p.new.team_id, p.new.user_id) for p in batch if p.quota}, now
        )
        outcomes: list[RequestRecord | RateLimited | None] = []
        for pending in batch:
            new, author = pending.new, (pending.new.team_id, pending.new.user_id)
            refused = over_quota(asking[author], pending.quota)
            if new.claim_key in taken:
                outcomes.append(None)
            elif refused is not None:
                outcomes.append(refused)
            else:
                taken.add(new.claim_key)
                asking[author] = Asking(asking[author].asked + 1, asking[author].in_flight + 1)
                outcomes.append(_new_record(new, now))
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
            session.execute(ADD_REQUESTS, [self._request_row(r, now) for r in records])
            session.execute(
                ADD_TRANSITIONS,
                [
                    {"request_id": r.id, "state": "received", "detail": None, "at": now}
                    for r in records
                ],
            )
        return outcomes

    def asking(
        self, session: Session, authors: set[tuple[str, str]], now: datetime
    ) -> defaultdict[tuple[str, str], Asking]:
        """Each author's questions in the last minute, and those still being answered (asked
        within `_IN_FLIGHT_WINDOW`: older ones have failed or been resumed long since). On
        PostgreSQL, replicas count under one lock, held until the batch is written, so that two
        never let the same burst through."""
        asking: defaultdict[tuple[str, str], Asking] = defaultdict(lambda: Asking(0, 0))
        if not authors:
            return asking
        if self._database.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _RATE_LOCK})
        recent = case((Request.created_at >= now - timedelta(seconds=60), 1), else_=0)
        unfinished = case((Request.state.not_in(FINAL_STATES), 1), else_=0)
        rows = session.execute(
            select(Request.team_id, Request.user_id, func.sum(recent), func.sum(unfinished))
            .where(
                tuple_(Request.team_id, Request.user_id).in_(sorted(authors)),
                Request.created_at >= now - _IN_FLIGHT_WINDOW,
            )
            .group_by(Request.team_id, Request.user_id)
        )
        for team_id, user_id, asked, in_flight in rows:
            asking[(team_id, user_id)] = Asking(int(asked), int(in_flight))
        return asking


def over_quota(asking: Asking, quota: Quota | None) -> RateLimited | None:
    if quota is None:
        return None
    if asking.asked >= quota.per_minute or asking.in_flight >= quota.in_flight:
        busy = asking.asked < quota.per_minute
        return RateLimited(asked=asking.asked, in_flight=asking.in_flight, busy=busy)
    return None


def _new_record(new: NewRequest, now: datetime) -> RequestRecord:
    return RequestRecord(
        **asdict(new),
        id=uuid.uuid4().hex,
        state="received",
        error=None,
        reply_ts=None,
        continuation_ts=(),
        reply_streamed=False,
        attachment_file_id=None,
        attempts=1,
        interruptions=0,
        created_at=now,
    )
