"""Whether a question is taken at all: its size, and how often its author has asked lately.

Refused questions get a friendly reason and cost no LLM call. The count comes from the store, so
the limit holds across replicas.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.store import Store

_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class QuestionLimits:
    max_chars: int
    per_user_per_minute: int


async def refusal(
    store: Store, limits: QuestionLimits, *, team_id: str, user_id: str, question: str
) -> str | None:
    """Why this question is not taken, or None when it is."""
    if len(question) > limits.max_chars:
        return (
            f"Your question is {len(question):,} characters long; the limit is "
            f"{limits.max_chars:,}. Please shorten it (or link to the document instead)."
        )
    asked = await store.recent_requests(team_id, user_id, seconds=_WINDOW_SECONDS)
    if asked >= limits.per_user_per_minute:
        return (
            f"You've asked {asked} questions in the last minute; the limit is "
            f"{limits.per_user_per_minute}. Please wait a moment, then ask again."
        )
    return None
