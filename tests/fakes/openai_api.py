"""A local OpenAI-compatible server: `POST /v1/chat/completions` with scripted replies.

Each test queues the replies it wants (a valid answer, malformed content, a refusal, a truncated
answer, an HTTP error, a hang); when the queue is empty the server answers with a valid Answer.
Every request is recorded so tests can assert on the messages the bot sent. Response bodies follow
OpenAI's chat completion object (https://platform.openai.com/docs/api-reference/chat/object) and
its error object; requests are checked the way the real endpoint checks them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
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
    """One scripted reply: a status, headers and a body, held back until `release()` if `held`."""

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    held: bool = False


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


def hang() -> Scripted:
    """No answer until the test releases it (or the server stops); then a 503."""
    return replace(error(503, "server stopped"), held=True)


def held(scripted: Scripted) -> Scripted:
    """`scripted`, sent only when the test calls `release()`: an LLM call kept in flight."""
    return replace(scripted, held=True)


class FakeOpenAI:
    """The server and its script; `requests` holds every request body received, in order."""

    def __init__(self) -> None:
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
        scripted = self._script.popleft() if self._script else answer()
        if scripted.held:
            await self._released.wait()
        payload = dict(scripted.body or {})
        if scripted.status == 200:
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
    """The checks the real endpoint makes that matter to us: model, messages, strict schema."""
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
    if response_format is not None:
        schema = response_format.get("json_schema", {})
        if response_format.get("type") != "json_schema" or not schema.get("name"):
            return "response_format must be a named json_schema"
    return None


def _error_response(status: int, message: str) -> web.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }
    return web.json_response(body, status=status)
