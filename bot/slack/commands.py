"""The command grammar in a Slack channel: a question to answer, or a command answered at once."""

from __future__ import annotations

from bot.core.commands import Ask, ListPersonas, SetDefaultPersona, parse_command
from bot.core.persona import UnknownPersonaError
from bot.slack.render import (
    escape,
    render_personas,
    render_unknown_persona,
    render_usage,
)
from bot.slack.services import SlackServices


async def interpret(
    text: str, services: SlackServices, *, team_id: str, channel_id: str, persona_optional: bool
) -> Ask | str:
    """The question to answer, or the reply to help, personas, default, or a mistyped persona.

    A mention may leave the persona out (`persona_optional`): the channel's default answers,
    else `OI_DEFAULT_PERSONA`. A slash command must name one.
    """
    default = None
    if persona_optional:
        chosen = await services.store.channel_persona(team_id, channel_id)
        default = chosen if chosen in services.personas else services.default_persona
    try:
        command = parse_command(text, services.personas, default_persona=default)
    except UnknownPersonaError as error:
        return render_unknown_persona(error)
    if isinstance(command, Ask):
        return command
    if isinstance(command, ListPersonas):
        return render_personas(services.personas.all())
    if isinstance(command, SetDefaultPersona):
        await services.store.set_channel_persona(team_id, channel_id, command.persona)
        title = services.personas.get(command.persona).title
        return f"*{escape(title)}* now answers mentions in this channel that name no persona."
    return render_usage(command.problem)
