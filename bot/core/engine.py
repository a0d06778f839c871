"""The core: given a persona, a question, the conversation so far and context, produce a Reply.

It knows nothing of Slack or terminals; every front door calls `Engine.ask` and renders the Reply.
It imports no vendor SDK either: the model is a `LanguageModel`, the context a `Grounding`, both
its own types; the front doors compose it with `bot.llm` and `bot.context`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from bot.core.answer import Reply
from bot.core.conversation import Grounding, Message, Turn, trim_history
from bot.core.persona import Persona
from bot.core.progress import SILENT, Draft, Progress, writing_step
from bot.core.prompt import build_messages, new_marker_tag

# Called with each longer draft of the answer while the model writes it.
OnDraft = Callable[[Draft], Awaitable[None]]


class LanguageModel(Protocol):
    """What the engine needs of a model: one structured answer for these messages
    (`bot.llm.LLMClient` is the OpenAI-compatible one), or an `AnswerError` saying why not.
    Where the model can stream, `on_draft` sees the answer grow; where not, it is not called."""

    async def answer(
        self, messages: list[Message], *, model: str | None = None, on_draft: OnDraft | None = None
    ) -> Reply: ...


class Engine:
    """Answers questions as a persona through one language model."""

    def __init__(self, *, llm: LanguageModel, history_token_budget: int) -> None:
        self._llm = llm
        self._history_token_budget = history_token_budget

    async def ask(
        self,
        *,
        persona: Persona,
        question: str,
        history: Sequence[Turn] = (),
        gathered: Grounding | None = None,
        progress: Progress = SILENT,
    ) -> Reply:
        """Raises a `bot.core.errors.AnswerError` when no answer can be had.

        Each call draws its own marker tag, so no context read for one question can know the
        markers of another. The bot adds what the model cannot know: the sources it read, and
        what it could not read as `missingContext` lines.
        """
        gathered = gathered or Grounding()
        kept = trim_history(history, max_tokens=self._history_token_budget)
        messages = build_messages(
            persona=persona,
            question=question,
            tag=new_marker_tag(),
            history=kept,
            context=gathered.items,
        )
        await progress.step(writing_step("in_progress"))
        # Nobody shown the drafts, nothing streamed: streaming costs a parse per chunk.
        on_draft = progress.draft if progress.shows_drafts else None
        try:
            reply = await self._llm.answer(messages, model=persona.model, on_draft=on_draft)
        except Exception:
            await progress.step(writing_step("error"))
            raise
        await progress.step(writing_step("complete"))
        answer = reply.answer
        unread = [line for line in gathered.missing if line not in answer.missing_context]
        answer = answer.model_copy(update={"missing_context": [*answer.missing_context, *unread]})
        return reply.model_copy(update={"answer": answer, "citations": gathered.citations})
