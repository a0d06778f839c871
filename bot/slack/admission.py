"""Whether a question is taken at all: its size, and how often its author has asked lately.

Refused questions get a friendly reason and cost no LLM call. The rate itself is counted by the
store as the question is recorded (`Store.claim_request(per_minute=…)`), across replicas.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.store import RateLimited


@dataclass(frozen=True)
class QuestionLimits:
    max_chars: int
    per_user_per_minute: int


def too_long(question: str, limits: QuestionLimits) -> str | None:
    """Why the question is refused for its size, or None."""
    if len(question) <= limits.max_chars:
        return None
    return (
        f"Your question is {len(question):,} characters long; the limit is "
        f"{limits.max_chars:,}. Please shorten it (or link to the document instead)."
    )


def too_often(limited: RateLimited, limits: QuestionLimits) -> str:
    return (
        f"You've asked {limited.asked} questions in the last minute; the limit is "
        f"{limits.per_user_per_minute}. Please wait a moment, then ask again."
    )
