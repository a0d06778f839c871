"""A local OpenAI-compatible server: `POST /v1/chat/completions` with scripted replies.

Each test queues the replies it wants (a valid answer, malformed content, a refusal, a truncated
answer, an HTTP error, a hang, a proxy's HTML page); when the queue is empty the server answers
with a valid Answer. Every request is recorded so tests can assert on the messages the bot sent.
Response bodies follow OpenAI's chat completion object
(https://platform.openai.com/docs/api-reference/chat/object) and its error object; requests are
checked the way the real endpoint checks them.

A `ServerFamily` makes the server behave like another OpenAI-compatible one in what matters to
structured output: which `response_format` it refuses, with which error, and how its model writes
when nothing holds it to a schema. Each family is modelled on that server's documented behaviour
or its issue tracker (cited at each one).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
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


@dataclass(frozen=True)
class Scripted:
    """One scripted reply: a status, headers and a JSON body (or a `page` of another type), held
    back until `release()` if `held`."""

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    held: bool = False
    page: str | None = None
    content_type: str = "application/json"


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


def _fenced(content: str) -> str:
    return f"```json\n{content}\n```"


def _chatty(content: str) -> str:
    return (
        "Sure! Here is my review of the retry design, as JSON:\n\n"
        f"{content}\n\nLet me know if you want me to expand on any of the risks {{or owners}}."
    )


@dataclass(frozen=True)
class ServerFamily:
    """How one kind of OpenAI-compatible server treats `response_format`.

    `refuses` maps a response_format type to the error status and body the server answers it
    with; `free_under` are the response_format types (None: none sent) under which its model
    writes freely, and `writes` is how it then dresses the JSON it was asked for.
    """

    name: str
    refuses: Mapping[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    free_under: frozenset[str | None] = frozenset()
    writes: Callable[[str], str] = str


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
                'response_format type must be one of "text" or "json_object", but got: '
                "json_schema",
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


class FakeOpenAI:
    """The server and its script; `requests` holds every request body received, in order."""

    def __init__(self, family: ServerFamily = OPENAI) -> None:
        self.family = family
        self.requests: RequestLog[dict[str, Any]] = RequestLog()
        self.authorizations: list[str | None] = []
        self._script: deque[Scripted] = deque()
        self._released = asyncio.Event()
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
        """Let every held reply go, now and from now on."""
        self._server.call(self._release)

    async def _release(self) -> None:
        self._released.set()

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        self.authorizations.append(request.headers.get("Authorization"))
        body = await request.json()
        self.requests.append(body)
        problem = _invalid_request(body)
        if problem:
            return _error_response(400, problem)
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error_response(401, "You didn't provide an API key.")
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
        return web.json_response(payload, status=scripted.status, headers=scripted.headers)


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
    """The checks the real endpoint makes that matter to us: model, messages, response_format."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
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
