"""A request's reply while it is worked on: its steps, and its answer as the model writes it.

Where Slack streams (chat.startStream, through slack-sdk's `chat_stream` helper), the reply is a
streamed message: each source read is a task in its timeline, then the answer's parts appear as
they are written. Where it does not (the method is refused, `OI_SLACK_STREAMING=off`, or a resumed
request finds an earlier attempt's message), the reply is a placeholder updated with the current
step every few seconds. Either way the finished answer then replaces the message
(`ThreadMessages.show_answer`), so every answer ends the same, exactly once.

Slack is told at a measured pace, not at every token: appends are batched (the first words of the
answer go at once), so a few seconds of answer cost a few dozen calls at most. Showing progress
never fails an answer: a refused or rate-limited append only means the next one carries more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks.block_elements import UrlSourceElement
from slack_sdk.models.messages.chunk import Chunk, MarkdownTextChunk, TaskUpdateChunk
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.answer import Citation
from bot.core.persona import Persona
from bot.core.progress import WRITING_STEP_ID, Draft, Step, writing_step
from bot.slack.assistant import Author, set_status
from bot.slack.markdown import is_cut, render_draft
from bot.slack.render import SlackMessage, render_progress, render_step_status

log = structlog.get_logger(__name__)

# Between two appends at first; later the pace slows so that a long answer is not a long bill.
_APPEND_SECONDS = 0.4
# Appends one answer's text may take before the pace slows down (see `_Pacer`).
_TEXT_APPENDS = 15
# A placeholder is updated no more often than this (chat.update, the fallback).
_PLACEHOLDER_SECONDS = 3.0
# Streamed Markdown stops growing here; the finished answer shows the rest. Slack takes 12,000
# characters an append, and has refused whole streamed messages past about 11,000 bytes.
_DRAFT_CHARACTERS = 8_000
# The first task of every stream, finished when the model starts writing.
_GATHERING = Step("gathering", "Gathering context", "in_progress")
_GATHERED = replace(_GATHERING, state="complete")


class _Pacer:
    """When the next call may go: every `_APPEND_SECONDS` at first, then slower, so that the
    number of text appends grows with the logarithm of the answer's length in time."""

    def __init__(self, seconds: float, *, at_once: bool) -> None:
        self._seconds = seconds
        self._last = -seconds if at_once else time.monotonic()
        self._first_text: float | None = None

    def wait(self, *, urgent: bool) -> float:
        if urgent:
            return 0.0
        interval = self._seconds
        if self._first_text is not None:
            interval = max(interval, (time.monotonic() - self._first_text) / _TEXT_APPENDS)
        return max(0.0, self._last + interval - time.monotonic())

    def sent(self, *, text: bool) -> None:
        self._last = time.monotonic()
        if text and self._first_text is None:
            self._first_text = self._last

    def back_off(self, seconds: float) -> None:
        self._last = time.monotonic() + seconds - self._seconds


