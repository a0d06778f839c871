"""A Reply rendered for a terminal with rich: headed sections, bullets, next actions as a table;
for a pipe or a file, the same sections as plain lines (`plain_reply`).

Model and source text is wrapped in `Text` objects, so markup-like strings (`[link=…]`) print
literally, and its control characters are shown as symbols (`_text`), so none reaches the terminal:
no escape sequence can move the cursor, rewrite what was printed or hide a hyperlink (OSC 8).
URLs print as the plain text they are; rich makes no link of them.
"""

from __future__ import annotations

import re

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from bot.core.answer import Reply
from bot.core.persona import Persona

# C0 and C1 control characters but newline and tab, and the bidirectional overrides that reorder
# what a line shows.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def render_reply(console: Console, *, persona: Persona, reply: Reply) -> None:
    answer = reply.answer
    console.print(Rule(Text(persona.title, style="bold"), align="left"))
    console.print(_section("Summary", _text(answer.summary)))
    console.print(
        _section(
            "Recommendation",
            Panel(_text(answer.recommendation, style="bold"), border_style="green", expand=False),
        )
    )
    console.print(_section("Rationale", _bullets(answer.rationale)))
    console.print(_section("Risks", _bullets(answer.risks)))
    console.print(_section("Next actions", _next_actions_table(reply)))
    console.print(_section("Missing context", _bullets(answer.missing_context)))
    if reply.citations:
        sources = [f"{citation.title}: {citation.url}" for citation in reply.citations]
        console.print(_section("Sources", _bullets(sources)))
    console.print(_text(_footer(reply), style="dim"))


def plain_reply(*, persona: Persona, reply: Reply) -> str:
    """The reply for a pipe or a file: the same sections as plain lines, without box drawing,
    styles or padding to a width; control characters shown as symbols, as on a terminal."""
    answer = reply.answer
    actions = [
        f"{action.title} (owner: {action.owner}; outcome: {action.outcome})"
        for action in answer.next_actions
    ]
    sections = [
        ("Summary", [answer.summary], ""),
        ("Recommendation", [answer.recommendation], ""),
        ("Rationale", answer.rationale, "• "),
        ("Risks", answer.risks, "• "),
        ("Next actions", actions, "• "),
        ("Missing context", answer.missing_context, "• "),
    ]
    if reply.citations:
        sources = [f"{citation.title}: {citation.url}" for citation in reply.citations]
        sections.append(("Sources", sources, "• "))
    lines = [persona.title, ""]
    for title, items, bullet in sections:
        lines.append(title)
        lines += [f"  {bullet}{_plain(item)}" for item in items] or ["  (none)"]
        lines.append("")
    lines.append(_footer(reply))
    return "\n".join(lines)


def render_personas(console: Console, personas: list[Persona]) -> None:
    for persona in personas:
        line = Text()
        line.append(persona.name, style="bold")
        line.append(f"  {persona.description}")
        console.print(line, soft_wrap=True)


def _section(title: str, body: RenderableType) -> Group:
    return Group(Text(title, style="bold underline"), Padding(body, (0, 0, 1, 2)))


def _bullets(items: list[str]) -> RenderableType:
    if not items:
        return Text("(none)", style="dim")
    return Group(*(_text(f"• {item}") for item in items))


def _next_actions_table(reply: Reply) -> RenderableType:
    actions = reply.answer.next_actions
    if not actions:
        return Text("(none)", style="dim")
    table = Table(show_header=True, header_style="bold", show_lines=True)
    table.add_column("Action", ratio=3)
    table.add_column("Owner", ratio=1)
    table.add_column("Outcome", ratio=3)
    for action in actions:
        table.add_row(_text(action.title), _text(action.owner), _text(action.outcome))
    return table


def _text(text: str, style: str = "") -> Text:
    """Untrusted text as rich shows it literally, its control characters as visible symbols."""
    return Text(_CONTROL.sub(_control_picture, text), style=style)


def _plain(text: str) -> str:
    """Untrusted text for a plain line: control characters as symbols, and lines after the
    first indented, so an item's continuation stays under it."""
    return _CONTROL.sub(_control_picture, text).replace("\n", "\n    ")


def _control_picture(control: re.Match[str]) -> str:
    """␛ for ESC and its kin (U+2400 onwards), ␡ for DEL, � for C1 controls; overrides vanish."""
    code = ord(control[0])
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return "\ufffd" if code <= 0x9F else ""


def _footer(reply: Reply) -> str:
    usage = reply.usage
    return (
        f"{reply.model} · {usage.total_tokens} tokens "
        f"({usage.prompt_tokens} in, {usage.completion_tokens} out) · {reply.latency_seconds:.1f}s"
    )
