"""The command grammar in a Slack conversation: a question to answer, or a command answered
at once (`/oi link`, `/oi default`, …), as `bot.core.commands` parses it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bot.context.models import SourceError
from bot.core.commands import (
    Command,
    Link,
    ListLinks,
    ListPersonas,
    SetDefaultPersona,
    ShowHelp,
    Unlink,
    parse_command,
)
from bot.core.persona import UnknownPersonaError
from bot.slack.inert import escape
from bot.slack.render import (
    render_link_confirmation,
    render_links,
    render_personas,
    render_unknown_persona,
    render_usage,
)
from bot.slack.services import SlackServices
from bot.store import LinkRecord


class ReplyLater(Protocol):
    """Tells the person who typed a command something, later: text, or Block Kit with it."""

    async def __call__(self, text: str, *, blocks: list[dict[str, Any]] | None = None) -> Any: ...


@dataclass(frozen=True)
class Channel:
    """Where a command was typed, and by whom."""

    team_id: str
    channel_id: str
    user_id: str
    user_team_id: str | None = None  # the person's own team, where Slack's payload names it


async def parse_in_channel(
    text: str, services: SlackServices, *, channel: Channel, persona_optional: bool
) -> Command | str:
    """The command, or (for a mistyped persona) the reply that says so; changes nothing.

    A mention may leave the persona out (`persona_optional`): the channel's default answers,
    else `OI_DEFAULT_PERSONA`. A slash command must name one.
    """
    default = None
    if persona_optional:
        chosen = await services.store.channel_persona(channel.team_id, channel.channel_id)
        default = chosen if chosen in services.personas else services.default_persona
    try:
        return parse_command(text, services.personas, default_persona=default)
    except UnknownPersonaError as error:
        return render_unknown_persona(error)


async def run_command(
    command: Command, services: SlackServices, *, channel: Channel, reply_later: ReplyLater
) -> str:
    """Carry out a command that is not a question, and return what to tell the person.

    Checking a new link reads GitHub or Linear, which may be slow, so its verdict comes later
    through `reply_later`.
    """
    if isinstance(command, ListPersonas):
        return render_personas(services.personas.all())
    if isinstance(command, SetDefaultPersona | Link | Unlink):
        person = await services.directory.person(channel.user_id, team_id=channel.user_team_id)
        refused = services.access.why_not_link(person)
        if refused:
            return refused
    if isinstance(command, SetDefaultPersona):
        await services.store.set_channel_persona(
            channel.team_id, channel.channel_id, command.persona
        )
        title = services.personas.get(command.persona).title
        return f"*{escape(title)}* now answers mentions in this channel that name no persona."
    if isinstance(command, Link):
        link = LinkRecord(kind=command.kind, target=command.target)
        services.tasks.spawn(
            link_source(services, channel, link, reply_later), name=f"link-{command.target}"
        )
        return f"Checking that I can read {command.kind} {escape(command.target)}…"
    if isinstance(command, Unlink):
        link = LinkRecord(kind=command.kind, target=command.target)
        removed = await services.store.remove_link(channel.team_id, channel.channel_id, link)
        target = escape(command.target)
        return f"Unlinked {target}." if removed else f"{target} was not linked in this channel."
    if isinstance(command, ListLinks):
        return render_links(await services.store.links(channel.team_id, channel.channel_id))
    if isinstance(command, ShowHelp):
        return render_usage(command.problem)
    raise TypeError(f"not a command to run: {command!r}")


async def link_source(
    services: SlackServices,
    channel: Channel,
    link: LinkRecord,
    reply: ReplyLater,
    *,
    confirmed: bool = False,
) -> None:
    """Link only what exists, is allowed, and the token can read; say why not otherwise.

    Private content (a private repository, any Linear team) becomes visible to everyone who
    can read a public channel, so linking it there waits for the asker's `confirmed` click.
    """
    target = escape(link.target)
    try:
        private = await services.gatherer.check_link(link.kind, link.target)
    except SourceError as error:
        await reply(f"Not linked: {escape(str(error))}")
        return
    conversation = await services.directory.conversation(channel.channel_id)
    if private and conversation.is_public and not confirmed:
        message = render_link_confirmation(
            link=link, team_id=channel.team_id, user_id=channel.user_id, conversation=conversation
        )
        await reply(message.text, blocks=message.blocks)
        return
    added = await services.store.add_link(
        channel.team_id, channel.channel_id, link, linked_by=channel.user_id
    )
    if added:
        await reply(f"Linked {link.kind} {target}: questions in this channel will read it.")
    else:
        await reply(f"{target} was already linked in this channel.")
