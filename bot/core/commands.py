"""The command grammar, one for Slack and the terminal: `<persona> <question>`, `personas`, …"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.persona import PersonaRegistry, UnknownPersonaError

USAGE = """\
Usage:
  oi <persona> <question>   ask a persona: oi backend-engineer review the retry design in <PR link>
  oi personas               list the personas
  oi default <persona>      in Slack: the persona that answers this channel's mentions
  oi help                   show this help"""


@dataclass(frozen=True)
class Ask:
    persona: str
    question: str


@dataclass(frozen=True)
class ListPersonas:
    pass


@dataclass(frozen=True)
class SetDefaultPersona:
    """Slack only: the persona that answers a channel's mentions that name none."""

    persona: str


@dataclass(frozen=True)
class ShowHelp:
    """Usage, with the reason when it answers a malformed command."""

    problem: str | None = None


Command = Ask | ListPersonas | SetDefaultPersona | ShowHelp


def parse_command(
    text: str, personas: PersonaRegistry, *, default_persona: str | None = None
) -> Command:
    """Parse a command's words (without the leading `oi`).

    With `default_persona` (an @-mention), the persona name is optional. Raises
    `UnknownPersonaError` for a name that is not a persona, or for a close misspelling of one.
    """
    words = text.strip().split(maxsplit=1)
    if not words or words[0].lower() == "help":
        return ShowHelp()
    first, rest = words[0], (words[1] if len(words) > 1 else "")
    if first.lower() == "personas" and not rest:
        return ListPersonas()
    if first.lower() == "default":
        return _set_default(rest.strip(), personas)
    if first in personas:
        return _ask(first, rest)
    if default_persona is not None and not personas.suggest(first):
        return _ask(default_persona, text)
    raise UnknownPersonaError(first, personas.suggest(first))


def _set_default(name: str, personas: PersonaRegistry) -> SetDefaultPersona | ShowHelp:
    if not name:
        return ShowHelp(problem="Which persona should answer this channel's mentions?")
    return SetDefaultPersona(persona=personas.get(name).name)


def _ask(persona: str, question: str) -> Ask | ShowHelp:
    question = question.strip()
    if not question:
        return ShowHelp(problem=f"What should {persona} answer? The question is empty.")
    return Ask(persona=persona, question=question)
