"""What the engine gets besides the persona and the question: earlier turns and fetched context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from pydantic import BaseModel, ConfigDict

from bot.core.answer import Answer, Citation


class Turn(BaseModel):
    """One earlier question in the same conversation and the answer it got."""

    model_config = ConfigDict(frozen=True)

    question: str
    answer: Answer


def estimate_tokens(text: str) -> int:
    """About four characters a token: close enough to budget a prompt without a tokenizer."""
    return len(text) // 4 + 1


def trim_history(history: Sequence[Turn], *, max_tokens: int) -> list[Turn]:
    """The turns that fit the budget: the first question always, then the newest ones.

    The first question frames the thread; the newest turns are what a follow-up refers to.
    Turns are dropped oldest first, never cut in half.
    """
    if not history:
        return []
    first, *later = history
    kept: list[Turn] = []
    budget = max_tokens - _turn_tokens(first)
    for turn in reversed(later):
        cost = _turn_tokens(turn)
        if cost > budget:
            break
        kept.append(turn)
        budget -= cost
    return [first, *reversed(kept)]


def _turn_tokens(turn: Turn) -> int:
    return estimate_tokens(turn.question) + estimate_tokens(turn.answer.model_dump_json())


class ContextItem(BaseModel):
    """Something read from a connected source; untrusted data, cited by its URL."""

    model_config = ConfigDict(frozen=True)

    source: str
    title: str
    text: str


@dataclass(frozen=True)
class Grounding:
    """The context a question is answered with: items for the prompt, their citations, and
    what could not be read (said to the user as `missingContext` lines)."""

    items: list[ContextItem] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


class Message(TypedDict):
    """One chat message as every OpenAI-compatible API takes it."""

    role: Literal["system", "user", "assistant"]
    content: str
