"""Buttons: "Try again" on a failure, feedback on an answer, and confirming a link.

A button acts only for the people it belongs to: anyone can see a public channel's messages
without being in it, so feedback counts only from the conversation's members, "Try again" only
for the person who asked (as a new question of theirs, within their quota), and a link's
confirmation only for the admin who asked for it. Everyone else gets an ephemeral note.
"""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.slack.admission import too_often
from bot.slack.conversation_commands import Channel, link_source
from bot.slack.render import (
    CONFIRM_LINK_ACTION,
    FEEDBACK_ACTION,
    FEEDBACK_DOWN_ACTION,
    FEEDBACK_UP_ACTION,
    RETRY_ACTION,
    feedback_vote,
)
from bot.slack.services import SlackServices
from bot.store import LinkRecord, RateLimited, Vote

NOT_A_MEMBER = "Only people in this conversation can use its buttons."


def register(app: AsyncApp, services: SlackServices) -> None:
    @app.action(RETRY_ACTION)
    async def on_retry(
        ack: AsyncAck, action: dict[str, Any], body: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        request = await services.store.get_request(action["value"])
        if request is None:
            return
        user = body["user"]["id"]
        if user != request.user_id:
            await _tell(respond, f"Only <@{request.user_id}> can retry their question.")
            return
        if not await _in_conversation(services, body, request.channel_id):
            await _tell(respond, NOT_A_MEMBER)
            return
        try:
            reopened = await services.store.reopen_failed(
                request.id, quota=services.question_limits.quota
            )
        except RateLimited as limited:
            await _tell(respond, too_often(limited, services.question_limits))
            return
        if reopened is not None:
            services.tasks.spawn(services.responder.answer(reopened), name=f"retry-{request.id}")

    @app.action(FEEDBACK_ACTION)
    @app.action(FEEDBACK_UP_ACTION)
    @app.action(FEEDBACK_DOWN_ACTION)
    async def on_feedback(
        ack: AsyncAck, action: dict[str, Any], body: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        voted = _vote(action)
        if voted is None:
            return
        vote, request_id = voted
        request = await services.store.get_request(request_id)
        if request is None:
            return
        if not await _in_conversation(services, body, request.channel_id):
            await _tell(respond, NOT_A_MEMBER)
            return
        await services.store.record_feedback(request.id, body["user"]["id"], vote)
        services.metrics.feedback.labels(vote).inc()

    @app.action(CONFIRM_LINK_ACTION)
    async def on_confirm_link(
        ack: AsyncAck, action: dict[str, Any], body: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        asked = json.loads(action["value"])
        user = body["user"]["id"]
        if user != asked["user"] or body["channel"]["id"] != asked["channel"]:
            asker = asked["user"]
            await _tell(respond, f"Only <@{asker}>, who asked for this link, can confirm it.")
            return
        clicker = await services.directory.person(user, team_id=body["user"].get("team_id"))
        refused = services.access.why_not_link(clicker)
        if refused:
            await _tell(respond, refused)
            return
        channel = Channel(team_id=asked["team"], channel_id=asked["channel"], user_id=user)

        async def replace(text: str, *, blocks: list[dict[str, Any]] | None = None) -> None:
            await respond(text=text, blocks=blocks, replace_original=True)

        link = LinkRecord(kind=asked["kind"], target=asked["target"])
        await link_source(services, channel, link, replace, confirmed=True)


def _vote(action: dict[str, Any]) -> tuple[Vote, str] | None:
    """The vote a click casts and the request it is for: Slack's feedback buttons name both in
    the clicked button's value; the thumbs buttons of older answers, the vote in their action."""
    if action["action_id"] == FEEDBACK_ACTION:
        return feedback_vote(str(action.get("value", "")))
    return ("up" if action["action_id"] == FEEDBACK_UP_ACTION else "down"), action["value"]


async def _in_conversation(services: SlackServices, body: dict[str, Any], channel_id: str) -> bool:
    """Whether the click came from the request's own conversation, by one of its members."""
    if (body.get("channel") or {}).get("id") != channel_id:
        return False
    return await services.directory.is_member(channel_id, body["user"]["id"])


async def _tell(respond: AsyncRespond, text: str) -> None:
    """An ephemeral note to the person who clicked; the message clicked stays as it is."""
    await respond(text=text, response_type="ephemeral", replace_original=False)
