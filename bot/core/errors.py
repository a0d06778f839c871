"""Typed failures of the answering engine, each with an honest sentence a front door can show.

Vendor modules translate their SDK's exceptions into these; nothing above them sees a vendor type.
"""

from __future__ import annotations


class AnswerError(Exception):
    """The engine could not produce an answer; `user_message` says why, in plain words."""

    user_message = "Something went wrong while answering."

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(f"{self.user_message} {detail}".strip())


class LLMUnavailableError(AnswerError):
    user_message = "The language model is unavailable right now (rate limited or failing)."


class LLMTimeoutError(AnswerError):
    user_message = "The language model did not answer in time."


class LLMRejectedError(AnswerError):
    user_message = "The language model endpoint rejected the request; check the LLM configuration."


class LLMRefusalError(AnswerError):
    user_message = "The model declined to answer this question."


class LLMTruncatedError(AnswerError):
    user_message = "The model's answer was cut off before it was complete."


class LLMInvalidOutputError(AnswerError):
    user_message = "The model's answer did not fit the expected structure, even after a retry."


class LLMUnreachableError(LLMUnavailableError):
    user_message = "The language model endpoint could not be reached."


class LLMBadResponseError(AnswerError):
    """A 200 that is no chat completion: a proxy's error page, or a URL that is not the API."""

    user_message = "The language model endpoint did not answer like an OpenAI-compatible API."
