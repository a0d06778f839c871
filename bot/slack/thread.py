"""What a request shows in its Slack thread, each message recorded as it is posted.

A slash command's question is posted to the channel (it leaves no message to thread under), a
reply shows at once that the persona is on it (a stream of its steps and its answer, or a
placeholder: `bot.slack.live`), and the finished answer replaces it, continued in further messages
when it is long and in a file when even three are not enough; a failure replaces it too. Every
`ts` is stored as soon as Slack gives it, so a resumed request updates what an earlier attempt
posted instead of posting it again; and the question and the reply carry their request's id
(message metadata), so that one posted by an attempt that died before storing its `ts` is found.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from datetime import timedelta
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core.persona import Persona
from bot.slack.assistant import author, set_title
from bot.slack.client import without_waits
from bot.slack.live import LiveReply, end_stream, open_stream
from bot.slack.render import (
    MarkdownFile,
    RenderedReply,
    SlackMessage,
    render_progress,
    render_question,
)
from bot.store import RequestRecord, Store

log = structlog.get_logger(__name__)

# Slack's answers that mean the bot cannot post in the channel at all.
MEMBERSHIP_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived"})
# The metadata events naming the request a message belongs to (`_posted_for`): its reply, and a
# slash command's question, echoed to the channel.
REPLY_EVENT = "oi_reply"
QUESTION_EVENT = "oi_question"
# How long before a request was stored its question is looked for: Slack's clock may be ahead.
_CLOCK_SKEW = timedelta(minutes=5)
# How many messages, newest first, are looked through for a question left behind.
_HISTORY_SEARCHED = 1_000
# Messages as conversations.history and conversations.replies list them, read one by one.
_Messages = AsyncGenerator[dict[str, Any], None]
# chat.startStream refusals that hold for every conversation of the workspace: an older Slack,
# a token or scope that may not stream, an Enterprise key policy.
_STREAMING_UNAVAILABLE = frozenset(
    {
        "unknown_method",
        "method_deprecated",
        "not_allowed_token_type",
        "missing_scope",
        "ekm_access_denied",
    }
)


class ThreadMessages:
    """Posts, updates and removes a request's messages, and keeps the store's record of them."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        store: Store,
        streaming: bool = True,
        customize: bool = False,
    ) -> None:
        self._client = client
        self._progress_client = without_waits(client)  # for `LiveReply`'s progress only
        self._store = store
        self._streaming = streaming
        self._customize = customize  # the app may post as each persona (chat:write.customize)
        self._no_streaming: set[str] = set()  # workspaces whose Slack refused chat.startStream

    async def post_question(
        self, request: RequestRecord, persona: Persona, *, resumed: bool = False
    ) -> str:
        """A slash command's question, posted to the channel so the answer can thread under it;
        the thread's `ts`. Resumed after a crash that came before the thread was recorded, the
        question an earlier attempt posted, found by the id it carries, is the thread."""
        if resumed:
            ts = await self._find(request, QUESTION_EVENT, self._recent_messages(request))
            if ts is not None:
                return ts
        message = render_question(
            user_id=request.user_id, persona=persona, question=request.question
        )
        return await self._post(
            request.channel_id, None, message, metadata=_posted_for(request, QUESTION_EVENT)
        )

    async def start_reply(
        self, request: RequestRecord, persona: Persona, thread_ts: str, *, resumed: bool = False
    ) -> LiveReply:
        """The reply the answer will finish, recorded with the move to `gathering`: a stream
        where Slack takes one, else a placeholder. A retried or resumed request reuses the
        message an earlier attempt left (stopping its stream first), never starting a second:
        the one it recorded, or, `resumed` after a crash that came before the record, the one
        carrying its id in the thread."""
        channel = request.channel_id
        if request.kind == "direct":
            title = request.question
            await set_title(self._client, channel=channel, thread_ts=thread_ts, title=title)
        stream = None
        ts, streamed = request.reply_ts, request.reply_streamed
        if ts is None and resumed:
            ts = await self._find(request, REPLY_EVENT, self._thread(request, thread_ts))
            streamed = ts is not None  # a stream or not: stopping it is harmless either way
        if ts is not None:
            if streamed:
                await end_stream(self._client, channel=channel, ts=ts)
            await self._update(channel, ts, render_progress(persona=persona))
            await self._store.transition(request.id, "gathering", reply_ts=ts)
        else:
            if self._streaming and request.team_id not in self._no_streaming:
                stream = await self._open_stream(request, persona, thread_ts)
            if stream is not None and stream.ts:
                ts = stream.ts
                await self._store.transition(request.id, "gathering", reply_ts=ts, streamed=True)
            else:
                stream = None
                progress = render_progress(persona=persona)
                reply_of = _posted_for(request, REPLY_EVENT)
                ts = await self._post(channel, thread_ts, progress, persona, reply_of)
                await self._store.transition(request.id, "gathering", reply_ts=ts)
        live = LiveReply(
            client=self._client,
            progress_client=self._progress_client,
            persona=persona,
            channel=channel,
            ts=ts,
            thread_ts=thread_ts,
            stream=stream,
        )
        live.start()
        return live

    async def show_answer(
        self, request: RequestRecord, rendered: RenderedReply, *, live: LiveReply, thread_ts: str
    ) -> None:
        """The answer in place of the reply, and its further messages: those an earlier
        attempt posted are updated, the rest posted and recorded one by one, and any left over
        from a longer answer removed. What no message holds goes in a file, shared once."""
        first, *rest = rendered.messages
        await live.close(first)
        await self._update(request.channel_id, live.ts, first)
        posted = list(request.continuation_ts)
        for index, message in enumerate(rest):
            if index < len(posted):
                await self._update(request.channel_id, posted[index], message)
                continue
            posted.append(await self._post(request.channel_id, thread_ts, message, live.persona))
            await self._store.set_continuation_ts(request.id, posted)
        for stale in posted[len(rest) :]:
            await self._client.chat_delete(channel=request.channel_id, ts=stale)
        if len(posted) > len(rest):
            await self._store.set_continuation_ts(request.id, posted[: len(rest)])
        if rendered.attachment is not None and request.attachment_file_id is None:
            await self._share(request, rendered.attachment, thread_ts)

    async def show_failure(
        self, request: RequestRecord, failure: SlackMessage, *, stream_ended: bool = False
    ) -> None:
        """A failure in place of the reply, or in the thread when there is none yet; a reply
        that was streamed is stopped first, unless this attempt has (`stream_ended`)."""
        current = await self._store.get_request(request.id) or request
        if current.reply_ts:
            if current.reply_streamed and not stream_ended:
                await end_stream(self._client, channel=request.channel_id, ts=current.reply_ts)
            await self._update(request.channel_id, current.reply_ts, failure)
        elif current.thread_ts:
            await self._post(request.channel_id, current.thread_ts, failure)

    async def tell(
        self,
        *,
        channel: str,
        user: str,
        thread_ts: str | None,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """A short ephemeral note to one person (help, the persona list, a typo's suggestion)."""
        await self._client.chat_postEphemeral(
            channel=channel, user=user, thread_ts=thread_ts, text=text, blocks=blocks
        )

    async def tell_by_response_url(self, response_url: str, text: str) -> None:
        """An ephemeral note where the bot cannot post (a channel it is not in)."""
        await AsyncWebhookClient(response_url, session=self._client.session).send(
            text=text, response_type="ephemeral"
        )

    async def _open_stream(
        self, request: RequestRecord, persona: Persona, thread_ts: str
    ) -> AsyncChatStream | None:
        """A stream for the asker, or None where Slack refuses to stream here; where it refuses
        for the whole workspace (`_STREAMING_UNAVAILABLE`), this process asks no more for it.
        A rate limit or a channel the bot cannot post in is raised as it is."""
        try:
            return await open_stream(
                self._client,
                channel=request.channel_id,
                thread_ts=thread_ts,
                recipient_user_id=request.user_id,
                recipient_team_id=request.user_team_id or request.team_id,
                author=author(persona, customize=self._customize),
                metadata=_posted_for(request, REPLY_EVENT),
            )
        except SlackApiError as error:
            code = str(error.response.get("error", ""))
            if code == "ratelimited" or code in MEMBERSHIP_ERRORS:
                raise
            log.warning("reply.streaming_refused", slack_error=code)
            if code in _STREAMING_UNAVAILABLE:
                self._no_streaming.add(request.team_id)
            return None

    async def _find(
        self, request: RequestRecord, event_type: str, messages: _Messages
    ) -> str | None:
        """The `ts` of the message an attempt posted for `request` and then died before
        recording: the one among `messages` whose metadata names it (`_posted_for`). None where
        there is none, or where they cannot be read (a group DM: oi has no `mpim:history`)."""
        wanted = _posted_for(request, event_type)
        try:
            async with contextlib.aclosing(messages):
                async for message in messages:
                    if message.get("metadata") == wanted:
                        return str(message["ts"])
        except SlackApiError as error:
            log.info("reply.history_unread", slack_error=error.response.get("error"))
        return None

    async def _thread(self, request: RequestRecord, thread_ts: str) -> _Messages:
        """The thread's first 200 messages, with their metadata: the reply is among its first."""
        response = await self._client.conversations_replies(
            channel=request.channel_id, ts=thread_ts, include_all_metadata=True, limit=200
        )
        for message in response.get("messages") or []:
            yield message

    async def _recent_messages(self, request: RequestRecord) -> _Messages:
        """The channel's messages since shortly before `request` was stored, newest first,
        with their metadata, page by page, up to `_HISTORY_SEARCHED` of them."""
        oldest = (request.created_at - _CLOCK_SKEW).timestamp()
        response = await self._client.conversations_history(
            channel=request.channel_id,
            oldest=f"{oldest:.6f}",
            include_all_metadata=True,
            limit=200,
        )
        seen = 0
        async for page in response:
            for message in page.get("messages") or []:
                yield message
                seen += 1
            if seen >= _HISTORY_SEARCHED:
                return

    async def _share(self, request: RequestRecord, file: MarkdownFile, thread_ts: str) -> None:
        response = await self._client.files_upload_v2(
            channel=request.channel_id,
            thread_ts=thread_ts,
            content=file.content,
            filename=file.filename,
            title=file.title,
        )
        await self._store.set_attachment(request.id, str(response["file"]["id"]))

    async def _post(
        self,
        channel: str,
        thread_ts: str | None,
        message: SlackMessage,
        persona: Persona | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        identity = author(persona, customize=self._customize) if persona else {}
        response = await self._client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts,
            text=message.text,
            blocks=message.blocks,
            unfurl_links=False,
            unfurl_media=False,
            metadata=metadata,
            **identity,
        )
        return str(response["ts"])

    async def _update(self, channel: str, ts: str, message: SlackMessage) -> None:
        await self._client.chat_update(
            channel=channel, ts=ts, text=message.text, blocks=message.blocks
        )


def _posted_for(request: RequestRecord, event_type: str) -> dict[str, Any]:
    """The metadata a request's message carries, so that it can be found again."""
    return {"event_type": event_type, "event_payload": {"request_id": request.id}}
