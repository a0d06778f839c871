"""Answering a claimed request in its Slack thread: progress at once, then the answer or a failure.

The life of a request (DESIGN.md): received → gathering → thinking → answered | failed, each
transition stored. A placeholder message shows progress and is replaced by the answer (or by an
honest failure message with a "Try again" button), so the thread never stays silent.
"""

from __future__ import annotations

import time

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.context.gather import ContextGatherer, Gathered, Links
from bot.core.engine import Engine
from bot.core.errors import AnswerError
from bot.core.persona import Persona, PersonaRegistry, UnknownPersonaError
from bot.log import request_context
from bot.metrics import Metrics
from bot.slack.render import (
    SlackMessage,
    render_failure,
    render_progress,
    render_question,
    render_reply,
)
from bot.store import RequestRecord, Store

log = structlog.get_logger(__name__)

NOT_IN_CHANNEL = (
    "I'm not a member of this channel yet. Invite me with `/invite @oi`, then ask again."
)
_MEMBERSHIP_ERRORS = {"not_in_channel", "channel_not_found", "is_archived"}


class Responder:
    """Turns a claimed request into exactly one answer (or one failure message) in Slack."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        store: Store,
        engine: Engine,
        gatherer: ContextGatherer,
        personas: PersonaRegistry,
        metrics: Metrics,
    ) -> None:
        self._client = client
        self._store = store
        self._engine = engine
        self._gatherer = gatherer
        self._personas = personas
        self._metrics = metrics

    async def answer(self, request: RequestRecord, *, response_url: str | None = None) -> None:
        """Run the request to `answered` or `failed`; never raises, never leaves a thread silent."""
        started = time.perf_counter()
        with request_context(request.id, kind=request.kind, channel=request.channel_id):
            try:
                outcome = await self._answer(request, response_url)
            except SlackApiError as error:
                outcome = await self._slack_failed(request, error, response_url)
            self._metrics.requests.labels(request.kind, outcome).inc()
            self._metrics.end_to_end_seconds.observe(time.perf_counter() - started)
            log.info("request.done", outcome=outcome)

    async def tell(self, *, channel: str, user: str, thread_ts: str | None, text: str) -> None:
        """A short ephemeral note to one person (help, the persona list, a typo's suggestion)."""
        await self._client.chat_postEphemeral(
            channel=channel, user=user, thread_ts=thread_ts, text=text
        )

    async def _answer(self, request: RequestRecord, response_url: str | None) -> str:
        try:
            persona = self._personas.get(request.persona)
        except UnknownPersonaError as error:
            await self._store.transition(request.id, "failed", detail=str(error))
            return "failed"
        thread_ts = request.thread_ts or await self._post_question(request, persona)
        thread = await self._store.open_thread(
            request.team_id, request.channel_id, thread_ts, persona.name
        )
        reply_ts = await self._show_progress(request, persona, thread_ts)
        await self._store.transition(request.id, "gathering")
        gathering_started = time.perf_counter()
        history = await self._store.history(thread.id)
        gathered = await self._gather(request, persona, thread.id)
        self._metrics.context_seconds.observe(time.perf_counter() - gathering_started)
        await self._store.transition(request.id, "thinking")
        try:
            reply = await self._engine.ask(
                persona=persona, question=request.question, history=history, gathered=gathered
            )
        except AnswerError as error:
            log.warning("request.answer_failed", error=str(error))
            # Stored first: the "Try again" button works only on a request that is failed.
            await self._store.transition(request.id, "failed", detail=str(error))
            failure = render_failure(reason=error.user_message, request_id=request.id)
            await self._update(request.channel_id, reply_ts, failure)
            return "failed"
        self._metrics.observe_reply(reply)
        # Remembered before it is shown, so a reply typed the moment it appears sees it.
        await self._store.add_turn(thread.id, request.id, request.question, reply.answer)
        first, *rest = render_reply(persona=persona, reply=reply, request_id=request.id)
        await self._update(request.channel_id, reply_ts, first)
        for message in rest:
            await self._post(request.channel_id, thread_ts, message)
        await self._store.transition(request.id, "answered")
        return "answered"

    async def _gather(self, request: RequestRecord, persona: Persona, thread_id: int) -> Gathered:
        """Read what the question and the channel's links refer to; keep it for follow-ups."""
        links = await self._store.links(request.team_id, request.channel_id)
        gathered = await self._gatherer.gather(
            text=request.question,
            persona=persona,
            links=Links(
                repositories=[link.target for link in links if link.kind == "github"],
                linear_teams=[link.target for link in links if link.kind == "linear"],
            ),
            cached=await self._store.cached_context(thread_id),
        )
        if gathered.fetched:
            await self._store.cache_context(thread_id, gathered.fetched)
        return gathered

    async def _post_question(self, request: RequestRecord, persona: Persona) -> str:
        """A slash command's question, posted to the channel so the answer can thread under it."""
        message = render_question(
            user_id=request.user_id, persona=persona, question=request.question
        )
        ts = await self._post(request.channel_id, None, message)
        await self._store.set_thread_ts(request.id, ts)
        return ts

    async def _show_progress(self, request: RequestRecord, persona: Persona, thread_ts: str) -> str:
        """The placeholder the answer replaces; a retried request reuses its old one."""
        progress = render_progress(persona=persona)
        if request.reply_ts:
            await self._update(request.channel_id, request.reply_ts, progress)
            return request.reply_ts
        reply_ts = await self._post(request.channel_id, thread_ts, progress)
        await self._store.set_reply_ts(request.id, reply_ts)
        return reply_ts

    async def _slack_failed(
        self, request: RequestRecord, error: SlackApiError, response_url: str | None
    ) -> str:
        """Slack refused a post: tell the asker where we still can, and record the failure."""
        code = str(error.response.get("error", "unknown_error"))
        log.warning("request.slack_failed", slack_error=code)
        await self._store.transition(request.id, "failed", detail=f"Slack: {code}")
        if code in _MEMBERSHIP_ERRORS and response_url:
            await AsyncWebhookClient(response_url, session=self._client.session).send(
                text=NOT_IN_CHANNEL, response_type="ephemeral"
            )
        return "failed"

    async def _post(self, channel: str, thread_ts: str | None, message: SlackMessage) -> str:
        response = await self._client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts,
            text=message.text,
            blocks=message.blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(response["ts"])

    async def _update(self, channel: str, ts: str, message: SlackMessage) -> None:
        await self._client.chat_update(
            channel=channel, ts=ts, text=message.text, blocks=message.blocks
        )
