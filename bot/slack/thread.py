"""What a request shows in its Slack thread, each message recorded as it is posted.

A slash command's question is posted to the channel (it leaves no message to thread under), a
placeholder shows at once that the persona is on it, and the answer replaces the placeholder,
continued in further messages when it is long; a failure replaces it too. Every `ts` is stored
as soon as Slack gives it, so a resumed request updates what an earlier attempt posted instead
of posting it again.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core.persona import Persona
from bot.slack.render import SlackMessage, render_progress, render_question
from bot.store import RequestRecord, Store


class ThreadMessages:
    """Posts, updates and removes a request's messages, and keeps the store's record of them."""

    def __init__(self, *, client: AsyncWebClient, store: Store) -> None:
        self._client = client
        self._store = store

    async def post_question(self, request: RequestRecord, persona: Persona) -> str:
        """A slash command's question, posted to the channel so the answer can thread under it;
        the new thread's `ts`."""
        message = render_question(
            user_id=request.user_id, persona=persona, question=request.question
        )
        return await self._post(request.channel_id, None, message)

    async def show_progress(self, request: RequestRecord, persona: Persona, thread_ts: str) -> str:
        """The placeholder the answer replaces (a retried or resumed request reuses its own),
        recorded with the move to `gathering`; its `ts`."""
        progress = render_progress(persona=persona)
        if request.reply_ts:
            await self._update(request.channel_id, request.reply_ts, progress)
            await self._store.transition(request.id, "gathering")
            return request.reply_ts
        reply_ts = await self._post(request.channel_id, thread_ts, progress)
        await self._store.transition(request.id, "gathering", reply_ts=reply_ts)
        return reply_ts

    async def show_answer(
        self, request: RequestRecord, messages: list[SlackMessage], *, reply_ts: str, thread_ts: str
    ) -> None:
        """The answer in place of the placeholder, and its further messages: those an earlier
        attempt posted are updated, the rest posted and recorded one by one, and any left over
        from a longer answer removed."""
        first, *rest = messages
        await self._update(request.channel_id, reply_ts, first)
        posted = list(request.continuation_ts)
        for index, message in enumerate(rest):
            if index < len(posted):
                await self._update(request.channel_id, posted[index], message)
                continue
            posted.append(await self._post(request.channel_id, thread_ts, message))
            await self._store.set_continuation_ts(request.id, posted)
        for stale in posted[len(rest) :]:
            await self._client.chat_delete(channel=request.channel_id, ts=stale)
        if len(posted) > len(rest):
            await self._store.set_continuation_ts(request.id, posted[: len(rest)])

    async def show_failure(self, request: RequestRecord, failure: SlackMessage) -> None:
        """A failure in place of the placeholder, or in the thread when there is none yet."""
        current = await self._store.get_request(request.id) or request
        if current.reply_ts:
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
