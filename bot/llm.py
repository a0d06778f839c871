"""The LLM vendor module: OpenAI chat completions (or any compatible server) with structured output.

It owns the `AsyncOpenAI` client's life, its timeouts and retries, the one repair attempt for
output that does not fit the Answer schema, and the translation of the SDK's exceptions into
`bot.core.errors`. See https://platform.openai.com/docs/guides/structured-outputs.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import openai
import structlog
from openai import AsyncOpenAI, DefaultAioHttpClient
from openai.lib._parsing import type_to_response_format_param
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionMessageParam
from pydantic import ValidationError

from bot.config import ConfigError, Settings
from bot.core.answer import Answer, Reply, Usage
from bot.core.errors import (
    AnswerError,
    LLMInvalidOutputError,
    LLMRefusalError,
    LLMRejectedError,
    LLMTimeoutError,
    LLMTruncatedError,
    LLMUnavailableError,
)

log = structlog.get_logger(__name__)

_PLACEHOLDER_KEY = "not-needed"
_MAX_ATTEMPTS = 2  # the first answer and one repair
# The Answer schema as OpenAI's strict structured outputs take it, derived once: the SDK's
# `parse` derives it from the model again at every call (2 % of the process's time under load).
_RESPONSE_FORMAT = type_to_response_format_param(Answer)


class LLMClient:
    """Asks an OpenAI-compatible model for an `Answer`, within a deadline."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        default_model: str,
        timeout_seconds: float,
        max_retries: int,
        deadline_seconds: float,
    ) -> None:
        self.default_model = default_model
        self._deadline_seconds = deadline_seconds
        # aiohttp underneath: HTTPX's pool scans every waiting request for each one it sends,
        # which took 11 % of the process's time with 1,000 questions at the LLM at once.
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=max_retries,
            http_client=DefaultAioHttpClient(),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMClient:
        """A key is required for OpenAI itself; a self-hosted `OPENAI_BASE_URL` may not need one."""
        if settings.openai_api_key is None and not settings.openai_base_url:
            raise ConfigError(
                "OPENAI_API_KEY is not set: export OPENAI_API_KEY=sk-… (or point OPENAI_BASE_URL "
                "at an OpenAI-compatible server)"
            )
        key = settings.openai_api_key
        return cls(
            api_key=key.get_secret_value() if key else _PLACEHOLDER_KEY,
            base_url=settings.openai_base_url,
            default_model=settings.openai_model,
            timeout_seconds=settings.oi_llm_timeout_seconds,
            max_retries=settings.oi_llm_max_retries,
            deadline_seconds=settings.oi_llm_deadline_seconds,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def answer(
        self, messages: list[ChatCompletionMessageParam], *, model: str | None = None
    ) -> Reply:
        """One structured answer, or a typed `AnswerError` saying honestly why not."""
        model = model or self.default_model
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline_seconds):
                answer, usage, attempts = await self._answer_with_repair(messages, model)
        except TimeoutError:
            raise LLMTimeoutError(f"(no answer within {self._deadline_seconds:g}s)") from None
        except openai.OpenAIError as error:
            raise _translate(error) from None
        latency = time.perf_counter() - started
        log.info(
            "llm.answered",
            model=model,
            attempts=attempts,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_ms=round(latency * 1000),
        )
        return Reply(
            answer=answer, model=model, usage=usage, latency_seconds=latency, attempts=attempts
        )

    async def _answer_with_repair(
        self, messages: list[ChatCompletionMessageParam], model: str
    ) -> tuple[Answer, Usage, int]:
        """Ask; if the output does not fit the schema, show the model why and ask once more."""
        usage = Usage()
        conversation = list(messages)
        problem = ""
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            answer, attempt_usage, content, problem = await self._attempt(conversation, model)
            usage += attempt_usage
            if answer is not None:
                return answer, usage, attempt
            log.warning("llm.invalid_output", model=model, attempt=attempt)
            conversation += _repair_messages(content, problem)
        raise LLMInvalidOutputError(f"({problem})")

    async def _attempt(
        self, conversation: list[ChatCompletionMessageParam], model: str
    ) -> tuple[Answer | None, Usage, str, str]:
        """One call: the parsed answer, or None with the raw content and what was wrong with it."""
        raw = await self._client.chat.completions.with_raw_response.create(
            model=model, messages=conversation, response_format=_RESPONSE_FORMAT
        )
        body: dict[str, Any] = raw.http_response.json()
        usage = _usage_of(body.get("usage"))
        choice = _first_choice(body)
        finish_reason = choice.get("finish_reason")
        if finish_reason == "length":
            raise LLMTruncatedError(f"(after {usage.completion_tokens} output tokens)")
        if finish_reason == "content_filter":
            raise LLMRefusalError("(stopped by the provider's content filter)")
        message = choice.get("message") or {}
        if message.get("refusal"):
            raise LLMRefusalError(f"(the model said: {message['refusal']})")
        content = str(message.get("content") or "")
        if not content:
            return None, usage, content, "the reply was empty"
        try:
            return Answer.model_validate_json(content), usage, content, ""
        except ValidationError as error:
            return None, usage, content, _describe(error)


def _usage_of(raw_usage: Any) -> Usage:
    if not raw_usage:
        return Usage()
    usage = CompletionUsage.model_validate(raw_usage)
    return Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)


def _first_choice(body: dict[str, Any]) -> dict[str, Any]:
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    return first if isinstance(first, dict) else {}


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
        for e in error.errors(include_url=False, include_input=False)
    )


def _repair_messages(content: str, problem: str) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "assistant", "content": content},
        {
            "role": "user",
            "content": (
                "Your previous reply did not match the required JSON schema: "
                f"{problem}. Reply again with only a JSON object that matches the schema, "
                "with every field present."
            ),
        },
    ]


def _translate(error: openai.OpenAIError) -> AnswerError:
    """Map an SDK exception (after the SDK's own bounded retries) to our typed error."""
    if isinstance(error, openai.APITimeoutError) and not _refused(error):
        return LLMTimeoutError("(the request timed out)")
    if isinstance(error, openai.APIConnectionError):
        return LLMUnavailableError("(could not connect to the LLM endpoint)")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status == 429 or status >= 500:
            return LLMUnavailableError(f"(HTTP {status} after retries)")
        if status in (401, 403):
            return LLMRejectedError(
                f"(HTTP {status}: the API key was not accepted; check OPENAI_API_KEY)"
            )
        return LLMRejectedError(f"(HTTP {status}: {_status_reason(error)})")
    return LLMUnavailableError(f"({type(error).__name__})")


def _refused(error: BaseException) -> bool:
    """The connection itself failed (refused, no such host). The SDK's aiohttp transport reports
    that as a connect *timeout*; the aiohttp error it started from says what happened."""
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectorError):
            return True
        cause = cause.__cause__
    return False


def _status_reason(error: openai.APIStatusError) -> str:
    """The provider's own message (it names e.g. an unknown model); not used for auth errors."""
    body = error.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return str(message)[:200]
    try:
        return json.dumps(body)[:200]
    except (TypeError, ValueError):
        return type(error).__name__


def request_body(messages: list[ChatCompletionMessageParam], *, model: str) -> dict[str, Any]:
    """The JSON body `answer` sends for these messages (the first attempt's)."""
    return {
        "messages": messages,
        "model": model,
        "response_format": _RESPONSE_FORMAT,
    }
