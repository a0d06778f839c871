"""The command grammar, one for Slack and the terminal: `<persona> <question>`, `personas`, …"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.core.persona import PersonaRegistry, SourceKind, UnknownPersonaError

# What both front doors understand; each adds its own: the terminal its flags, Slack its channel
# commands (`SLACK_USAGE`), so neither lists what the other alone takes.
COMMON_USAGE = """\
  oi <persona> <question>   ask a persona: oi backend-engineer review the retry design in <PR link>
  oi personas               list the personas
  oi help                   show this help"""

SLACK_USAGE = f"""\
Usage:
{COMMON_USAGE}
In a channel also:
  oi link github <owner/repo>    read this repository for this channel's questions
  oi link linear <TEAM>          read this Linear team's issues for this channel's questions
  oi links                       list this channel's links
  oi unlink github <owner/repo>  (or: oi unlink linear <TEAM>) stop reading it here
  oi default <persona>           the persona that answers this channel's mentions"""

# GitHub's own rules: an owner is letters, digits and single inner hyphens (at most 39); a
# repository letters, digits, `.`, `-` and `_` (at most 100), never `.` or `..`.
REPOSITORY = re.compile(r"^[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}/(?!\.\.?$)[A-Za-z0-9._-]{1,100}$")
LINEAR_TEAM = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,9}$")


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
class Link:
    """Slack only: read a repository (`owner/repo`) or a Linear team (`PAY`) in this channel."""

    kind: SourceKind
    target: str


@dataclass(frozen=True)
class Unlink:
    kind: SourceKind
    target: str


@dataclass(frozen=True)
class ListLinks:
    pass


@dataclass(frozen=True)
class ShowHelp:
    """Usage, with the reason when it answers a malformed command."""

    problem: str | None = None


Command = Ask | ListPersonas | SetDefaultPersona | Link | Unlink | ListLinks | ShowHelp

# "oi backend-engineer review …" typed (or pasted from a card's example) where oi already listens.
_LEADING_OI = re.compile(r"^\s*/?oi\s+(?=\S)", re.IGNORECASE)


def parse_command(
    text: str, personas: PersonaRegistry, *, default_persona: str | None = None
) -> Command:
    """Parse a command's words (a leading `oi` or `/oi`, as the examples in the docs and the
    persona cards are written, is taken off).

    With `default_persona` (an @-mention), the persona name is optional. Raises
    `UnknownPersonaError` for a name that is not a persona, or for a close misspelling of one.
    """
    text = _LEADING_OI.sub("", text, count=1)
    words = text.strip().split(maxsplit=1)
    if not words or words[0].lower() == "help":
        return ShowHelp()
    first, rest = words[0], (words[1] if len(words) > 1 else "")
    if first.lower() == "personas" and not rest:
        return ListPersonas()
    if first.lower() == "default":
        return _set_default(rest.strip(), personas)
    if first.lower() == "links" and not rest:
        return ListLinks()
    if first.lower() in ("link", "unlink"):
        return _link(first.lower(), rest.split())
    if first in personas:
        return _ask(first, rest)
    if default_persona is not None and not personas.suggest(first):
        return _ask(default_persona, text)
    raise UnknownPersonaError(first, personas.suggest(first))


def _set_default(name: str, personas: PersonaRegistry) -> SetDefaultPersona | ShowHelp:
    if not name:
        return ShowHelp(problem="Which persona should answer this channel's mentions?")
    return SetDefaultPersona(persona=personas.get(name).name)


def _link(verb: str, words: list[str]) -> Link | Unlink | ShowHelp:
    kind = words[0].lower() if words else ""
    if len(words) != 2 or kind not in ("github", "linear"):
        return ShowHelp(problem=f"`{verb}` takes `github <owner/repo>` or `linear <TEAM>`.")
    target = words[1]
    if kind == "github" and not REPOSITORY.match(target):
        return ShowHelp(problem=f"'{target}' is not a repository: write it as owner/repo.")
    if kind == "linear" and not LINEAR_TEAM.match(target):
        return ShowHelp(problem=f"'{target}' is not a Linear team key (like PAY).")
    target = target.upper() if kind == "linear" else target
    return Link(kind, target) if verb == "link" else Unlink(kind, target)  # type: ignore[arg-type]


def _ask(persona: str, question: str) -> Ask | ShowHelp:
    question = question.strip()
    if not question:
        return ShowHelp(problem=f"What should {persona} answer? The question is empty.")
    return Ask(persona=persona, question=question)
