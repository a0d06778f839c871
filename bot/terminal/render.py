"""A Reply rendered for a terminal with rich: headed sections, bullets, next actions as a table;
for a pipe or a file, the same sections as plain lines (`plain_reply`). While it is answered, its
steps (`step_line`) and the answer so far (`draft_view`), laid out as the final rendering will be.

Model and source text is wrapped in `Text` objects, so markup-like strings (`[link=…]`) print
literally, and its control characters are shown as symbols (`_text`), so none reaches the terminal:
no escape sequence can move the cursor, rewrite what was printed or hide a hyperlink (OSC 8).
URLs print as the plain text they are; rich makes no link of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from bot.core.answer import Answer, NextAction, Reply
from bot.core.persona import Persona
from bot.core.progress import Draft, Step, StepState

# C0 and C1 control characters but newline and tab, and the bidirectional overrides that reorder
# what a line shows.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# A step's mark and its style, but while it is taken: then a spinner turns.
_MARKS: dict[StepState, tuple[str, str]] = {
    "pending": ("·", "dim"),
    "complete": ("✓", "green"),
    "error": ("✗", "red"),
}


def render_reply(console: Console, *, persona: Persona, reply: Reply) -> None:
    console.print(_title(persona))
    for section in _sections(_Written.of_answer(reply.answer)):
        console.print(section)
    if reply.citations:
        sources = [f"{citation.title}: {citation.url}" for citation in reply.citations]
        console.print(_section("Sources", _bullets(sources)))
    console.print(_text(_footer(reply), style="dim"))


def draft_view(*, persona: Persona, draft: Draft) -> RenderableType:
    """The answer as far as the model has written it, in `render_reply`'s sections: those it
    has begun, the last perhaps cut short."""
    return Group(_title(persona), *_sections(_Written.of_draft(draft)))


def step_line(step: Step, *, working: Text) -> Text:
    """A step as one line: `working` (a spinner's frame) while it is taken, ✓ once done,
    ✗ and why when it failed. Its words may quote the question, so they are shown as text."""
    mark = working if step.state == "in_progress" else Text(*_MARKS[step.state])
    line = Text.assemble(mark, " ")
    if step.detail.startswith(step.title):  # a source not read: its line says it all
        return line.append_text(_text(step.detail))
    line.append_text(_text(step.title))
    if step.detail:
        line.append_text(_text(f" — {step.detail}", style="dim"))
    return line


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


@dataclass(frozen=True)
class _Written:
    """An answer's sections as far as they are written; None for one not begun."""

    summary: str | None = None
    recommendation: str | None = None
    rationale: list[str] | None = None
    risks: list[str] | None = None
    next_actions: list[NextAction] | None = None
    missing_context: list[str] | None = None

    @classmethod
    def of_answer(cls, answer: Answer) -> _Written:
        return cls(
            summary=answer.summary,
            recommendation=answer.recommendation,
            rationale=answer.rationale,
            risks=answer.risks,
            next_actions=answer.next_actions,
            missing_context=answer.missing_context,
        )

    @classmethod
    def of_draft(cls, draft: Draft) -> _Written:
        """What of a draft can be shown: a value of the wrong shape is left out, and so is the
        last one while it is still empty (a list just opened is not yet "(none)")."""
        begun = dict(draft)
        last = next(reversed(begun), None)
        if last is not None and not begun[last]:
            del begun[last]
        return cls(
            summary=_draft_string(begun.get("summary")),
            recommendation=_draft_string(begun.get("recommendation")),
            rationale=_draft_strings(begun.get("rationale")),
            risks=_draft_strings(begun.get("risks")),
            next_actions=_draft_actions(begun.get("nextActions")),
            missing_context=_draft_strings(begun.get("missingContext")),
        )


def _draft_string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _draft_strings(value: object) -> list[str] | None:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else None


def _draft_actions(value: object) -> list[NextAction] | None:
    """The next actions begun so far: those whose title has begun, their fields as written."""
    if not isinstance(value, list):
        return None
    return [
        NextAction(
            title=title,
            owner=_draft_string(item.get("owner")) or "",
            outcome=_draft_string(item.get("outcome")) or "",
        )
        for item in value
        if isinstance(item, Mapping) and (title := _draft_string(item.get("title")))
    ]


def _title(persona: Persona) -> Rule:
    return Rule(Text(persona.title, style="bold"), align="left")


def _sections(written: _Written) -> Iterator[Group]:
    """The answer's sections in the card's order, those written so far."""
    if written.summary is not None:
        yield _section("Summary", _text(written.summary))
    if written.recommendation is not None:
        recommendation = _text(written.recommendation, style="bold")
        yield _section("Recommendation", Panel(recommendation, border_style="green", expand=False))
    if written.rationale is not None:
        yield _section("Rationale", _bullets(written.rationale))
    if written.risks is not None:
        yield _section("Risks", _bullets(written.risks))
    if written.next_actions is not None:
        yield _section("Next actions", _next_actions_table(written.next_actions))
    if written.missing_context is not None:
        yield _section("Missing context", _bullets(written.missing_context))


def _section(title: str, body: RenderableType) -> Group:
    return Group(Text(title, style="bold underline"), Padding(body, (0, 0, 1, 2)))


def _bullets(items: list[str]) -> RenderableType:
    if not items:
        return Text("(none)", style="dim")
    return Group(*(_text(f"• {item}") for item in items))


def _next_actions_table(actions: list[NextAction]) -> RenderableType:
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
