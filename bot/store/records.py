"""What the store hands out and takes in: plain frozen records, never ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bot.context.models import Fetched
from bot.core.conversation import Turn

RequestState = Literal["received", "gathering", "thinking", "answered", "failed"]
RequestKind = Literal["command", "mention", "follow_up", "direct"]
Vote = Literal["up", "down"]
LinkKind = Literal["github", "linear"]

FINAL_STATES: tuple[RequestState, ...] = ("answered", "failed")


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
    reply_streamed: bool  # `reply_ts` was started as a stream (chat.startStream)
    attachment_file_id: str | None  # the overflow file already shared for this answer
    attempts: int  # this try's number: crashes blamed on the request, plus one (`Store.acquire`)
    interruptions: int  # processes that died while it only waited
    created_at: datetime  # when it was asked (or, retried, asked again), in UTC


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