class LiveReply:
    """Shows one request's steps and draft; `close` ends the showing before the answer lands.

    The steps and drafts it is given are shown by a task of its own, at the pace above, so the
    model's stream never waits for Slack. That task calls Slack through `progress_client`,
    which never waits out a rate limit (`bot.slack.client.without_waits`).
    """

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        progress_client: AsyncWebClient,
        persona: Persona,
        channel: str,
        ts: str,
        thread_ts: str,
        stream: AsyncChatStream | None,
    ) -> None:
        self.ts = ts
        self.persona = persona
        self._client = client
        self._progress_client = progress_client
        self._channel = channel
        self._thread_ts = thread_ts
        self._stream = stream
        self._appending = stream is not None  # until Slack refuses an append (it closed, say)
        # A stream shows its first steps at once; a placeholder, which says the persona is on
        # it, changes only once the work takes a while (a quick answer replaces it directly).
        if stream is None:
            self._pacer = _Pacer(_PLACEHOLDER_SECONDS, at_once=False)
        else:
            self._pacer = _Pacer(_APPEND_SECONDS, at_once=True)
        self._steps: dict[str, Step] = {}  # reported, not yet shown, latest state per step
        self._current: Step | None = None  # the step a placeholder or status shows
        self._shown_current: Step | None = None
        self._shown_status = ""
        self._citations: list[Citation] = []
        self._latest: Draft | None = None  # the newest draft, not rendered yet
        self._draft = ""  # the answer so far as Markdown, as far as it is shown once complete
        self._sent = ""  # what of `_draft` Slack has
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()  # the answer's first words are waiting: no pause for them
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # held while a call to Slack is in flight

    @property
    def shows_drafts(self) -> bool:
        """Only a stream shows the answer as it is written; a placeholder shows the step."""
        return self._stream is not None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._show_forever())

    def cite(self, citations: list[Citation]) -> None:
        """The sources read: links to them in the draft are the model's only allowed links."""
        self._citations = citations

    async def step(self, step: Step) -> None:
        if step.id == WRITING_STEP_ID and step.state == "in_progress":
            self._steps[_GATHERED.id] = _GATHERED
        self._steps.pop(step.id, None)
        self._steps[step.id] = step
        if step.state == "in_progress" or self._current is None:
            self._current = step
        self._wake.set()

    async def draft(self, draft: Draft) -> None:
        """Kept until the next append, which renders only the latest: a model's stream brings a
        draft every few characters, an append goes every few hundred milliseconds. Once the
        shown draft is cut at its limit, later ones would render the same: they are not kept."""
        if self._stream is not None and not is_cut(self._draft):
            self._latest = draft
            self._wake.set()
            if self._first_words_waiting():
                self._hurry.set()

    def _first_words_waiting(self) -> bool:
        return self._stream is not None and not self._sent and self._latest is not None

    async def close(self, final: SlackMessage | None = None) -> None:
        """Stop showing progress; a stream is stopped (with the answer's blocks, `final`), and
        the assistant status cleared. Safe to call more than once."""
        await self.quiet()
        if self._stream is not None:
            await self._stop_stream(final)
            self._stream = None
        if self._shown_status:
            await set_status(
                self._client, channel=self._channel, thread_ts=self._thread_ts, status=""
            )
            self._shown_status = ""

    async def quiet(self) -> None:
        """Stop the showing task once a call in flight has landed, so that nothing it shows
        can reach Slack after the answer (its calls never wait out a rate limit: they are
        one round trip each)."""
        task, self._task = self._task, None
        if task is None:
            return
        async with self._lock:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _show_forever(self) -> None:
        while True:
            await self._wake.wait()
            delay = self._pacer.wait(urgent=self._first_words_waiting())
            if delay:
                # The first words cut the wait short. (Not `wait_for`: on Python 3.11 it can
                # swallow the cancellation `quiet` sends when the event is set at that moment.)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._hurry.wait()
            self._wake.clear()
            self._hurry.clear()
            async with self._lock:
                await self._show()

    async def _show(self) -> None:
        await self._show_status()
        if self._stream is None:
            if self._current is not None and self._current != self._shown_current:
                await self._update_placeholder(self._current)
        elif self._appending:
            await self._append()

    async def _append(self) -> None:
        assert self._stream is not None
        self._render_latest()
        steps, text = list(self._steps.values()), self._draft[len(self._sent) :]
        chunks: list[Chunk] = [_task_chunk(step) for step in steps]
        if text:
            chunks.append(MarkdownTextChunk(text=text))
        if not chunks:
            return
        try:
            await self._progress_client.chat_appendStream(
                channel=self._channel, ts=self.ts, chunks=chunks
            )
        except SlackApiError as error:
            self._refused(error, "append")
            return
        for step in steps:
            if self._steps.get(step.id) is step:
                del self._steps[step.id]
        self._sent += text
        self._pacer.sent(text=bool(text))

    def _render_latest(self) -> None:
        if self._latest is None:
            return
        text = render_draft(
            persona=self.persona,
            draft=self._latest,
            links_from=self._citations,
            limit=_DRAFT_CHARACTERS,
        )
        self._latest = None
        if text.startswith(self._draft):  # a rendering that would rewrite what is shown waits
            self._draft = text

    async def _update_placeholder(self, step: Step) -> None:
        message = render_progress(persona=self.persona, step=step)
        try:
            await self._progress_client.chat_update(
                channel=self._channel, ts=self.ts, text=message.text, blocks=message.blocks
            )
        except SlackApiError as error:
            self._refused(error, "update")
            return
        self._shown_current = step
        self._pacer.sent(text=False)

    async def _show_status(self) -> None:
        current = self._current
        status = render_step_status(current) if current and current.state == "in_progress" else ""
        if status and status != self._shown_status:
            await set_status(
                self._progress_client,
                channel=self._channel,
                thread_ts=self._thread_ts,
                status=status,
            )
            self._shown_status = status

    def _refused(self, error: SlackApiError, what: str) -> None:
        """A rate limit waits its turn; after any other refusal (a stream Slack closed, say)
        nothing more is appended: the finished answer replaces the message anyway, and `close`
        still stops the stream where Slack has not."""
        code = str(error.response.get("error", ""))
        log.warning("reply.progress_refused", call=what, slack_error=code)
        if code == "ratelimited":
            self._pacer.back_off(_retry_after(error))
            self._wake.set()
        else:
            self._appending = False

    async def _stop_stream(self, final: SlackMessage | None) -> None:
        assert self._stream is not None
        chunks = [_task_chunk(step) for step in self._finished_steps()]
        blocks = final.blocks if final else None
        try:
            await self._stream.stop(chunks=chunks or None, blocks=blocks)
        except SlackApiError as error:
            code = error.response.get("error")
            log.warning("reply.stream_stop_refused", slack_error=code)
            if code != "message_not_in_streaming_state":  # stopped, without what was refused
                await end_stream(self._client, channel=self._channel, ts=self.ts)

    def _finished_steps(self) -> list[Step]:
        """Steps still to show, each marked finished: the answer is there now."""
        steps = dict(self._steps)
        steps[_GATHERED.id] = _GATHERED
        steps[WRITING_STEP_ID] = writing_step("complete")
        return [
            replace(step, state="complete") if step.state == "in_progress" else step
            for step in steps.values()
        ]


