"""Mentions, DMs and thread replies: one handler, so the same message arriving as both
`app_mention` and `message` (or retried by Slack) is claimed, and answered, once."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.core.commands import Ask, Command
from bot.slack.conversation_commands import Channel, parse_in_channel, run_command
from bot.slack.incoming import mentions, question_text
from bot.slack.intake import take_question
from bot.slack.services import SlackServices
from bot.store import NewRequest, RequestKind

# Message subtypes a person writes; edits, deletions, joins and bot posts are not questions.
_HUMAN_SUBTYPES = {None, "thread_broadcast", "file_share"}


def register(app: AsyncApp, services: SlackServices) -> None:
    @app.event("app_mention")
    async def on_app_mention(event: dict[str, Any], body: dict[str, Any]) -> None:
        await _handle(services, event, team_id=body["team_id"], mentioned=True)

    @app.event("message")
    async def on_message(event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("subtype") not in _HUMAN_SUBTYPES or event.get("bot_id"):
            return
        mentioned = mentions(event.get("text", ""), user_id=services.bot_user_id)
        await _handle(services, event, team_id=body["team_id"], mentioned=mentioned)


async def _handle(
    services: SlackServices, event: dict[str, Any], *, team_id: str, mentioned: bool
) -> None:
    user, channel, ts = event.get("user"), event["channel"], event["ts"]
    if not user or user == services.bot_user_id:
        return
    thread_ts = event.get("thread_ts")
    claim_key = f"message:{channel}:{ts}"
    text = question_text(event.get("text", ""), bot_user_id=services.bot_user_id)
    thread = await services.store.find_thread(team_id, channel, thread_ts) if thread_ts else None
    where = Channel(
        team_id=team_id, channel_id=channel, user_id=user, user_team_id=event.get("user_team")
    )
    kind: RequestKind
    if thread is not None:
        persona, question, kind = thread.persona, text, "follow_up"
    elif mentioned or event.get("channel_type") == "im":
        parsed = await parse_in_channel(text, services, channel=where, persona_optional=True)
        if not isinstance(parsed, Ask):
            await _command_once(services, event, claim_key, where, parsed)
            return
        persona, question = parsed.persona, parsed.question
        kind = "direct" if event.get("channel_type") == "im" else "mention"
    else:
        return
    if not question:
        return
    new = NewRequest(
        claim_key=claim_key,
        kind=kind,
        team_id=team_id,
        channel_id=channel,
        user_id=user,
        thread_ts=thread_ts or ts,
        persona=persona,
        question=question,
        user_team_id=where.user_team_id,
    )

    async def refuse(reason: str) -> None:
        await _command_once(services, event, claim_key, where, reason)

    await take_question(services, new, refuse=refuse)


async def _command_once(
    services: SlackServices,
    event: dict[str, Any],
    claim_key: str,
    where: Channel,
    command: Command | str,
) -> None:
    """Run a command given in a message once, however often the message is delivered, and
    answer it with an ephemeral reply to its author."""
    if not await services.store.claim(claim_key):
        return

    async def tell(text: str, *, blocks: list[dict[str, Any]] | None = None) -> None:
        await _tell(services, event, text, blocks=blocks)

    if not isinstance(command, str):
        command = await run_command(command, services, channel=where, reply_later=tell)
    await tell(command)


async def _tell(
    services: SlackServices,
    event: dict[str, Any],
    text: str,
    *,
    blocks: list[dict[str, Any]] | None = None,
) -> None:
    """An ephemeral reply to a message's author, in the message's thread."""
    await services.messages.tell(
        channel=event["channel"],
        user=event["user"],
        thread_ts=event.get("thread_ts") or event["ts"],
        text=text,
        blocks=blocks,
    )
