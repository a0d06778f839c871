"""`/oi …`: help and the persona list answer at once (ephemeral); a question is acked, then answered."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.core.commands import Ask, ListPersonas, parse_command
from bot.core.persona import UnknownPersonaError
from bot.slack.incoming import question_text
from bot.slack.render import render_personas, render_unknown_persona, render_usage
from bot.slack.services import SlackServices
from bot.store import NewRequest


def register(app: AsyncApp, services: SlackServices) -> None:
    @app.command("/oi")
    async def on_oi_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        text = question_text(command.get("text", ""), bot_user_id=services.bot_user_id)
        try:
            parsed = parse_command(text, services.personas)
        except UnknownPersonaError as error:
            await ack(text=render_unknown_persona(error))
            return
        if isinstance(parsed, ListPersonas):
            await ack(text=render_personas(services.personas.all()))
            return
        if not isinstance(parsed, Ask):
            await ack(text=render_usage(parsed.problem))
            return
        request = await services.store.claim_request(
            NewRequest(
                claim_key=f"command:{command['trigger_id']}",
                kind="command",
                team_id=command["team_id"],
                channel_id=command["channel_id"],
                user_id=command["user_id"],
                thread_ts=None,
                persona=parsed.persona,
                question=parsed.question,
            )
        )
        await ack()
        if request is not None:
            services.tasks.spawn(
                services.responder.answer(request, response_url=command.get("response_url")),
                name=f"request-{request.id}",
            )
