"""Whether a question is taken at all: its size, how often its author has asked lately, and how
many of their questions are being answered.

Refused questions get a friendly reason and cost no LLM call. The quota itself is counted by the
store as the question is recorded (`Store.claim_request(quota=…)`), across replicas: thread
replies and "Try again" clicks count like any question.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.store import Quota, RateLimited


@dataclass(frozen=True)
class QuestionLimits:
    max_chars: int
    per_user_per_minute: int
    max_in_flight: int

    @property
    def quota(self) -> Quota:
        return Quota(per_minute=self.per_user_per_minute, in_flight=self.max_in_flight)


def too_long(question: str, limits: QuestionLimits) -> str | None:
    """Why the question is refused for its size, or None."""
    if len(question) <= limits.max_chars:
        return None
    return (
        f"Your question is {len(question):,} characters long; the limit is "
        f"{limits.max_chars:,}. Please shorten it (or link to the document instead)."
    )


def too_often(limited: RateLimited, limits: QuestionLimits) -> str:
    if limited.busy:
        return (
            f"I'm still answering {limited.in_flight} of your questions; the limit is "
            f"{limits.max_in_flight} at once. Please ask again when one is answered."
        )
    return (
        f"You've asked {limited.asked} questions in the last minute; the limit is "
        f"{limits.per_user_per_minute}. Please wait a moment, then ask again."
    )
