"""Answering a claimed request in its Slack thread: progress at once, then the answer or a failure.

The life of a request (DESIGN.md): received → gathering → thinking → answered | failed, each
transition stored. A reply shows at once and follows the work (`bot.slack.live`: each source read,
then the answer as the model writes it), and is replaced by the finished answer (or by an honest
failure message with a "Try again" button), so the thread never stays silent.

Nothing is lost and nothing is posted twice: the request's lease is held while it runs
(`bot.slack.lease`, handed back if the process stops), and every message posted is recorded
(`bot.slack.thread`), so a resumed request updates what is there instead of posting it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import structlog
from slack_sdk.errors import SlackApiError

from bot.context.gather import ContextGatherer, Gathered, Links, Reach
from bot.core.answer import Reply
from bot.core.conversation import Turn, estimate_tokens
from bot.core.engine import Engine
from bot.core.errors import AnswerError
from bot.core.persona import Persona, PersonaRegistry, UnknownPersonaError
from bot.limits import BusyError, ConcurrencyLimit
from bot.log import request_context
from bot.metrics import Metrics
from bot.slack.access import OUTSIDERS_DENIED, AccessPolicy, place
from bot.slack.directory import SlackDirectory
from bot.slack.lease import held_lease
from bot.slack.live import LiveReply
from bot.slack.render import render_failure, render_reply
from bot.slack.thread import MEMBERSHIP_ERRORS, ThreadMessages
from bot.store import RequestRecord, Store, ThreadMemory

log = structlog.get_logger(__name__)

NOT_IN_CHANNEL = (
    "I'm not a member of this channel yet. Invite me with `/invite @oi`, then ask again."
)
BUSY = "I'm answering too many questions right now. Please try again in a minute."
# Answers starting at once (posting the question and placeholder, reading the thread), and
# finishing at once (storing, rendering and posting the answer); the rest wait their turn.
# asyncio runs ready work in arrival order, not by priority: unbounded, a burst of answers would
# starve the acks, which must reach Slack within 3 seconds. Two bounds, so that finishing answers
# never queue behind a burst of new ones. Measured at 100 questions/s (bench/RESULTS.md), 2 gave
# the fastest acks (p99 78 ms; 159 ms with 4, 992 ms unbounded); a Slack rate limit on a post
# holds its place for the Retry-After Slack asks.
_STARTING_AT_ONCE = 2
_FINISHING_AT_ONCE = 2
# The persona card's system prompt and a full answer, reserved with each call's question,
# history and context from the daily token budget.
_CARD_AND_ANSWER_TOKENS = 3_000
# Processes dying while a request only waits are others' doing, but a request must not be resumed
# without end (the crash may come from somewhere not marked at risk): this many per attempt.
_INTERRUPTIONS_PER_ATTEMPT = 5


# How a request ended, as `oi_requests_total` counts it: "refused" is an outsider turned away
# (OI_EXTERNAL_USERS=deny), "error" a crash handed back to be resumed.
Outcome = Literal["answered", "failed", "refused", "error"]


@dataclass(frozen=True)
class AnswerLimits:
    """How much one process and one workspace may ask of the LLM."""

    deadline_seconds: float
    daily_token_budget: int  # 0: no budget
    max_attempts: int  # tries a resumed request may use up (OI_MAX_ATTEMPTS)
    show_usage: bool = False  # token counts in each answer's footer (OI_SHOW_USAGE)


class _Refused(Exception):
    """The request ends here with this honest message (and a Try again button)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason


