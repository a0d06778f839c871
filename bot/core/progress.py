"""What a front door is told while a question is answered: each step taken, the answer so far.

Slack shows the steps as tasks in a streamed message and the answer as it is written; the
terminal shows them live; a caller that wants neither passes `SILENT`. The core and the context
readers only report; how (and how often) it is shown is the front door's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# Slack's task states (chat.appendStream's task_update chunk), which the terminal shows too.
StepState = Literal["pending", "in_progress", "complete", "error"]

WRITING_STEP_ID = "answer"


@dataclass(frozen=True)
class Step:
    """One step, reported again under the same `id` each time its state changes.

    `title` says what is done ("Reading acme/payments#42"), `detail` how it went ("done",
    "not linked to this channel"), `url` where the source is (made by the bot, never the model).
    """

    id: str
    title: str
    state: StepState
    detail: str = ""
    url: str | None = None


# The answer as far as the model has written it: the Answer's wire names (camelCase) in the
# schema's order, the last one perhaps unfinished (a string cut short, a list still growing).
Draft = Mapping[str, Any]


class Progress(Protocol):
    """Told of each step and, where it `shows_drafts`, of each longer draft (the model is asked
    to stream only then); must not raise for the answer's sake."""

    @property
    def shows_drafts(self) -> bool: ...

    async def step(self, step: Step) -> None: ...

    async def draft(self, draft: Draft) -> None: ...


class _Silent:
    shows_drafts = False

    async def step(self, step: Step) -> None:
        return None

    async def draft(self, draft: Draft) -> None:
        return None


SILENT: Progress = _Silent()


def writing_step(state: StepState, detail: str = "") -> Step:
    """The last step of every answer: the model writing it."""
    return Step(id=WRITING_STEP_ID, title="Writing the answer", state=state, detail=detail)
