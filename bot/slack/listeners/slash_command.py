"""`/oi …`: commands answered at once, to the caller only; questions acked, then answered."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.core.commands import Ask
from bot.slack.conversation_commands import Channel, parse_in_channel, run_command
from bot.slack.incoming import question_text
from bot.slack.intake import take_question
from bot.slack.services import SlackServices
from bot.store import NewRequest


def register(app: AsyncApp, services: SlackServices) -> None:
    @app.command("/oi")
    async def on_oi_command(ack: AsyncAck, respond: AsyncRespond, command: dict[str, Any]) -> None:
        channel = Channel(
            team_id=command["team_id"], channel_id=command["channel_id"], user_id=command["user_id"]
        )
        text = question_text(command.get("text", ""), bot_user_id=services.bot_user_id)
        parsed = await parse_in_channel(text, services, channel=channel, persona_optional=False)
        if isinstance(parsed, str):
            await ack(text=parsed)
            return
        if not isinstance(parsed, Ask):
            await ack(
                text=await run_command(parsed, services, channel=channel, reply_later=respond)
            )
            return
        async def refuse(reason: str) -> None:
            await ack(text=reason)

        question = NewRequest(
            claim_key=f"command:{command['trigger_id']}",
            kind="command",
            team_id=channel.team_id,
            channel_id=channel.channel_id,
            user_id=channel.user_id,
            thread_ts=None,
            persona=parsed.persona,
            question=parsed.question,
        )
        if await take_question(
            services, question, refuse=refuse, response_url=command.get("response_url")
        ):
            await ack()
