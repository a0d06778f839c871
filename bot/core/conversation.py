"""What the engine is given besides the persona and the question: earlier turns and fetched context."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bot.core.answer import Answer


class Turn(BaseModel):
    """One earlier question in the same conversation and the answer it got."""

    model_config = ConfigDict(frozen=True)

    question: str
    answer: Answer


class ContextItem(BaseModel):
    """Something read from a connected source; untrusted data, cited by its URL."""

    model_config = ConfigDict(frozen=True)

    source: str
    title: str
    text: str
