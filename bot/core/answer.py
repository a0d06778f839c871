"""The Answer: the persona's data contract, the LLM's structured output, what renderers show.

Wire names are exactly the persona card's (camelCase). The schema obeys OpenAI's strict
structured-output rules: every field required, no extra keys, no free-form dicts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class _WireModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )


class NextAction(_WireModel):
    """One concrete step, with who should take it and what it unblocks."""

    title: str
    owner: str
    outcome: str


class Answer(_WireModel):
    """A persona's structured answer to one question."""

    summary: str
    recommendation: str
    rationale: list[str]
    risks: list[str]
    next_actions: list[NextAction]
    missing_context: list[str]


class Usage(BaseModel):
    """Tokens one question cost, summed over every attempt (a repair attempt included)."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class Citation(BaseModel):
    """Something the persona read before answering, cited under the answer."""

    model_config = ConfigDict(frozen=True)

    title: str
    url: str


class Reply(BaseModel):
    """An Answer with what the front doors show beside it: sources, model, tokens and time."""

    model_config = ConfigDict(frozen=True)

    answer: Answer
    model: str
    usage: Usage
    latency_seconds: float
    attempts: int
    citations: list[Citation] = []
