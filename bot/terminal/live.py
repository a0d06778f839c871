"""The answer's progress shown live on a terminal: each step as a line with its state, then the
answer as the model writes it, redrawn in place by rich's `Live`.

The engine and the readers report on the event loop; `Live` draws from its own thread, a few
times a second, however often they report. So a report only replaces what is shown (a new
dict, never one changed while the drawing thread reads it), and drawing reads it.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import cast

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.segment import Segment
from rich.spinner import Spinner
from rich.text import Text

from bot.core.persona import Persona
from bot.core.progress import Draft, Step
from bot.terminal.render import draft_view, step_line

# Enough for a spinner to turn smoothly and text to flow; no more, as each frame redraws it all.
_REFRESH_PER_SECOND = 8


class LiveProgress:
    """A `Progress` that a terminal shows as it goes; a renderable of what it shows now.

    Use it as a context manager around the answer: on the way out the draft gives way, the steps
    stay (how each went), and the caller prints the finished answer below them as usual.
    """

    shows_drafts = True  # the sections appear as the model writes them

    def __init__(self, console: Console, *, persona: Persona) -> None:
        self._persona = persona
        self._steps: dict[str, Step] = {}
        self._draft: Draft | None = None
        self._spinner = Spinner("dots", style="cyan")
        # Log lines (`oi -v`) on this same terminal print above the display; stderr elsewhere (a
        # file, another terminal) is left alone.
        self._live = Live(
            self,
            console=console,
            refresh_per_second=_REFRESH_PER_SECOND,
            redirect_stderr=_is_stderr(console),
        )

    def __enter__(self) -> LiveProgress:
        self._live.start(refresh=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._draft = None
        self._live.stop()

    async def step(self, step: Step) -> None:
        self._steps = {**self._steps, step.id: step}

    async def draft(self, draft: Draft) -> None:
        self._draft = draft

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The steps, then the draft; when that outgrows the screen, its last lines, where the
        answer grows (rich would keep the first and cut the rest)."""
        steps, draft = self._steps, self._draft
        # A spinner with no text of its own renders its current frame alone: a Text.
        working = cast(Text, self._spinner.render(console.get_time()))
        shown = Group(*(step_line(step, working=working) for step in steps.values()))
        if draft is not None:
            shown = Group(shown, draft_view(persona=self._persona, draft=draft))
        lines = console.render_lines(shown, options, pad=False)
        for line in lines[-max(options.size.height - 1, 1) :]:
            yield from line
            yield Segment.line()


def _is_stderr(console: Console) -> bool:
    """Whether standard error is the very terminal `console` draws on."""
    try:
        return os.ttyname(console.file.fileno()) == os.ttyname(sys.stderr.fileno())
    except (OSError, ValueError):  # not a terminal, or not a file at all
        return False
