"""A Reply rendered for a terminal with rich: headed sections, bullets, next actions as a table.

Model text is wrapped in `Text` objects, so markup-like strings from a model print literally.
"""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from bot.core.answer import Reply
from bot.core.persona import Persona


def render_reply(console: Console, *, persona: Persona, reply: Reply) -> None:
    answer = reply.answer
    console.print(Rule(Text(persona.title, style="bold"), align="left"))
    console.print(_section("Summary", Text(answer.summary)))
    console.print(
        _section(
            "Recommendation",
            Panel(Text(answer.recommendation, style="bold"), border_style="green", expand=False),
        )
    )
    console.print(_section("Rationale", _bullets(answer.rationale)))
    console.print(_section("Risks", _bullets(answer.risks)))
    console.print(_section("Next actions", _next_actions_table(reply)))
    console.print(_section("Missing context", _bullets(answer.missing_context)))
    if reply.citations:
        sources = [f"{citation.title}: {citation.url}" for citation in reply.citations]
        console.print(_section("Sources", _bullets(sources)))
    console.print(Text(_footer(reply), style="dim"))


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
    return Group(*(Text(f"• {item}") for item in items))


def _next_actions_table(reply: Reply) -> RenderableType:
    actions = reply.answer.next_actions
    if not actions:
        return Text("(none)", style="dim")
    table = Table(show_header=True, header_style="bold", show_lines=True)
    table.add_column("Action", ratio=3)
    table.add_column("Owner", ratio=1)
    table.add_column("Outcome", ratio=3)
    for action in actions:
        table.add_row(Text(action.title), Text(action.owner), Text(action.outcome))
    return table


def _footer(reply: Reply) -> str:
    usage = reply.usage
    return (
        f"{reply.model} · {usage.total_tokens} tokens "
        f"({usage.prompt_tokens} in, {usage.completion_tokens} out) · {reply.latency_seconds:.1f}s"
    )
