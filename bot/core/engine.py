"""The core: given a persona, a question, the conversation so far and context, produce a Reply.

It knows nothing of Slack or terminals; every front door calls `Engine.ask` and renders the Reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from openai.types.chat import ChatCompletionMessageParam

from bot.context.gather import Gathered
from bot.core.answer import Reply
from bot.core.conversation import Turn, trim_history
from bot.core.persona import Persona
from bot.core.prompt import build_messages, new_marker_tag
from bot.llm import LLMClient, request_body

if TYPE_CHECKING:
    from bot.config import StructuredOutput


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
        gathered: Gathered | None = None,
    ) -> Reply:
        """Raises a `bot.core.errors.AnswerError` when no answer can be had.

        Each call draws its own marker tag, so no context read for one question can know the
        markers of another. The bot adds what the model cannot know: the sources it read, and
        what it could not read as `missingContext` lines.
        """
        gathered = gathered or Gathered()
        kept = trim_history(history, max_tokens=self._history_token_budget)
        messages = build_messages(
            persona=persona,
            question=question,
            tag=new_marker_tag(),
            history=kept,
            context=gathered.items,
        )
        reply = await self._llm.answer(messages, model=persona.model)
        answer = reply.answer
        unread = [line for line in gathered.missing if line not in answer.missing_context]
        answer = answer.model_copy(update={"missing_context": [*answer.missing_context, *unread]})
        return reply.model_copy(update={"answer": answer, "citations": gathered.citations})


def preview_request(
    *,
    persona: Persona,
    question: str,
    default_model: str,
    structured_output: StructuredOutput = "auto",
) -> dict[str, Any]:
    """The request body `ask` would send first with no history and no context: a dry run reads
    nothing. (In `auto`, a server that refuses `json_schema` is then asked in a weaker mode.)

    Without context the marker tag stays out of the prompt, so the preview is the exact request.
    """
    messages: list[ChatCompletionMessageParam] = build_messages(
        persona=persona, question=question, tag=new_marker_tag()
    )
    return request_body(messages, model=persona.model or default_model, mode=structured_output)
