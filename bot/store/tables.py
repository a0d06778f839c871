"""The store's tables: created by the Alembic migrations in `migrations/`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def table(entity: type[Base]) -> Table:
    return cast(Table, entity.__table__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Claim(Base):
    """One row per Slack delivery we act on: inserting it is how exactly one process wins."""

    __tablename__ = "claims"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Request(Base):
    """A question being answered, with everything needed to answer it again after a crash."""

    __tablename__ = "requests"
    # the per-person rate limit counts a person's recent requests at every claim
    __table_args__ = (Index("ix_requests_author_created", "team_id", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    claim_key: Mapped[str] = mapped_column(ForeignKey("claims.key"), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    # the asker's own team when Slack names it (`user_team`): another one is Slack Connect
    user_team_id: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    persona: Mapped[str] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    reply_ts: Mapped[str | None] = mapped_column(String(32))
    continuation_ts: Mapped[str] = mapped_column(Text, default="")
    # the reply was started as a streamed message (chat.startStream), which may still stream
    reply_streamed: Mapped[bool] = mapped_column(Boolean, default=False)
    # the file holding an answer too long for its messages, once shared in the thread
    attachment_file_id: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set while the request's own content is being worked on (reading what it refers to, turning
    # the model's reply into messages): a process dying then is blamed on it (`Store.acquire`).
    at_risk: Mapped[bool] = mapped_column(Boolean, default=False)
    # processes that died while it only waited (queued, or on the model): a far larger bound
    interruptions: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RequestTransition(Base):
    """Every state change of a request, in order, for auditing and metrics."""

    __tablename__ = "request_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Thread(Base):
    """A Slack thread the bot answers in, and the persona that thread keeps."""

    __tablename__ = "threads"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str] = mapped_column(String(32))
    persona: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ThreadTurn(Base):
    """One answered question in a thread: the memory follow-ups are answered with."""

    __tablename__ = "thread_turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id"), index=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), unique=True)
    question: Mapped[str] = mapped_column(Text)
    answer_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Feedback(Base):
    """A thumbs up or down on an answer; one vote per person per answer, the latest wins."""

    __tablename__ = "feedback"

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vote: Mapped[str] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChannelSettings(Base):
    """Per-channel choices made in Slack: the persona that answers mentions naming none."""

    __tablename__ = "channel_settings"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    default_persona: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChannelLink(Base):
    """A repository or Linear team linked to one channel: read for that channel's questions only."""

    __tablename__ = "channel_links"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    target: Mapped[str] = mapped_column(String(255), primary_key=True)
    linked_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ContextCacheEntry(Base):
    """What was read (already redacted) for one reference in a thread, reused by follow-ups."""

    __tablename__ = "context_cache"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id"), index=True)
    reference: Mapped[str] = mapped_column(String(1024))
    source: Mapped[str] = mapped_column(String(1024))
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer)
    revision: Mapped[str] = mapped_column(String(255))
    # from a private repository or Linear: reused only where it may still be read
    private: Mapped[bool] = mapped_column(Boolean, default=True)
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TokenUsage(Base):
    """Tokens a workspace used on one UTC day, for the optional daily budget."""

    __tablename__ = "token_usage"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    tokens: Mapped[int] = mapped_column(Integer)
