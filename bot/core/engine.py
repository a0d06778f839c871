"""The core: given a persona, a question, the conversation so far and context, produce a Reply.

It knows nothing of Slack or terminals; every front door calls `Engine.ask` and renders the Reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openai.types.chat import ChatCompletionMessageParam

from bot.core.answer import Reply
from bot.core.conversation import ContextItem, Turn, trim_history
from bot.core.persona import Persona
from bot.core.prompt import build_messages
from bot.llm import LLMClient, request_body


class Engine:
    """Answers questions as a persona through one LLM client."""

    def __init__(self, *, llm: LLMClient, history_token_budget: int) -> None:
        self._llm = llm
        self._history_token_budget = history_token_budget

    async def ask(
        self,
        *,
        persona: Persona,
        question: str,
        history: Sequence[Turn] = (),
        context: Sequence[ContextItem] = (),
    ) -> Reply:
        """Raises a `bot.core.errors.AnswerError` when no answer can be had."""
        kept = trim_history(history, max_tokens=self._history_token_budget)
        messages = build_messages(persona=persona, question=question, history=kept, context=context)
        return await self._llm.answer(messages, model=persona.model)


def preview_request(
    *,
    persona: Persona,
    question: str,
    default_model: str,
    history: Sequence[Turn] = (),
    context: Sequence[ContextItem] = (),
) -> dict[str, Any]:
    """The exact request body `ask` would send, for a dry run that calls nothing."""
    messages: list[ChatCompletionMessageParam] = build_messages(
        persona=persona, question=question, history=history, context=context
    )
    return request_body(messages, model=persona.model or default_model)
