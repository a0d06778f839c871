"""A local OpenAI-compatible server: `POST /v1/chat/completions` with scripted replies.

Each test queues the replies it wants (a valid answer, malformed content, a refusal, a truncated
answer, an HTTP error, a hang, a proxy's HTML page); when the queue is empty the server answers
with a valid Answer. Every request is recorded so tests can assert on the messages the bot sent.
Response bodies follow OpenAI's chat completion object
(https://platform.openai.com/docs/api-reference/chat/object) and its error object; requests are
checked the way the real endpoint checks them.

A request with `"stream": true` gets its scripted completion as server-sent events, the way OpenAI
streams it (https://platform.openai.com/docs/api-reference/chat-streaming/streaming): one
`chat.completion.chunk` for the role, the content (or the refusal) in small pieces, one with the
`finish_reason`, the usage chunk if `stream_options.include_usage` asked for it, then `[DONE]`.
Errors and pages are answered as they are without streaming. A scripted reply may be `paced` (each
chunk waits for the test's `send_chunks`), `spaced` (a fixed gap between chunks), `dropped` (the
connection closes midway) or `interrupted` (an error event midway, as OpenAI sends when it fails).

A `ServerFamily` makes the server behave like another OpenAI-compatible one in what matters to
structured output: which `response_format` it refuses, with which error, and how its model writes
when nothing holds it to a schema. Each family is modelled on that server's documented behaviour
or its issue tracker (cited at each one).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from tests.fakes._server import RequestLog, ThreadedServer

VALID_ANSWER: dict[str, Any] = {
    "summary": "Retries without idempotency keys can double-charge.",
    "recommendation": "Add an idempotency key to the charge endpoint before enabling retries.",
    "rationale": ["Retries replay non-idempotent writes.", "The PR retries on timeouts."],
    "risks": ["Duplicate charges during provider brownouts."],
    "nextActions": [
        {
            "title": "Add idempotency keys to POST /charges",
            "owner": "payments team",
            "outcome": "Retries become safe to enable.",
        }
    ],
    "missingContext": ["The provider's own retry semantics."],
}


# The sizes of the content pieces a streamed reply is cut into, in turn: a few characters to 20,
# like a model's tokens grouped by the server's flushes, the same every run.
_PIECE_SIZES = (3, 7, 12, 5, 20, 9, 4, 16)


@dataclass(frozen=True)
class Scripted:
    """One scripted reply: a status, headers and a JSON body (or a `page` of another type), held
    back until `release()` if `held`.

    When streamed: `paced`, each chunk waits for `send_chunks`; `gap`, seconds between chunks;
    `drop_after`, the connection closes after that many chunks; `error_after`, an error event
    follows that many chunks and ends the stream."""

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    held: bool = False
    page: str | None = None
    content_type: str = "application/json"
    paced: bool = False
    gap: float = 0.0
    drop_after: int | None = None
    error_after: int | None = None


def answer(content: dict[str, Any] | None = None) -> Scripted:
    return content_reply(json.dumps(content if content is not None else VALID_ANSWER))


def content_reply(content: str | None, *, finish_reason: str = "stop") -> Scripted:
    """A 200 completion whose message content is exactly `content` (valid or not)."""
    return Scripted(body=_completion({"role": "assistant", "content": content}, finish_reason))


def refusal(text: str = "I can't help with that.") -> Scripted:
    message = {"role": "assistant", "content": None, "refusal": text}
    return Scripted(body=_completion(message, "stop"))


def truncated() -> Scripted:
    return content_reply('{"summary": "The retry design', finish_reason="length")


def error(status: int, message: str = "error", **headers: str) -> Scripted:
    kind = "rate_limit_exceeded" if status == 429 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return Scripted(status=status, body=body, headers=headers)


def proxy_page(status: int = 200) -> Scripted:
    """What a reverse proxy in front of a model server sends when the server is down or the URL
    is wrong: its own HTML page (some answer 200, e.g. a captive portal or a login page)."""
    html = (
        "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title>"
        "<style>body { font-family: sans-serif; }</style></head>\n"
        "<body><center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx/1.25.3</center>"
        "</body></html>\n"
    )
    return Scripted(status=status, page=html, content_type="text/html")


def hang() -> Scripted:
    """No answer until the test releases it (or the server stops); then a 503."""
    return replace(error(503, "server stopped"), held=True)


def held(scripted: Scripted) -> Scripted:
    """`scripted`, sent only when the test calls `release()`: an LLM call kept in flight."""
    return replace(scripted, held=True)


def paced(scripted: Scripted) -> Scripted:
    """`scripted`, streamed one chunk at a time as the test calls `send_chunks`."""
    return replace(scripted, paced=True)


def spaced(scripted: Scripted, seconds: float) -> Scripted:
    """`scripted`, streamed with `seconds` between chunks: a model that writes slowly."""
    return replace(scripted, gap=seconds)


def dropped(scripted: Scripted, *, after: int) -> Scripted:
    """`scripted`, streamed until `after` chunks have gone; then the connection closes, with no
    end to the chunked body: a proxy's idle timeout, a server that crashed mid-answer."""
    return replace(scripted, drop_after=after)


