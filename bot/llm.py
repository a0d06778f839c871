"""The LLM vendor module: OpenAI chat completions (or any compatible server) with structured output.

It owns the `AsyncOpenAI` client's life, its timeouts and retries, how the model is held to the
Answer schema (`OI_STRUCTURED_OUTPUT`), the one repair attempt for output that does not fit it, and
the translation of the SDK's exceptions into `bot.core.errors`.

Servers differ in what they take: OpenAI, recent vLLM, llama.cpp, Ollama and LM Studio take
`response_format: json_schema` (https://platform.openai.com/docs/guides/structured-outputs); older
ones refuse it with a 400 (vLLM: "Input should be 'text' or 'json_object'") or a 500 (llama.cpp:
"response_format type must be one of "text" or "json_object""), some models refuse every
`response_format` (Azure: "Invalid parameter: 'response_format' of type … is not supported with
this model"), and some servers ignore it (Ollama before 0.5), so the model writes freely. In `auto`
the client starts with `json_schema`, falls back to `json_object` and then to the schema in the
prompt when the server refuses, and remembers what worked. Whatever the mode, the reply is read
past prose, code fences and trailing words, validated against the Answer model and repaired once.

Where the caller wants drafts and a `response_format` holds the reply to JSON, the answer is
streamed (https://platform.openai.com/docs/api-reference/chat-streaming): each longer parse of the
JSON so far goes to `on_draft`, and the whole is then read as a completion would be. A server that
answers the stream with one JSON completion is read as one; a model whose server refuses `stream`
or `stream_options` (OpenAI's o1 at launch, Azure before 2024-10-21) is asked without, from then
on. In `prompt` mode the model may write prose first, so nothing is streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import jiter
import openai
import structlog
from openai import AsyncOpenAI, AsyncStream, DefaultAioHttpClient
from openai.lib._parsing import type_to_response_format_param
from openai.types import CompletionUsage
from pydantic import ValidationError

from bot.config import ConfigError, Settings, StructuredOutput
from bot.core.answer import Answer, Reply, Usage
from bot.core.conversation import Message
from bot.core.engine import OnDraft
from bot.core.errors import (
    AnswerError,
    LLMBadResponseError,
    LLMInvalidOutputError,
    LLMRefusalError,
    LLMRejectedError,
    LLMTimeoutError,
    LLMTruncatedError,
    LLMUnavailableError,
    LLMUnreachableError,
)
from bot.core.persona import Persona
from bot.core.prompt import build_messages, new_marker_tag

if TYPE_CHECKING:
    import httpx2

log = structlog.get_logger(__name__)

_PLACEHOLDER_KEY = "not-needed"
_MAX_ATTEMPTS = 2  # the first answer and one repair
# The Answer schema as OpenAI's strict structured outputs take it, derived once: the SDK's
# `parse` derives it from the model again at every call (2 % of the process's time under load).
_RESPONSE_FORMAT = type_to_response_format_param(Answer)
_SCHEMA = cast(dict[str, Any], _RESPONSE_FORMAT)["json_schema"]["schema"]
_SCHEMA_INSTRUCTION = (
    "Reply with only one JSON object, with no text before or after it and no code fences, that "
    "follows this JSON schema, with every field present: "
    + json.dumps(_SCHEMA, separators=(",", ":"))
)

# What is sent: `json_schema` (the server holds the model to the schema), `json_object` (any JSON
# object; the schema is in the prompt) or `prompt` (no response_format; the schema in the prompt).
Mode = Literal["json_schema", "json_object", "prompt"]
_FIRST_MODE: dict[StructuredOutput, Mode] = {
    "auto": "json_schema",
    "json_schema": "json_schema",
    "json_object": "json_object",
    "prompt": "prompt",
}
_FALLBACK: dict[Mode, Mode] = {"json_schema": "json_object", "json_object": "prompt"}
# A refusal of the mode names it; auth and rate-limit answers never mean "not supported".
_NAMES_STRUCTURED_OUTPUT = re.compile(
    r"response_format|response format|json_schema|json_object|structured output", re.IGNORECASE
)
_NOT_A_REFUSAL_OF_THE_MODE = frozenset({401, 403, 404, 429})

# What a streamed request adds: the usage comes in a last chunk of its own, only when asked for.
_STREAM: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
# A refusal to stream names the parameter (o1: "Unsupported value: 'stream' does not support true
# with this model"; Azure: "Unrecognized request argument supplied: stream_options").
_NAMES_STREAMING = re.compile(r"\bstream(?:_options)?\b", re.IGNORECASE)
_REFUSAL_OF_STREAMING = frozenset({400, 422})

# Reasoning models served locally (Qwen3, DeepSeek-R1) may think aloud before answering.
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)
# Keys an Answer never has and a JSON schema always does: the model wrote the schema back.
_SCHEMA_KEYS = frozenset({"$defs", "properties", "json_schema", "schema"})
# Braces tried as the start of the answer: each try is one linear scan, so the whole stays linear.
_MAX_OBJECT_STARTS = 32
_DECODER = json.JSONDecoder()

_MARKUP = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.DOTALL | re.IGNORECASE)
_GLIMPSE_CHARS = 80


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
        structured_output: StructuredOutput = "auto",
    ) -> None:
        self.default_model = default_model
        self._deadline_seconds = deadline_seconds
        self._structured_output = structured_output
        # In `auto`, the mode each model settled on after a refusal. One client talks to one base
        # URL and lives as long as the process, so this is "per base URL and model, per process".
        self._settled: dict[str, Mode] = {}
        # The models whose server refused to stream, asked without streaming from then on.
        self._unstreamed: set[str] = set()
        # aiohttp underneath: HTTPX's pool scans every waiting request for each one it sends,
        # which took 11 % of the process's time with 1,000 questions at the LLM at once.
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=max_retries,
            http_client=DefaultAioHttpClient(),
        )
        self.base_url = _printable_url(str(self._client.base_url)).rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMClient:
        """A key is required for OpenAI itself; a self-hosted `OPENAI_BASE_URL` may not need one."""
        if settings.openai_api_key is None and not settings.openai_base_url:
            raise ConfigError(
                "OPENAI_API_KEY is not set: export OPENAI_API_KEY=<your key> (or point "
                "OPENAI_BASE_URL at an OpenAI-compatible server)"
            )
        key = settings.openai_api_key
        return cls(
            api_key=key.get_secret_value() if key else _PLACEHOLDER_KEY,
            base_url=settings.openai_base_url,
            default_model=settings.openai_model,
            timeout_seconds=settings.oi_llm_timeout_seconds,
            max_retries=settings.oi_llm_max_retries,
            deadline_seconds=settings.oi_llm_deadline_seconds,
            structured_output=settings.oi_structured_output,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def answer(
        self, messages: list[Message], *, model: str | None = None, on_draft: OnDraft | None = None
    ) -> Reply:
        """One structured answer, or a typed `AnswerError` saying honestly why not.

        `on_draft` sees the answer grow while the model writes it, where it is streamed; an
        exception it raises ends the call."""
        model = model or self.default_model
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline_seconds):
                answer, usage, attempts = await self._answer_with_repair(messages, model, on_draft)
        except TimeoutError:
            raise LLMTimeoutError(f"(no answer within {self._deadline_seconds:g}s)") from None
        except openai.OpenAIError as error:
            raise _translate(error, self.base_url) from None
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
        self, messages: list[Message], model: str, on_draft: OnDraft | None
    ) -> tuple[Answer, Usage, int]:
        """Ask; if the output does not fit the schema, show the model why and ask once more.
        Only the first answer is streamed: the repair would show a second draft over the first."""
        usage = Usage()
        conversation = list(messages)
        problem = ""
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            drafts = on_draft if attempt == 1 else None
            answer, attempt_usage, content, problem = await self._attempt(
                conversation, model, drafts
            )
            usage += attempt_usage
            if answer is not None:
                return answer, usage, attempt
            log.warning("llm.invalid_output", model=model, attempt=attempt, problem=problem)
            conversation += _repair_messages(content, problem)
        raise LLMInvalidOutputError(f"({problem})")

    async def _attempt(
        self, conversation: list[Message], model: str, on_draft: OnDraft | None
    ) -> tuple[Answer | None, Usage, str, str]:
        """One call: the parsed answer, or None with the raw content and what was wrong with it."""
        body = await self._complete(conversation, model, on_draft)
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
        answer, problem = _parse_answer(content)
        return answer, usage, content, problem

    async def _complete(
        self, conversation: list[Message], model: str, on_draft: OnDraft | None
    ) -> dict[str, Any]:
        """One chat completion in the mode that works for `model`; in `auto`, a server's refusal
        of a mode moves to the next one, and the mode that was accepted is remembered. Streamed
        when there is `on_draft` and the mode holds the reply to JSON, unless the server refused
        to stream for this model (then asked again without, and remembered)."""
        mode = self._settled.get(model, _FIRST_MODE[self._structured_output])
        refused: list[str] = []
        while True:
            streams = mode != "prompt" and model not in self._unstreamed
            drafts = on_draft if streams else None
            try:
                if drafts is not None:
                    body = await self._post_streamed(_body(conversation, model, mode), drafts)
                else:
                    body = await self._post(_body(conversation, model, mode))
            except openai.APIStatusError as error:
                reason = f"HTTP {error.status_code}: {_status_reason(error)}"
                if drafts is not None and _refuses_streaming(error):
                    self._stop_streaming(model, reason)
                    continue
                refused.append(f"{mode} ({reason})")
                mode = self._fallback_after(error, mode, reason)
                continue
            if refused and self._settled.get(model) != mode:
                self._settled[model] = mode
                log.info(
                    "llm.structured_output",
                    base_url=self.base_url,
                    model=model,
                    mode=mode,
                    refused="; ".join(refused),
                )
            return body

    def _stop_streaming(self, model: str, reason: str) -> None:
        if model not in self._unstreamed:
            self._unstreamed.add(model)
            log.info("llm.unstreamed", base_url=self.base_url, model=model, refused=reason)

    def _fallback_after(self, error: openai.APIStatusError, mode: Mode, reason: str) -> Mode:
        """The next mode to try after `error`, or `error` raised again: it was about something
        else, or the operator chose this mode (then the message says how to change it)."""
        if mode not in _FALLBACK or not _refuses_structured_output(error):
            raise error
        if self._structured_output != "auto":
            raise LLMRejectedError(
                f"({reason}; this server does not take OI_STRUCTURED_OUTPUT={mode}: try auto)"
            ) from None
        return _FALLBACK[mode]

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        raw = await self._client.chat.completions.with_raw_response.create(**body)
        return _completion_of(raw.http_response, secret=self._client.api_key)

    async def _post_streamed(self, body: dict[str, Any], on_draft: OnDraft) -> dict[str, Any]:
        """The completion, streamed: each longer draft goes to `on_draft` as it is written, and
        the chunks are put back together into the completion `_post` would have returned."""
        raw = await self._client.chat.completions.with_raw_response.create(**body, **_STREAM)
        response = raw.http_response
        try:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                await response.aread()
                return _completion_of(response, secret=self._client.api_key)
            # Chunks as sent, like the completions `_post` reads: compatible servers send some
            # that the SDK's types do not describe (vLLM's usage chunk with `choices: null`).
            stream = raw.parse(to=AsyncStream[object])
            async with contextlib.aclosing(self._chunks(stream)) as chunks:
                return await _assembled(chunks, _Drafts(on_draft))
        finally:
            await response.aclose()

    async def _chunks(self, stream: AsyncStream[object]) -> AsyncGenerator[dict[str, Any]]:
        """Each chunk of the stream; a stream that breaks off is an error that says so."""
        try:
            async for chunk in stream:
                if not isinstance(chunk, dict):
                    raise LLMBadResponseError(
                        f"({self.base_url} streamed an event that is no chat completion chunk)"
                    )
                yield chunk
        except openai.APITimeoutError:
            raise
        except openai.APIConnectionError:
            # aiohttp's "Response payload is not completed": the server or a proxy hung up.
            raise LLMUnreachableError(
                f"(the connection to {self.base_url} broke off in the middle of the answer)"
            ) from None
        except openai.APIError as error:
            # An error event in the stream (OpenAI sends `{"error": …}` when it fails midway).
            raise LLMUnavailableError(
                f"(the answer stopped midway: {_glimpse(error.message, self._client.api_key)})"
            ) from None
        except ValueError:
            raise LLMBadResponseError(
                f"({self.base_url} streamed an event that is not JSON)"
            ) from None


class _Drafts:
    """The streamed content so far, and each longer draft of the answer it holds to `on_draft`.

    A draft is the JSON object parsed so far from the first brace (after any thinking aloud),
    the last string cut where the content is; it is parsed again only when a delta could have
    changed it, and sent only when it did."""

    def __init__(self, on_draft: OnDraft) -> None:
        self._on_draft = on_draft
        self.content = ""
        self._start = -1
        self._last: dict[str, Any] = {}

    async def add(self, delta: str) -> None:
        self.content += delta
        if delta.isspace() or not self._found_start():
            return
        try:
            draft = jiter.from_json(
                self.content[self._start :].encode(),
                partial_mode="trailing-strings",
                cache_mode="keys",
            )
        except ValueError:
            return
        if isinstance(draft, dict) and draft != self._last:
            self._last = draft
            await self._on_draft(draft)

    def _found_start(self) -> bool:
        if self._start == -1:
            after = 0
            if self.content.lstrip().startswith("<think>"):
                after = self.content.find("</think>")
                if after == -1:
                    return False
            self._start = self.content.find("{", after)
        return self._start != -1


async def _assembled(chunks: AsyncIterator[dict[str, Any]], drafts: _Drafts) -> dict[str, Any]:
    """The chat completion the chunks make: content and refusal joined, the last finish reason,
    and the usage of the chunk that carries it."""
    refusal = ""
    finish_reason = None
    usage = None
    async for chunk in chunks:
        usage = chunk.get("usage") or usage
        choice = _first_choice(chunk)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            refusal += str(delta.get("refusal") or "")
            if delta.get("content"):
                await drafts.add(str(delta["content"]))
        finish_reason = choice.get("finish_reason") or finish_reason
    message = {"role": "assistant", "content": drafts.content, "refusal": refusal or None}
    return {"choices": [{"message": message, "finish_reason": finish_reason}], "usage": usage}


def _body(messages: list[Message], model: str, mode: Mode) -> dict[str, Any]:
    if mode == "json_schema":
        return {"messages": messages, "model": model, "response_format": _RESPONSE_FORMAT}
    body: dict[str, Any] = {"messages": _with_schema_instruction(messages), "model": model}
    if mode == "json_object":
        body["response_format"] = {"type": "json_object"}
    return body


def _with_schema_instruction(
    messages: list[Message],
) -> list[Message]:
    """The schema at the end of the system message: the stable prefix stays first (prompt
    caching), and templates that take one system message at the start still do."""
    first, rest = messages[0], messages[1:]
    content = first.get("content")
    if first["role"] == "system" and isinstance(content, str):
        return [{"role": "system", "content": f"{content}\n\n{_SCHEMA_INSTRUCTION}"}, *rest]
    return [{"role": "system", "content": _SCHEMA_INSTRUCTION}, *messages]


def _refuses_streaming(error: openai.APIStatusError) -> bool:
    """The server said it does not stream, or not with `stream_options`, for this model."""
    if error.status_code not in _REFUSAL_OF_STREAMING:
        return False
    return bool(_NAMES_STREAMING.search(f"{error.message} {error.body}"))


def _refuses_structured_output(error: openai.APIStatusError) -> bool:
    """The server said it does not take this `response_format` (400, 422, or llama.cpp's 500)."""
    if error.status_code in _NOT_A_REFUSAL_OF_THE_MODE:
        return False
    return bool(_NAMES_STRUCTURED_OUTPUT.search(f"{error.message} {error.body}"))


def _completion_of(response: httpx2.Response, *, secret: str) -> dict[str, Any]:
    """The chat completion in a 200 answer, or an error naming the URL and what came back."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("choices"), list):
        return body
    content_type = response.headers.get("content-type") or "no content type"
    raise LLMBadResponseError(
        f"({_printable_url(str(response.url))} answered HTTP {response.status_code} with "
        f"{content_type}, not a chat completion: {_glimpse(response.text, secret)})"
    )


def _glimpse(text: str, secret: str | None = None) -> str:
    """The first words of a page, without its markup, on one line, and never our key."""
    words = " ".join(_MARKUP.sub(" ", text).split())
    if secret:
        words = words.replace(secret, "[redacted]")
    if not words:
        return "an empty body"
    return f'"{words[:_GLIMPSE_CHARS]}…"' if len(words) > _GLIMPSE_CHARS else f'"{words}"'


def _printable_url(url: str) -> str:
    """`url` without credentials or query, which may hold secrets."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _parse_answer(content: str) -> tuple[Answer | None, str]:
    """The Answer in a model's reply, or None and what was wrong with the reply.

    The first JSON object is the answer, wherever it is: after prose or a ```json fence, before
    trailing words. A copy of the schema is passed over (small models write it back)."""
    wrote_the_schema = False
    for candidate in _json_objects(_THINKING.sub("", content)):
        if _SCHEMA_KEYS & candidate.keys():
            wrote_the_schema = True
            continue
        try:
            return Answer.model_validate(candidate), ""
        except ValidationError as error:
            return None, _describe(error)
    if wrote_the_schema:
        return None, "the reply was the JSON schema itself, not an answer that follows it"
    return None, "the reply held no JSON object"


def _json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Each JSON object in `text`, in order, decoded from a brace onwards by the json module's
    scanner (strings and escapes honoured); a brace that starts no object is skipped."""
    start = text.find("{")
    for _ in range(_MAX_OBJECT_STARTS):
        if start == -1:
            return
        try:
            candidate, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        yield candidate
        start = text.find("{", end)


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


def _repair_messages(content: str, problem: str) -> list[Message]:
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


def _translate(error: openai.OpenAIError, base_url: str) -> AnswerError:
    """Map an SDK exception (after the SDK's own bounded retries) to our typed error."""
    if isinstance(error, openai.APITimeoutError) and not _refused(error):
        return LLMTimeoutError("(the request timed out)")
    if isinstance(error, openai.APIConnectionError):
        if _refused(error):
            return LLMUnreachableError(f"(could not connect to {base_url})")
        return LLMUnreachableError(f"(the connection to {base_url} failed)")
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
    """The provider's own message (it names e.g. an unknown model); not used for auth errors.

    OpenAI nests it (`{"error": {"message": …}}`, of which the SDK keeps the inside), vLLM puts it
    at the top, LM Studio's `error` is the message itself, and a proxy's page is text."""
    body = error.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if message:
            return str(message)[:200]
    if isinstance(body, str):
        return _glimpse(body)
    try:
        return json.dumps(body)[:200]
    except (TypeError, ValueError):
        return type(error).__name__


def request_body(
    messages: list[Message],
    *,
    model: str,
    mode: StructuredOutput = "auto",
    streamed: bool = False,
) -> dict[str, Any]:
    """The JSON body `answer` first sends for these messages in this `OI_STRUCTURED_OUTPUT`;
    `streamed`: when someone is shown the drafts (`on_draft`), which only a JSON mode streams."""
    first = _FIRST_MODE[mode]
    body = _body(messages, model, first)
    return {**body, **_STREAM} if streamed and first != "prompt" else body


def preview_request(
    *,
    persona: Persona,
    question: str,
    default_model: str,
    structured_output: StructuredOutput = "auto",
    streamed: bool = False,
) -> dict[str, Any]:
    """The request body the engine's `ask` would send first with no history and no context: a
    dry run reads nothing. (In `auto`, a server that refuses `json_schema` is then asked in a
    weaker mode.) Without context the marker tag stays out of the prompt, so the preview is the
    exact request; `streamed` as `request_body` says."""
    messages = build_messages(persona=persona, question=question, tag=new_marker_tag())
    model = persona.model or default_model
    return request_body(messages, model=model, mode=structured_output, streamed=streamed)