class Responder:
    """Turns a claimed request into exactly one answer (or one failure message) in Slack."""

    def __init__(
        self,
        *,
        messages: ThreadMessages,
        store: Store,
        engine: Engine,
        gatherer: ContextGatherer,
        personas: PersonaRegistry,
        metrics: Metrics,
        concurrency: ConcurrencyLimit,
        limits: AnswerLimits,
        directory: SlackDirectory,
        access: AccessPolicy,
    ) -> None:
        self._messages = messages
        self._directory = directory
        self._access = access
        self._store = store
        self._engine = engine
        self._gatherer = gatherer
        self._personas = personas
        self._metrics = metrics
        self._concurrency = concurrency
        self._limits = limits
        self._starting = asyncio.Semaphore(_STARTING_AT_ONCE)
        self._finishing = asyncio.Semaphore(_FINISHING_AT_ONCE)

    async def answer(
        self, request: RequestRecord, *, response_url: str | None = None, resumed: bool = False
    ) -> None:
        """Run the request to `answered` or `failed`; never leaves a thread silent.

        Cancelled (the process is stopping), it hands the request back for another process.
        `resumed`: taken over from an attempt that stopped, which may have left a reply.
        """
        started = time.perf_counter()
        outcome: Outcome
        with request_context(request.id, kind=request.kind, channel=request.channel_id):
            try:
                async with (
                    held_lease(self._store, request.id),
                    asyncio.timeout(self._limits.deadline_seconds),
                ):
                    outcome = await self._answer(request, response_url, resumed=resumed)
            except asyncio.CancelledError:
                await self._store.release(request.id)
                log.info("request.handed_back")
                raise
            except TimeoutError:
                reason = f"This took longer than {self._limits.deadline_seconds:g}s, so I stopped."
                outcome = await self.fail(request, reason)
            except SlackApiError as error:
                if error.response.get("error") == "ratelimited":
                    # Slack is still limiting after the client's own retries: another attempt
                    # later (a resumer's) rather than a question left silent.
                    log.warning("request.slack_rate_limited")
                    outcome = "error"
                    await self._hand_back(request)
                else:
                    outcome = await self._slack_failed(request, error, response_url)
            except Exception:  # a bug or a database outage: hand it back to be resumed
                log.exception("request.crashed")
                outcome = "error"
                await self._hand_back(request)
            self._metrics.requests.labels(request.kind, outcome).inc()
            self._metrics.end_to_end_seconds.observe(time.perf_counter() - started)
            log.info("request.done", outcome=outcome, attempts=request.attempts)

    async def resume(self, request: RequestRecord) -> None:
        """Answer a request taken over from a process that died or handed it back, unless it
        has used up its tries: `OI_MAX_ATTEMPTS` tries blamed on it (see `Store.acquire` for
        when one is), or that many times `_INTERRUPTIONS_PER_ATTEMPT` interruptions while it
        only waited. Then the thread gets a failure message with a "Try again" button."""
        tries = self._limits.max_attempts
        if request.attempts > tries:
            await self.fail(request, f"I couldn't answer this after {tries} attempts.")
        elif request.interruptions > tries * _INTERRUPTIONS_PER_ATTEMPT:
            reason = f"I couldn't answer this: I was interrupted {request.interruptions} times."
            await self.fail(request, reason)
        else:
            await self.answer(request, resumed=True)

    async def fail(
        self,
        request: RequestRecord,
        reason: str,
        *,
        detail: str = "",
        live: LiveReply | None = None,
    ) -> Outcome:
        """Record the failure first (so "Try again" finds it failed), then say it in the thread,
        in place of the reply (`live`, when this attempt has one, stops showing progress)."""
        if live is not None:
            await live.close()
        await self._store.transition(request.id, "failed", detail=detail or reason)
        failure = render_failure(reason=reason, request_id=request.id)
        await self._messages.show_failure(request, failure, stream_ended=live is not None)
        return "failed"

    async def _hand_back(self, request: RequestRecord) -> None:
        """Free the lease so the resumer tries again, this try counted as failed (up to
        OI_MAX_ATTEMPTS); if even that fails, the lease simply expires."""
        try:
            await self._store.release(request.id, failed=True)
        except Exception:  # the database itself may be what failed
            log.exception("request.hand_back_failed")

    async def _answer(
        self, request: RequestRecord, response_url: str | None, *, resumed: bool
    ) -> Outcome:
        try:
            persona = self._personas.get(request.persona)
        except UnknownPersonaError as error:
            await self._store.transition(request.id, "failed", detail=str(error))
            return "failed"
        asker = await self._directory.person(request.user_id, team_id=request.user_team_id)
        reach = self._access.reach(asker)
        if reach is None:
            await self._store.transition(request.id, "failed", detail="OI_EXTERNAL_USERS=deny")
            await self._messages.tell(
                channel=request.channel_id,
                user=request.user_id,
                thread_ts=request.thread_ts,
                text=OUTSIDERS_DENIED,
            )
            return "refused"
        async with self._starting:
            thread_ts = request.thread_ts or await self._messages.post_question(
                request, persona, resumed=resumed
            )
            memory = await self._store.open_thread(
                request.team_id,
                request.channel_id,
                thread_ts,
                persona.name,
                request_id=None if request.thread_ts else request.id,
            )
            live = await self._messages.start_reply(request, persona, thread_ts, resumed=resumed)
        try:
            return await self._answer_live(request, persona, memory, reach, live, thread_ts)
        finally:
            await live.quiet()

    async def _answer_live(
        self,
        request: RequestRecord,
        persona: Persona,
        memory: ThreadMemory,
        reach: Reach,
        live: LiveReply,
        thread_ts: str,
    ) -> Outcome:
        """Gather and think while `live` shows each step and the answer as it is written."""
        thread = memory.thread
        gathered = await self._gather(request, persona, memory, reach, live)
        live.cite(gathered.citations)
        try:
            reply, reserved = await self._think(
                request, persona, thread.id, history=memory.history, gathered=gathered, live=live
            )
        except _Refused as refused:
            log.warning("request.refused", reason=refused.detail)
            return await self.fail(request, refused.reason, detail=refused.detail, live=live)
        async with self._finishing:
            # Remembered before it is shown, so a reply typed the moment it appears sees it.
            used = reply.usage.total_tokens - reserved
            await self._store.record_answer(
                request, thread.id, reply.answer, day=_today(), tokens=used
            )
            rendered = render_reply(
                persona=persona,
                reply=reply,
                request_id=request.id,
                question=request.question,
                show_usage=self._limits.show_usage,
            )
            await self._messages.show_answer(request, rendered, live=live, thread_ts=thread_ts)
            await self._store.transition(request.id, "answered")
        return "answered"

    async def _think(
        self,
        request: RequestRecord,
        persona: Persona,
        thread_id: int,
        *,
        history: Sequence[Turn],
        gathered: Gathered,
        live: LiveReply,
    ) -> tuple[Reply, int]:
        """The LLM call, within the workspace's daily budget and the process's concurrency cap;
        with the reply, the tokens reserved for it from the budget.

        The call's tokens are reserved before it starts, so calls starting together cannot all
        pass a budget that has room for one; a call that fails keeps its reservation (the model
        may well have spent it), one that never started gives it back.
        """
        budget = self._limits.daily_token_budget
        reserved = _estimated_tokens(request.question, history, gathered) if budget else 0
        day = _today()
        if budget and not await self._store.reserve_tokens(
            request.team_id, day, reserved, budget=budget
        ):
            raise _Refused(
                f"This workspace has used its daily budget of {budget:,} tokens; "
                "I can answer again after 00:00 UTC."
            )
        await self._store.record_gathered_and_think(request.id, thread_id, gathered.fetched)
        try:
            async with self._concurrency.slot():
                reply = await self._engine.ask(
                    persona=persona,
                    question=request.question,
                    history=history,
                    gathered=gathered,
                    progress=live,
                )
        except BusyError:
            if reserved:
                await self._store.add_tokens(request.team_id, day, -reserved)
            raise _Refused(BUSY) from None
        except AnswerError as error:
            raise _Refused(error.user_message, str(error)) from None
        self._metrics.observe_reply(reply, team_id=request.team_id)
        return reply, reserved

    async def _gather(
        self,
        request: RequestRecord,
        persona: Persona,
        memory: ThreadMemory,
        reach: Reach,
        live: LiveReply,
    ) -> Gathered:
        """Read what the question and the channel's links refer to, or the thread read before;
        `reach` says what the asker may read beyond the links."""
        started = time.perf_counter()
        gathered = await self._gatherer.gather(
            text=request.question,
            persona=persona,
            links=Links(
                repositories=[link.target for link in memory.links if link.kind == "github"],
                linear_teams=[link.target for link in memory.links if link.kind == "linear"],
            ),
            reach=reach,
            place=place(request.channel_id),
            cached=memory.cached,
            progress=live,
        )
        self._metrics.context_seconds.observe(time.perf_counter() - started)
        return gathered

    async def _slack_failed(
        self, request: RequestRecord, error: SlackApiError, response_url: str | None
    ) -> Outcome:
        """Slack refused a post: tell the asker where we still can, and record the failure."""
        code = str(error.response.get("error", "unknown_error"))
        log.warning("request.slack_failed", slack_error=code)
        await self._store.transition(request.id, "failed", detail=f"Slack: {code}")
        if code in MEMBERSHIP_ERRORS and response_url:
            await self._messages.tell_by_response_url(response_url, NOT_IN_CHANNEL)
        return "failed"


def _estimated_tokens(question: str, history: Sequence[Turn], gathered: Gathered) -> int:
    """What one LLM call will likely use, reserved before it: its question, the thread so far
    and the context (all over-counted, never under), plus the card and the answer."""
    texts = [question, *(item.text for item in gathered.items)]
    texts += [part for turn in history for part in (turn.question, turn.answer.model_dump_json())]
    return sum(estimate_tokens(text) for text in texts) + _CARD_AND_ANSWER_TOKENS


def _today() -> str:
    """The UTC day a workspace's daily token budget counts."""
    return datetime.now(UTC).date().isoformat()