def interrupted(scripted: Scripted, *, after: int) -> Scripted:
    """`scripted`, streamed until `after` chunks have gone; then an error event ends the stream,
    as OpenAI's does when the model's server fails midway."""
    return replace(scripted, error_after=after)


def stream_pieces(content: str) -> list[str]:
    """The pieces `content` is streamed in, in order (one `delta.content` each)."""
    pieces: list[str] = []
    start = 0
    sizes = itertools.cycle(_PIECE_SIZES)
    while start < len(content):
        end = start + next(sizes)
        pieces.append(content[start:end])
        start = end
    return pieces


def _fenced(content: str) -> str:
    return f"```json\n{content}\n```"


def _chatty(content: str) -> str:
    return (
        "Sure! Here is my review of the retry design, as JSON:\n\n"
        f"{content}\n\nLet me know if you want me to expand on any of the risks {{or owners}}."
    )


@dataclass(frozen=True)
class ServerFamily:
    """How one kind of OpenAI-compatible server treats `response_format` and streaming.

    `refuses` maps a response_format type to the error status and body the server answers it
    with; `free_under` are the response_format types (None: none sent) under which its model
    writes freely, and `writes` is how it then dresses the JSON it was asked for.
    `refuses_params` maps a request parameter to the error answered when it is sent (and true);
    a server that does not `stream` answers `stream: true` with one JSON completion.
    """

    name: str
    refuses: Mapping[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    free_under: frozenset[str | None] = frozenset()
    writes: Callable[[str], str] = str
    refuses_params: Mapping[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    streams: bool = True


def _openai_error(message: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None, **extra}}


# OpenAI itself: every response_format (json_object needs the word "json" in the messages).
OPENAI = ServerFamily("openai")
# vLLM before json_schema support: FastAPI's validation error, in vLLM's top-level error object.
VLLM_BEFORE_JSON_SCHEMA = ServerFamily(
    "vllm<0.6",
    refuses={
        "json_schema": (
            400,
            {
                "object": "error",
                "message": "[{'type': 'literal_error', 'loc': ('body', 'response_format', "
                "'type'), 'msg': \"Input should be 'text' or 'json_object'\", "
                "'input': 'json_schema'}]",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            },
        )
    },
)
# llama.cpp's server before json_schema (ggml-org/llama.cpp#10732, ikawrakow/ik_llama.cpp#778):
# the parse error escapes to its exception handler, a 500 "server_error".
LLAMA_CPP_BEFORE_JSON_SCHEMA = ServerFamily(
    "llama.cpp<b3800",
    refuses={
        "json_schema": (
            500,
            _openai_error(
                'response_format type must be one of "text" or "json_object", but got: json_schema',
                "server_error",
            ),
        )
    },
)
# A model with no structured output at all behind Azure OpenAI (stride-gpt#19): every type refused.
AZURE_OLDER_MODEL = ServerFamily(
    "azure-older-model",
    refuses={
        kind: (
            400,
            _openai_error(
                f"Invalid parameter: 'response_format' of type '{kind}' is not supported with "
                "this model.",
                "invalid_request_error",
                param="response_format",
            ),
        )
        for kind in ("json_schema", "json_object")
    },
)
# LM Studio 0.3: json_schema only; its error is a bare string (lmstudio-bug-tracker#189).
LM_STUDIO = ServerFamily(
    "lm-studio",
    refuses={
        "json_object": (400, {"error": "'response_format.type' must be 'json_schema' or 'text'"})
    },
)
# Ollama's OpenAI endpoint before 0.5 mapped json_object to `format: json` and ignored json_schema
# (ollama/ollama#10001, fabrice-ai#118): its model answers in a ```json fence.
OLLAMA_BEFORE_STRUCTURED_OUTPUTS = ServerFamily(
    "ollama<0.5", free_under=frozenset({"json_schema", None}), writes=_fenced
)
# A small local model behind a server that ignores response_format: prose, JSON, more prose.
CHATTY_SMALL_MODEL = ServerFamily(
    "chatty", free_under=frozenset({"json_schema", "json_object", None}), writes=_chatty
)
# Azure OpenAI before api-version 2024-10-21 streamed but did not know `stream_options`
# (Pythagora-io/gpt-pilot#1022, songquanpeng/one-api#1423, openai/openai-python#1469).
AZURE_BEFORE_STREAM_OPTIONS = ServerFamily(
    "azure<2024-10-21",
    refuses_params={
        "stream_options": (
            400,
            {
                "error": {
                    "message": "Unrecognized request argument supplied: stream_options. Please "
                    "contact us through an Azure support request at: "
                    "https://go.microsoft.com/fwlink/?linkid=2213926 for further questions.",
                    "type": "invalid_request_error",
                    "param": "",
                    "code": None,
                }
            },
        )
    },
)
# OpenAI's o1 models at launch, and o3 for unverified organisations: no streaming at all
# (ChatGPTNextWeb/NextChat#5410, github/gh-models#31).
OPENAI_MODEL_THAT_CANNOT_STREAM = ServerFamily(
    "o1-2024",
    refuses_params={
        "stream": (
            400,
            _openai_error(
                "Unsupported value: 'stream' does not support true with this model. Only the "
                "default (false) value is supported.",
                "invalid_request_error",
                param="stream",
                code="unsupported_value",
            ),
        )
    },
)
# Servers and gateways that only answer with one JSON completion, whatever `stream` says
# (mistralai/mistral-vibe#84; tinyhumansai/tinyagents#56 reads such answers as one completion).
JSON_ONLY = ServerFamily("json-only", streams=False)


class FakeOpenAI:
    """The server and its script; `requests` holds every request body received, in order."""

    def __init__(self, family: ServerFamily = OPENAI) -> None:
        self.family = family
        self.requests: RequestLog[dict[str, Any]] = RequestLog()
        self.authorizations: list[str | None] = []
        self._script: deque[Scripted] = deque()
        self._released = asyncio.Event()
        # How many more chunks paced streams may send; infinite once `release()` was called.
        self._chunks_allowed: float = 0
        self._chunks_changed = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        self._server = ThreadedServer(app)

    @property
    def base_url(self) -> str:
        return f"{self._server.url}/v1"

    def script(self, *replies: Scripted) -> None:
        self._script.extend(replies)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(before=self._release)

    def release(self) -> None:
        """Let every held reply and every paced chunk go, now and from now on."""
        self._server.call(self._release)

    def send_chunks(self, count: int = 1) -> None:
        """Let `count` more chunks of the paced streams go (returns before they are written)."""

        async def allow() -> None:
            async with self._chunks_changed:
                self._chunks_allowed += count
                self._chunks_changed.notify_all()

        self._server.call(allow)

    async def _release(self) -> None:
        self._released.set()
        async with self._chunks_changed:
            self._chunks_allowed = math.inf
            self._chunks_changed.notify_all()

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        self.authorizations.append(request.headers.get("Authorization"))
        body = await request.json()
        self.requests.append(body)
        problem = _invalid_request(body)
        if problem:
            return _error_response(400, problem)
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error_response(401, "You didn't provide an API key.")
        for param, (status, error_body) in self.family.refuses_params.items():
            if body.get(param):
                return web.json_response(error_body, status=status)
        response_format = (body.get("response_format") or {}).get("type")
        if response_format in self.family.refuses:
            status, error_body = self.family.refuses[response_format]
            return web.json_response(error_body, status=status)
        scripted = self._script.popleft() if self._script else answer()
        if scripted.held:
            await self._released.wait()
        if scripted.page is not None:
            return web.Response(
                text=scripted.page, status=scripted.status, content_type=scripted.content_type
            )
        payload = dict(scripted.body or {})
        if scripted.status == 200 and "choices" in payload:
            if response_format in self.family.free_under:
                payload = _dressed(payload, self.family.writes)
            payload = _with_usage(payload, body)
            if body.get("stream") and self.family.streams:
                return await self._stream(request, scripted, _chunks(payload, body))
        return web.json_response(payload, status=scripted.status, headers=scripted.headers)

    async def _stream(
        self, request: web.Request, scripted: Scripted, chunks: Iterator[dict[str, Any]]
    ) -> web.StreamResponse:
        """The chunks as server-sent events, paced as scripted, ended by `[DONE]`."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        response.headers.update(scripted.headers)
        try:
            await response.prepare(request)
            started = asyncio.get_running_loop().time()
            for sent, chunk in enumerate(chunks):
                if sent == scripted.drop_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if sent == scripted.error_after:
                    await response.write(_event(json.dumps(_STREAM_ERROR)))
                    break
                await self._pace(scripted, due=started + sent * scripted.gap)
                await response.write(_event(json.dumps(chunk)))
            await response.write(_event("[DONE]"))
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client hung up (it stopped reading): a real server stops writing
        return response

    async def _pace(self, scripted: Scripted, *, due: float) -> None:
        """Each chunk at its time (`due`), however coarse the loop's timer: a gap shorter than
        a millisecond still adds up to the rate it describes."""
        if scripted.gap:
            await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))
        if scripted.paced:
            async with self._chunks_changed:
                await self._chunks_changed.wait_for(lambda: self._chunks_allowed >= 1)
                self._chunks_allowed -= 1


def _completion(message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    message = {"refusal": None, **message}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "",
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
    }


# What OpenAI streams when it fails after the 200 has gone (openai-python's `_streaming.py`
# raises it as an `APIError`).
_STREAM_ERROR = _openai_error(
    "The server had an error while processing your request. Sorry about that!", "server_error"
)


def _chunks(payload: dict[str, Any], request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A completion as OpenAI streams it: the role, the content or refusal piece by piece, the
    finish reason, and the usage if asked for (then every other chunk has `usage: null`)."""
    [choice] = payload["choices"]
    message = choice["message"]
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    head = {
        "id": payload["id"],
        "object": "chat.completion.chunk",
        "created": payload["created"],
        "model": payload["model"],
    }
    tail = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        return {**head, "choices": choices, **tail}

    if message.get("refusal"):
        yield chunk({"role": "assistant", "content": None, "refusal": ""})
        yield from (chunk({"refusal": piece}) for piece in stream_pieces(message["refusal"]))
    else:
        yield chunk({"role": "assistant", "content": "", "refusal": None})
        content = message.get("content") or ""
        yield from (chunk({"content": piece}) for piece in stream_pieces(content))
    yield chunk({}, choice["finish_reason"])
    if include_usage:
        yield {**head, "choices": [], "usage": payload["usage"]}


def _event(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


def _dressed(payload: dict[str, Any], writes: Callable[[str], str]) -> dict[str, Any]:
    """The completion with its content as a model that nothing holds to a schema writes it."""
    [choice] = payload["choices"]
    content = choice["message"].get("content")
    if not content:
        return payload
    message = {**choice["message"], "content": writes(content)}
    return {**payload, "choices": [{**choice, "message": message}]}


def _with_usage(payload: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Echo the model and count tokens the cheap way (4 characters a token), deterministically."""
    prompt_chars = sum(len(str(m.get("content") or "")) for m in request["messages"])
    content = payload["choices"][0]["message"].get("content") or ""
    prompt_tokens, completion_tokens = prompt_chars // 4 + 1, len(content) // 4 + 1
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return {**payload, "model": request["model"], "usage": usage}


def _invalid_request(body: dict[str, Any]) -> str | None:
    """The checks the real endpoint makes that matter to us: model, messages, response_format,
    stream_options."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    if "stream_options" in body and not body.get("stream"):
        return "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for message in messages:
        if message.get("role") not in {"system", "developer", "user", "assistant", "tool"}:
            return f"invalid role: {message.get('role')!r}"
        if not isinstance(message.get("content"), str):
            return "message content must be a string"
    response_format = body.get("response_format")
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "json_schema" and not response_format.get("json_schema", {}).get("name"):
        return "Missing required parameter: 'response_format.json_schema.name'."
    if kind == "json_object" and not any("json" in m["content"].lower() for m in messages):
        return (
            "'messages' must contain the word 'json' in some form, to use 'response_format' of "
            "type 'json_object'."
        )
    if kind not in {"text", "json_object", "json_schema"}:
        return f"Invalid value: '{kind}'. Supported: 'text', 'json_object' and 'json_schema'."
    return None


def _error_response(status: int, message: str) -> web.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }
    return web.json_response(body, status=status)