async def end_stream(client: AsyncWebClient, *, channel: str, ts: str) -> None:
    """Stop a stream an earlier attempt started, if Slack has not closed it already, so that its
    message can be changed; a refusal means there is nothing left to stop."""
    try:
        await client.chat_stopStream(channel=channel, ts=ts)
    except SlackApiError as error:
        log.info("reply.stream_already_closed", slack_error=error.response.get("error"))


async def open_stream(
    client: AsyncWebClient,
    *,
    channel: str,
    thread_ts: str,
    recipient_user_id: str,
    recipient_team_id: str,
    author: Author,
    metadata: dict[str, Any],
) -> AsyncChatStream:
    """A streamed reply in `thread_ts`, started with its first task, so its `ts` is known (and
    can be stored) before anything else is appended. Raises Slack's refusal."""
    stream = await client.chat_stream(
        channel=channel,
        thread_ts=thread_ts,
        recipient_user_id=recipient_user_id,
        recipient_team_id=recipient_team_id,
        task_display_mode="timeline",
        buffer_size=_DRAFT_CHARACTERS,
        metadata=metadata,
        **author,
    )
    await stream.append(chunks=[_task_chunk(_GATHERING)])
    return stream


def _task_chunk(step: Step) -> TaskUpdateChunk:
    sources = [UrlSourceElement(url=step.url, text=step.title)] if step.url else None
    return TaskUpdateChunk(
        id=step.id,
        title=step.title,
        status=step.state,
        details=step.detail or None,
        sources=sources,
    )


def _retry_after(error: SlackApiError) -> float:
    headers: Any = getattr(error.response, "headers", {}) or {}
    value = headers.get("Retry-After") or headers.get("retry-after") or "1"
    try:
        return max(1.0, float(value))
    except ValueError:
        return 1.0
