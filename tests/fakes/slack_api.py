"""A local Slack: the Web API methods the bot calls, Socket Mode, and slash command response URLs.

The bot talks to it exactly as to slack.com: slack_sdk's `AsyncWebClient(base_url=fake.api_url)`
posts `POST /api/<method>` with the token in `Authorization: Bearer …` and its arguments in the
query string (auth.test, reactions.*, chat.delete), a JSON body (chat.postMessage, chat.update,
chat.postEphemeral) or a form body (anything sent with `data=`); all three are merged, as Slack
does. Answers follow Slack's documented shapes (https://docs.slack.dev/reference/methods and the
vendored `tests/vendor/slack/`): HTTP 200 with `ok: false` and an error code for a refused call,
HTTP 429 with `Retry-After` when rate limited, and the limits Slack enforces on a message (50
blocks, 40,000 characters of text). Messages are kept per channel so a test can read what a thread
shows; every call is recorded, and a `threading.Condition` lets tests wait for calls without
sleeping. Tests running async code call the waiting methods through `asyncio.to_thread`.

It also serves Slack's platform for AI apps, as its reference pages (vendored in
`tests/vendor/slack/methods/`) describe them: streamed messages (`chat.startStream`,
`chat.appendStream`, `chat.stopStream`; `expire_stream` closes one as Slack does after ~5 minutes
idle), the assistant thread methods (`assistant_thread` reads what they set), and
`files_upload_v2`'s three steps (`files.getUploadURLExternal`, a POST of the bytes to the
`upload_url` it gave, `files.completeUploadExternal`; `uploaded_files` reads them back).
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes._server import ThreadedServer

VENDOR = Path(__file__).resolve().parent.parent / "vendor" / "slack"

MAX_BLOCKS = 50
MAX_TEXT = 40_000
# `markdown_text` a streaming call may carry (docs.slack.dev/reference/methods/chat.appendStream).
# Slack also refuses a streamed message whose text grows past about as much in all, with
# msg_too_long (measured by others: CopilotKit/CopilotKit#6064, openclaw/openclaw#143882); the
# fake holds the whole message to the same figure.
MAX_STREAM_TEXT = 12_000
# The bot scopes the token has unless a test says otherwise: manifest.yml's.
DEFAULT_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "channels:read",
    "chat:write",
    "chat:write.customize",
    "commands",
    "files:write",
    "groups:history",
    "groups:read",
    "im:history",
    "im:read",
    "mpim:read",
    "users:read",
)
CHUNK_TYPES = frozenset({"markdown_text", "task_update", "plan_update", "blocks"})
TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})
_STREAM_ERRORS = frozenset(
    {
        "channel_not_found",
        "invalid_arguments",
        "invalid_chunks",
        "invalid_blocks",
        "msg_blocks_too_many",
        "msg_too_long",
    }
)

# Every error code the fake answers with on its own, per method. `fail()` may inject any other
# code that Slack documents for the method (see `fail`).
ERRORS: dict[str, frozenset[str]] = {
    "auth.test": frozenset(),
    "chat.postMessage": frozenset(
        {
            "channel_not_found",
            "no_text",
            "msg_too_long",
            "invalid_blocks",
            "invalid_blocks_format",
            "invalid_form_data",
        }
    ),
    "chat.update": frozenset(
        {
            "channel_not_found",
            "message_not_found",
            "no_text",
            "msg_too_long",
            "invalid_blocks",
            "invalid_blocks_format",
            "invalid_form_data",
        }
    ),
    "chat.postEphemeral": frozenset(
        {
            "channel_not_found",
            "user_not_in_channel",
            "no_text",
            "msg_too_long",
            "invalid_blocks",
            "invalid_blocks_format",
            "invalid_form_data",
        }
    ),
    "chat.delete": frozenset({"channel_not_found", "message_not_found"}),
    "reactions.add": frozenset({"no_item_specified", "invalid_name", "already_reacted"}),
    "reactions.remove": frozenset({"no_item_specified", "invalid_name", "no_reaction"}),
    "apps.connections.open": frozenset(),
    "users.info": frozenset({"user_not_found"}),
    "conversations.info": frozenset({"channel_not_found"}),
    "conversations.replies": frozenset({"channel_not_found", "thread_not_found"}),
    "conversations.history": frozenset({"channel_not_found", "invalid_ts_oldest"}),
    "conversations.members": frozenset({"channel_not_found", "invalid_cursor"}),
    "chat.startStream": _STREAM_ERRORS
    | {"missing_recipient_user_id", "missing_recipient_team_id", "invalid_metadata_format"},
    "chat.appendStream": _STREAM_ERRORS
    | {"message_not_found", "message_not_in_streaming_state", "no_text"},
    "chat.stopStream": _STREAM_ERRORS
    | {"message_not_found", "message_not_in_streaming_state", "invalid_metadata_format"},
    "assistant.threads.setStatus": frozenset(
        {"channel_not_found", "invalid_thread_ts", "invalid_arguments"}
    ),
    "assistant.threads.setSuggestedPrompts": frozenset({"channel_not_found", "invalid_arguments"}),
    "assistant.threads.setTitle": frozenset(
        {"channel_not_found", "invalid_thread_ts", "invalid_arguments"}
    ),
    "files.getUploadURLExternal": frozenset({"missing_argument", "invalid_arguments"}),
    "files.completeUploadExternal": frozenset({"file_not_found", "invalid_arguments"}),
}
# The people who act in Slack's sample payloads (tests/vendor/slack/samples).
SAMPLE_USERS = ("U111", "U222", "UB111", "W111", "W222")

# Errors any method can answer: a missing or wrong token, and the bodies of `rate_limit()` (429)
# and `server_error()` (500).
# Errors Slack documents for every Web API method (docs.slack.dev/reference/methods: "Common
# errors"), besides each method's own.
COMMON_ERRORS = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "ratelimited",
        "fatal_error",
        "missing_scope",
        "not_allowed_token_type",
        "method_deprecated",
        "ekm_access_denied",
        "unknown_method",
    }
)

_BOT_ICONS = {
    "image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png",
    "image_48": "https://a.slack-edge.com/80588/img/plugins/app/bot_48.png",
    "image_72": "https://a.slack-edge.com/80588/img/plugins/app/service_72.png",
}


@dataclass(frozen=True)
class SlackCall:
    """One request received: the Web API method (or `"response_url"`), its merged arguments, the
    request headers, and what the fake answered (HTTP status and JSON body)."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    path: str
    status: int
    response: dict[str, Any]

    @property
    def error(self) -> str | None:
        return None if self.response.get("ok", True) else self.response.get("error")


@dataclass
class UploadedFile:
    """A file uploaded the way `files_upload_v2` does: its name and title, the bytes posted to its
    `upload_url` (None until then), and, once completed, where it was shared."""

    id: str
    name: str
    title: str
    length: int
    content: bytes | None = None
    completed: bool = False
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None


@dataclass(frozen=True)
class _Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None


class FakeSlack:
    """The server, its message store and its records; see the module docstring."""

    def __init__(
        self,
        bot_token: str = "xoxb-test-token",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_id: str = "T111",
        app_token: str = "xapp-test-token",
        app_id: str = "A111",
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
    ) -> None:
        self.bot_token, self.bot_user_id, self.bot_id = bot_token, bot_user_id, bot_id
        self.scopes = scopes  # what Slack's `x-oauth-scopes` header lists on every answer
        self.team_id, self.app_token, self.app_id = team_id, app_token, app_id
        self._condition = threading.Condition()
        self._calls: list[SlackCall] = []
        self._messages: dict[str, dict[str, dict[str, Any]]] = {}  # channel -> ts -> message
        self._reactions: dict[tuple[str, str], list[str]] = {}  # (channel, ts) -> names
        self._injected: dict[str, deque[_Reply]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_acks: list[dict[str, Any]] = []
        self._last_ts = 1_700_000_000_000_000  # microseconds
        self._users: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._members: dict[str, list[str]] = {}
        self._streams: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (channel, ts) -> chunks
        self._open_streams: set[tuple[str, str]] = set()
        self._assistant_threads: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._files: dict[str, UploadedFile] = {}
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.delete": self._delete,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "apps.connections.open": self._connections_open,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "assistant.threads.setStatus": self._set_status,
            "assistant.threads.setSuggestedPrompts": self._set_suggested_prompts,
            "assistant.threads.setTitle": self._set_title,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }
        assert self._methods.keys() == ERRORS.keys(), "declare each method's errors in ERRORS"
        app = web.Application()
        app.router.add_post("/api/{method}", self._web_api)
        app.router.add_get("/api/{method}", self._web_api)  # slack_sdk GETs users.info & co.
        app.router.add_post("/response/{name:.*}", self._response_url)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_get("/socket-mode", self._socket_mode)
        self._server = ThreadedServer(app)

    # -- lifecycle and addresses

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def api_url(self) -> str:
        """What `SLACK_API_URL` is set to."""
        return f"{self._server.url}/api/"

    def response_url(self, name: str) -> str:
        """A slash command or interactivity `response_url` that posts back here."""
        return f"{self._server.url}/response/{name}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(before=self._close_sockets)

    # -- the workspace: people and conversations (anyone else is a plain member of the team)

    def add_user(
        self,
        user_id: str,
        *,
        team_id: str | None = None,
        is_admin: bool = False,
        is_owner: bool = False,
        is_stranger: bool = False,
    ) -> None:
        """A person as `users.info` shows them; `team_id` other than ours: Slack Connect."""
        self._users[user_id] = {
            "team_id": team_id or self.team_id,
            "is_admin": is_admin,
            "is_owner": is_owner,
            "is_primary_owner": False,
            **({"is_stranger": True} if is_stranger else {}),
        }

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str = "general",
        private: bool = False,
        ext_shared: bool = False,
        members: list[str] | None = None,
    ) -> None:
        """A channel as `conversations.info` shows it, and its members when given (otherwise
        the bot, the people of Slack's samples and those added with `add_user`). Channel ids
        without an entry follow Slack's prefixes: `D…` a DM, `G…` a private channel, anything
        else public."""
        self._channels[channel_id] = {
            "name": name,
            "is_private": private,
            "is_ext_shared": ext_shared,
            "is_shared": ext_shared,
        }
        if members is not None:
            self._members[channel_id] = list(members)

    # -- what tests read

    @property
    def calls(self) -> list[SlackCall]:
        with self._condition:
            return list(self._calls)

    def calls_to(self, method: str) -> list[SlackCall]:
        with self._condition:
            return [call for call in self._calls if call.method == method]

    def messages(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """The channel's live messages in posting order (latest version, deleted ones gone); with
        `thread_ts`, only that thread as `conversations.replies` shows it: parent, then replies."""
        with self._condition:
            stored = list(self._messages.get(channel, {}).values())
        if thread_ts is not None:
            stored = [m for m in stored if thread_ts in (m["ts"], m.get("thread_ts"))]
        return copy.deepcopy(stored)

    def reactions(self, channel: str, ts: str) -> list[str]:
        """The names of the reactions the bot has on a message, in the order it added them."""
        with self._condition:
            return list(self._reactions.get((channel, ts), []))

    def stream_chunks(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Every chunk a streamed message received, in order, from start to stop; `markdown_text`
        arguments appear as the `markdown_text` chunks they are equivalent to."""
        with self._condition:
            return copy.deepcopy(self._streams.get((channel, ts), []))

    def is_streaming(self, channel: str, ts: str) -> bool:
        with self._condition:
            return (channel, ts) in self._open_streams

    def assistant_thread(self, channel_id: str, thread_ts: str | None = None) -> dict[str, Any]:
        """What the assistant.threads.* methods last set on a thread (`status`,
        `loading_messages`, `prompts`, `prompts_title`, `title`); `thread_ts` None: prompts set on
        the agent DM without a thread."""
        with self._condition:
            return copy.deepcopy(self._assistant_threads.get((channel_id, thread_ts), {}))

    def uploaded_files(self) -> list[UploadedFile]:
        """Every file an upload URL was asked for, in order."""
        with self._condition:
            return copy.deepcopy(list(self._files.values()))

    @property
    def socket_acks(self) -> list[dict[str, Any]]:
        """Every message a Socket Mode client sent: its acks, `{"envelope_id": …, "payload": …}`."""
        with self._condition:
            return list(self._socket_acks)

    # -- failure injection: consumed in order, per method

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next `times` calls with HTTP 200 `{"ok": false, "error": error}`.

        The error must be one Slack documents for the method (the vendored spec's enum, or one the
        fake answers with itself), so a typo cannot make a test pass on an error Slack never sends.
        """
        documented = _spec_errors(self._served(method))
        if documented is not None and error not in documented | ERRORS[method] | COMMON_ERRORS:
            known = sorted(documented)
            raise ValueError(f"Slack does not document {error!r} for {method}: {known}")
        self._inject(method, _Reply(200, {"ok": False, "error": error}), times)

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """HTTP 429 with `Retry-After` (whole seconds): slack_sdk's AsyncRateLimitErrorRetryHandler
        then sleeps `retry_after + random()` seconds, so 0 keeps a test under a second."""
        body = {"ok": False, "error": "ratelimited"}
        self._inject(method, _Reply(429, body, {"Retry-After": str(retry_after)}), times)

    def server_error(self, method: str, times: int = 1) -> None:
        """HTTP 500, as in a Slack outage; slack_sdk's AsyncServerErrorRetryHandler retries it."""
        self._inject(method, _Reply(500, {"ok": False, "error": "fatal_error"}), times)

    def expire_stream(self, channel: str, ts: str) -> None:
        """Close a streamed message as Slack does once it has been idle for about 5 minutes: it
        keeps what it showed, appends and stops answer message_not_in_streaming_state, and
        chat.update still changes it (python-slack-sdk#1859)."""
        with self._condition:
            if (channel, ts) not in self._open_streams:
                raise ValueError(f"no open stream {channel} {ts}")
            self._open_streams.discard((channel, ts))
            self._messages[channel][ts]["streaming_state"] = "completed"

    def _inject(self, method: str, reply: _Reply, times: int) -> None:
        with self._condition:
            self._injected.setdefault(self._served(method), deque()).extend([reply] * times)

    def _served(self, method: str) -> str:
        if method not in self._methods and method != "response_url":
            raise ValueError(f"the fake does not serve {method!r}")
        return method

    # -- waiting without sleeping

    def wait_for(self, predicate: Callable[[FakeSlack], bool], timeout: float = 10) -> None:
        """Block until `predicate(self)` holds; checked again after every call and every ack."""
        with self._condition:
            if not self._condition.wait_for(lambda: predicate(self), timeout=timeout):
                raise AssertionError(f"timed out after {timeout}s; {self._summary()}")

    def wait_for_calls(self, method: str, count: int, timeout: float = 10) -> list[SlackCall]:
        self.wait_for(lambda fake: len(fake.calls_to(method)) >= count, timeout)
        return self.calls_to(method)

    def wait_for_ack(self, envelope_id: str, timeout: float = 10) -> dict[str, Any]:
        """The Socket Mode client's ack of an envelope, once it arrives."""
        self.wait_for(lambda fake: _ack(fake.socket_acks, envelope_id) is not None, timeout)
        return _ack(self.socket_acks, envelope_id) or {}

    def _summary(self) -> str:
        lines = [
            f"  {c.method} {c.status} {c.error or 'ok'} {json.dumps(c.args, default=str)[:200]}"
            for c in self._calls
        ]
        acks = f"{len(self._socket_acks)} Socket Mode acks"
        return f"{acks}, {len(lines)} calls:\n" + "\n".join(lines) if lines else f"{acks}, no calls"

    # -- Socket Mode

    def send_envelope(self, envelope: dict[str, Any], timeout: float = 10) -> None:
        """Push an envelope to the most recently connected Socket Mode client, once one is."""
        with self._condition:
            if not self._condition.wait_for(lambda: bool(self._sockets), timeout=timeout):
                summary = self._summary()
                raise AssertionError(f"no Socket Mode client connected in {timeout}s; {summary}")
            socket = self._sockets[-1]
        self._server.call(lambda: socket.send_json(envelope))

    async def _socket_mode(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        with self._condition:
            connections = len(self._sockets) + 1
        await socket.send_json(_hello(self.app_id, connections))
        self._record_socket(socket, connected=True)
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    with self._condition:
                        self._socket_acks.append(json.loads(message.data))
                        self._condition.notify_all()
        finally:
            self._record_socket(socket, connected=False)
        return socket

    def _record_socket(self, socket: web.WebSocketResponse, *, connected: bool) -> None:
        with self._condition:
            if connected:
                self._sockets.append(socket)
            else:
                self._sockets.remove(socket)
            self._condition.notify_all()

    async def _close_sockets(self) -> None:
        with self._condition:
            sockets = list(self._sockets)
        for socket in sockets:
            await socket.close()

    # -- HTTP

    async def _web_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _arguments(request)
        token = _bearer(request) or args.pop("token", None)
        with self._condition:
            reply = self._answer(method, token, args)
            self._record(method, args, request, reply)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    async def _response_url(self, request: web.Request) -> web.Response:
        args = await _arguments(request)
        with self._condition:
            reply = self._next_injected("response_url") or _Reply(200, {"ok": True})
            self._record("response_url", args, request, reply)
        if reply.status == 200 and reply.body.get("ok"):
            return web.Response(text="ok")
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    def _answer(self, method: str, token: str | None, args: dict[str, Any]) -> _Reply:
        """Slack's order: an unknown method, the token, (injected) limits, then the call."""
        handler = self._methods.get(method)
        if handler is None:
            return _refused("unknown_method")
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if not token:
            return _refused("not_authed")
        if token != expected:
            return _refused("invalid_auth")
        injected = self._next_injected(method)
        if injected is not None:
            return injected
        try:
            scopes = {"x-oauth-scopes": ",".join(self.scopes)}
            return _Reply(200, {"ok": True, **handler(args)}, scopes)
        except _Refusal as refusal:
            assert refusal.error in ERRORS[method], f"{method}: {refusal.error!r} is not in ERRORS"
            return _refused(refusal.error, *refusal.messages)

    def _next_injected(self, method: str) -> _Reply | None:
        queue = self._injected.get(method)
        return queue.popleft() if queue else None

    def _record(
        self, method: str, args: dict[str, Any], request: web.Request, reply: _Reply
    ) -> None:
        headers = dict(request.headers)
        self._calls.append(SlackCall(method, args, headers, request.path, reply.status, reply.body))
        self._condition.notify_all()

    # -- the methods: the fields of a success, or a _Refusal (called with the lock held)

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://oi-test.slack.com/",
            "team": "oi test",
            "user": "oi",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _required(args, "channel", "channel_not_found")
        message = {**_compose(args, self._bot_message()), "ts": self._next_ts()}
        thread_ts = args.get("thread_ts")
        if thread_ts:
            message["thread_ts"] = thread_ts
            parent = self._messages.get(channel, {}).get(thread_ts)
            if parent is not None:
                message["parent_user_id"] = parent["user"]
        self._messages.setdefault(channel, {})[message["ts"]] = message
        return {"channel": channel, "ts": message["ts"], "message": message}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = self._find(args)
        message = _compose(args, self._messages[channel][ts])
        self._messages[channel][ts] = message
        return {"channel": channel, "ts": ts, "text": message["text"], "message": message}

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        _required(args, "channel", "channel_not_found")
        _required(args, "user", "user_not_in_channel")
        _compose(args, {})
        return {"message_ts": self._next_ts()}

    def _delete(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = self._find(args)
        del self._messages[channel][ts]
        return {"channel": channel, "ts": ts}

    def _find(self, args: dict[str, Any]) -> tuple[str, str]:
        """The `channel` and `ts` of a message the bot posted."""
        channel = _required(args, "channel", "channel_not_found")
        ts = args.get("ts")
        if ts not in self._messages.get(channel, {}):
            raise _Refusal("message_not_found")
        return channel, ts

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        names, name = self._reaction_names(args)
        if name in names:
            raise _Refusal("already_reacted")
        names.append(name)
        return {}

    def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        names, name = self._reaction_names(args)
        if name not in names:
            raise _Refusal("no_reaction")
        names.remove(name)
        return {}

    def _reaction_names(self, args: dict[str, Any]) -> tuple[list[str], str]:
        """The bot's reactions on the message `channel` + `timestamp`, and the reaction's name.
        Any message will do: users' messages reach the bot as events, the fake never saw them."""
        channel = _required(args, "channel", "no_item_specified")
        timestamp = _required(args, "timestamp", "no_item_specified")
        name = _required(args, "name", "invalid_name")
        return self._reactions.setdefault((channel, timestamp), []), name

    def _connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self._server.port}/socket-mode"}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = _required(args, "user", "user_not_found")
        known = self._users.get(user_id, {"team_id": self.team_id})
        user = {
            "id": user_id,
            "name": user_id.lower(),
            "deleted": False,
            "is_bot": False,
            "is_app_user": False,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "updated": 1700000000,
            **known,
        }
        return {"user": user}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = _required(args, "channel", "channel_not_found")
        im, mpim = channel_id.startswith("D"), False
        known = self._channels.get(channel_id, {"is_private": channel_id.startswith(("G", "D"))})
        channel = {
            "id": channel_id,
            "created": 1449252889,
            "is_archived": False,
            "is_channel": not im,
            "is_group": False,
            "is_im": im,
            "is_mpim": mpim,
            "is_member": True,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_shared": False,
            "is_general": False,
            **({} if im else {"name": "general", "name_normalized": "general"}),
            **known,
        }
        return {"channel": channel}

    def _conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        """One page of `limit` members; `response_metadata.next_cursor` is the next offset."""
        channel_id = _required(args, "channel", "channel_not_found")
        members = self._members.get(channel_id)
        if members is None:
            members = [self.bot_user_id, *SAMPLE_USERS, *self._users]
        cursor = str(args.get("cursor") or "0")
        if not cursor.isdigit():
            raise _Refusal("invalid_cursor")
        start, limit = int(cursor), int(args.get("limit") or 100)
        page = members[start : start + limit]
        more = start + limit < len(members)
        next_cursor = str(start + limit) if more else ""
        return {"members": page, "response_metadata": {"next_cursor": next_cursor}}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """The thread's messages the fake keeps (the bot's), oldest first; their `metadata` only
        with `include_all_metadata`, as Slack shows it. One page: the tests' threads are short."""
        channel = _required(args, "channel", "channel_not_found")
        thread_ts = _required(args, "ts", "thread_not_found")
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        messages = [
            {k: v for k, v in m.items() if with_metadata or k != "metadata"}
            for m in self._messages.get(channel, {}).values()
            if thread_ts in (m["ts"], m.get("thread_ts"))
        ]
        return {
            "messages": copy.deepcopy(messages),
            "has_more": False,
            "response_metadata": {"next_cursor": ""},
        }

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """The channel's messages the fake keeps (the bot's) outside threads, newest first, after
        `oldest` (exclusive), a page of `limit` at a time; `metadata` as in `conversations.replies`.
        """
        channel = _required(args, "channel", "channel_not_found")
        oldest = _ts_value(args.get("oldest") or "0", "invalid_ts_oldest")
        limit = int(args.get("limit") or 100)
        start = int(args.get("cursor") or 0)
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        parents = [
            {k: v for k, v in m.items() if with_metadata or k != "metadata"}
            for m in reversed(self._messages.get(channel, {}).values())
            if m.get("thread_ts", m["ts"]) == m["ts"] and _ts_value(m["ts"], "") > oldest
        ]
        more = start + limit < len(parents)
        return {
            "messages": copy.deepcopy(parents[start : start + limit]),
            "has_more": more,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    # -- streamed messages (docs.slack.dev/reference/methods/chat.startStream and the two others)

    def _start_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        """A reply in `thread_ts`, streaming until stopped; outside a DM it is for one person."""
        channel = _required(args, "channel", "channel_not_found")
        thread_ts = _required(args, "thread_ts", "invalid_arguments")
        if not channel.startswith("D"):
            _required(args, "recipient_user_id", "missing_recipient_user_id")
            _required(args, "recipient_team_id", "missing_recipient_team_id")
        chunks = _stream_chunks(args)
        ts = self._next_ts()
        message = {**self._bot_message(), "ts": ts, "thread_ts": thread_ts}
        parent = self._messages.get(channel, {}).get(thread_ts)
        if parent is not None:
            message["parent_user_id"] = parent["user"]
        message["streaming_state"] = "in_progress"
        if args.get("metadata"):
            message["metadata"] = _metadata(args)
        _apply_chunks(message, chunks)
        self._messages.setdefault(channel, {})[ts] = message
        self._streams[(channel, ts)] = chunks
        self._open_streams.add((channel, ts))
        return {"channel": channel, "ts": ts}

    def _append_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = self._find_stream(args)
        chunks = _stream_chunks(args)
        if not chunks:
            raise _Refusal("no_text")
        message = copy.deepcopy(self._messages[channel][ts])
        _apply_chunks(message, chunks)
        self._messages[channel][ts] = message
        self._streams[(channel, ts)].extend(chunks)
        return {"channel": channel, "ts": ts}

    def _stop_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        """The last chunks, then the final `blocks` (shown below the streamed text) and
        `metadata`; the message stops streaming."""
        channel, ts = self._find_stream(args)
        chunks = _stream_chunks(args)
        message = copy.deepcopy(self._messages[channel][ts])
        _apply_chunks(message, chunks)
        if args.get("blocks"):
            blocks = _decoded(args["blocks"], "invalid_blocks")
            message["blocks"] = _checked_blocks(
                [*message.get("blocks", []), *_listed(blocks, "invalid_blocks")],
                too_many="msg_blocks_too_many",
            )
        if args.get("metadata"):
            message["metadata"] = _metadata(args)
        message["streaming_state"] = "completed"
        self._messages[channel][ts] = message
        self._streams[(channel, ts)].extend(chunks)
        self._open_streams.discard((channel, ts))
        return {"channel": channel, "ts": ts, "message": message}

    def _find_stream(self, args: dict[str, Any]) -> tuple[str, str]:
        """A message `chat.startStream` began and that still streams."""
        channel, ts = self._find(args)
        if (channel, ts) not in self._open_streams:
            raise _Refusal("message_not_in_streaming_state")
        return channel, ts

    # -- assistant threads (docs.slack.dev/reference/methods/assistant.threads.setStatus & co.)

    def _set_status(self, args: dict[str, Any]) -> dict[str, Any]:
        """An empty `status` clears it, so only a missing one is refused."""
        thread = self._assistant_thread(args, thread_required=True)
        if not isinstance(args.get("status"), str):
            raise _Refusal("invalid_arguments")
        thread["status"] = args["status"]
        loading = args.get("loading_messages")
        thread["loading_messages"] = _json_list(loading, "invalid_arguments") if loading else []
        return {}

    def _set_suggested_prompts(self, args: dict[str, Any]) -> dict[str, Any]:
        thread = self._assistant_thread(args, thread_required=False)
        prompts = _json_list(args.get("prompts"), "invalid_arguments")
        for prompt in prompts:
            if not (isinstance(prompt, dict) and prompt.get("title") and prompt.get("message")):
                raise _Refusal("invalid_arguments", "each prompt needs a title and a message")
        thread["prompts"] = prompts
        thread["prompts_title"] = args.get("title")
        return {}

    def _set_title(self, args: dict[str, Any]) -> dict[str, Any]:
        thread = self._assistant_thread(args, thread_required=True)
        thread["title"] = _required(args, "title", "invalid_arguments")
        return {}

    def _assistant_thread(self, args: dict[str, Any], *, thread_required: bool) -> dict[str, Any]:
        channel_id = _required(args, "channel_id", "channel_not_found")
        thread_ts = args.get("thread_ts") or None
        if thread_required and thread_ts is None:
            raise _Refusal("invalid_thread_ts")
        return self._assistant_threads.setdefault((channel_id, thread_ts), {})

    # -- file uploads (docs.slack.dev/reference/methods/files.getUploadURLExternal & complete…)

    def _get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = _required(args, "filename", "missing_argument")
        length = str(_required(args, "length", "missing_argument"))
        if not length.isdigit():
            raise _Refusal("invalid_arguments")
        if int(length) == 0:
            raise _Refusal("missing_argument")
        file_id = f"F{len(self._files) + 1:08d}"
        self._files[file_id] = UploadedFile(file_id, filename, filename, int(length))
        return {"upload_url": f"{self._server.url}/upload/v1/{file_id}", "file_id": file_id}

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        """Share the uploaded files, each as Slack lists it, in `channel_id` (in `thread_ts`),
        where a message with `initial_comment` shows them."""
        items = _json_list(args.get("files"), "invalid_arguments")
        if not items:
            raise _Refusal("invalid_arguments")
        uploads = []
        for item in items:
            if not isinstance(item, dict):
                raise _Refusal("invalid_arguments")
            upload = self._files.get(str(item.get("id")))
            if upload is None or upload.content is None or upload.completed:
                raise _Refusal("file_not_found")
            uploads.append((upload, item.get("title") or upload.name))
        channel, thread_ts = args.get("channel_id") or None, args.get("thread_ts") or None
        comment = args.get("initial_comment") or None
        listed = []
        for upload, title in uploads:
            upload.title, upload.completed = title, True
            upload.channel, upload.thread_ts, upload.initial_comment = channel, thread_ts, comment
            listed.append({"id": upload.id, "title": title, "name": upload.name})
        if channel is not None:
            message = {**self._bot_message(), "ts": self._next_ts(), "text": comment or ""}
            message.update({"files": listed, "upload": True})
            if thread_ts is not None:
                message["thread_ts"] = thread_ts
            self._messages.setdefault(channel, {})[message["ts"]] = message
        return {"files": [{"id": f["id"], "title": f["title"]} for f in listed]}

    async def _upload(self, request: web.Request) -> web.Response:
        """The bytes of a file, posted to the `upload_url` files.getUploadURLExternal gave; Slack
        answers in plain text."""
        content = await request.read()
        with self._condition:
            upload = self._files.get(request.match_info["file_id"])
            reply = _Reply(200, {"ok": True}) if upload else _Reply(404, {"ok": False})
            if upload is not None:
                upload.content = content
            self._record("file_upload", {"bytes": len(content)}, request, reply)
        if upload is None:
            return web.Response(status=404, text="not found")
        return web.Response(text=f"OK - {len(content)}")

    def _bot_message(self) -> dict[str, Any]:
        """A message as Slack returns one the bot posted with its bot token (`ts` still to come)."""
        return {
            "user": self.bot_user_id,
            "type": "message",
            "ts": "",
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": "",
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "deleted": False,
                "name": "oi",
                "updated": 1700000000,
                "app_id": self.app_id,
                "icons": _BOT_ICONS,
                "team_id": self.team_id,
            },
        }

    def _next_ts(self) -> str:
        """Now, as Slack's clock reads it, and strictly increasing, in its `seconds.microseconds`
        format."""
        self._last_ts = max(self._last_ts + 100, time.time_ns() // 1_000)
        return f"{self._last_ts // 1_000_000}.{self._last_ts % 1_000_000:06d}"


class _Refusal(Exception):
    """Slack refusing a call: HTTP 200, `ok: false`, an error code and maybe detail messages."""

    def __init__(self, error: str, *messages: str) -> None:
        super().__init__(error)
        self.error, self.messages = error, messages


def _ts_value(ts: str, error: str) -> float:
    """A `ts` (or `oldest`, `latest`) as the number it is."""
    try:
        return float(ts)
    except ValueError:
        raise _Refusal(error) from None


def _required(args: dict[str, Any], name: str, error: str) -> str:
    if not args.get(name):
        raise _Refusal(error)
    return args[name]


def _metadata(args: dict[str, Any]) -> dict[str, Any]:
    """A message's `metadata`: an object with an `event_type` (and its `event_payload`)."""
    metadata = _decoded(args["metadata"], "invalid_metadata_format")
    if not isinstance(metadata, dict) or "event_type" not in metadata:
        raise _Refusal("invalid_metadata_format")
    return metadata


def _compose(args: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """`base` with the message fields the call sets. Fields left out keep their value and an
    empty list removes one, as chat.update does; Slack refuses a message that shows nothing."""
    message = {key: value for key, value in {**base, **_content(args)}.items() if value != []}
    if not (message.get("text") or message.get("blocks") or message.get("attachments")):
        raise _Refusal("no_text")
    return message


def _content(args: dict[str, Any]) -> dict[str, Any]:
    """The message fields a call sets, decoded (form bodies carry JSON strings) and held to
    Slack's limits: at most 50 blocks, each an object with a `type`; at most 40,000 characters."""
    content: dict[str, Any] = {}
    for key in ("text", "blocks", "attachments", "metadata"):
        if key in args:
            value = args[key]
            if key != "text" and isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    raise _Refusal(
                        "invalid_blocks_format" if key == "blocks" else "invalid_form_data"
                    ) from None
            content[key] = value
    _checked_blocks(_listed(content.get("blocks", []), "invalid_blocks_format"))
    if len(str(content.get("text", ""))) > MAX_TEXT:
        raise _Refusal("msg_too_long")
    return content


def _checked_blocks(blocks: list[Any], too_many: str = "invalid_blocks") -> list[Any]:
    """At most 50 blocks, each an object with a `type`; the streaming methods answer too many
    with their own code, msg_blocks_too_many."""
    if len(blocks) > MAX_BLOCKS:
        detail = f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"
        raise _Refusal(too_many, detail)
    for index, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            detail = f"missing required field: type [json-pointer:/blocks/{index}]"
            raise _Refusal("invalid_blocks", detail)
    return blocks


def _decoded(value: Any, error: str) -> Any:
    """A JSON argument: as sent in a JSON body, or decoded from a form or query string."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise _Refusal(error) from None


def _listed(value: Any, error: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Refusal(error)
    return value


def _json_list(value: Any, error: str) -> list[Any]:
    """A JSON array argument, refused with `error` when missing or anything else."""
    return _listed(_decoded(value or "", error), error)


def _stream_chunks(args: dict[str, Any]) -> list[dict[str, Any]]:
    """A streaming call's content as chunks: its `markdown_text` first, then its `chunks`, each
    of a type Slack knows with the fields it needs; at most 12,000 characters of text a call."""
    chunks: list[dict[str, Any]] = []
    if args.get("markdown_text"):
        chunks.append({"type": "markdown_text", "text": str(args["markdown_text"])})
    raw = args.get("chunks")
    for chunk in _json_list(raw, "invalid_chunks") if raw else []:
        if not isinstance(chunk, dict) or not _valid_chunk(chunk):
            raise _Refusal("invalid_chunks")
        chunks.append(chunk)
    if sum(len(c["text"]) for c in chunks if c["type"] == "markdown_text") > MAX_STREAM_TEXT:
        raise _Refusal("msg_too_long")
    return chunks


def _valid_chunk(chunk: dict[str, Any]) -> bool:
    kind = chunk.get("type")
    if kind == "markdown_text":
        return isinstance(chunk.get("text"), str)
    if kind == "task_update":
        named = all(isinstance(chunk.get(f), str) and chunk[f] for f in ("id", "title"))
        return named and chunk.get("status") in TASK_STATUSES
    if kind == "plan_update":
        return isinstance(chunk.get("title"), str)
    return kind == "blocks" and isinstance(chunk.get("blocks"), list)


def _apply_chunks(message: dict[str, Any], chunks: list[dict[str, Any]]) -> None:
    """What the chunks add to a streamed message: text and blocks; tasks and plans show only in
    Slack's own rendering (read them with `stream_chunks`)."""
    for chunk in chunks:
        if chunk["type"] == "markdown_text":
            message["text"] += chunk["text"]
        elif chunk["type"] == "blocks":
            message["blocks"] = [*message.get("blocks", []), *chunk["blocks"]]
    if len(message["text"]) > MAX_STREAM_TEXT:
        raise _Refusal("msg_too_long")
    _checked_blocks(message.get("blocks", []), too_many="msg_blocks_too_many")


def _refused(error: str, *messages: str) -> _Reply:
    body: dict[str, Any] = {"ok": False, "error": error}
    if messages:
        body["response_metadata"] = {"messages": [f"[ERROR] {m}" for m in messages]}
    return _Reply(200, body)


def _hello(app_id: str, connections: int) -> dict[str, Any]:
    """Slack's first Socket Mode message (docs.slack.dev/apis/events-api/using-socket-mode)."""
    return {
        "type": "hello",
        "num_connections": connections,
        "debug_info": {
            "host": "applink-fake",
            "build_number": 1,
            "approximate_connection_time": 3600,
        },
        "connection_info": {"app_id": app_id},
    }


def _ack(acks: list[dict[str, Any]], envelope_id: str) -> dict[str, Any] | None:
    return next((ack for ack in acks if ack.get("envelope_id") == envelope_id), None)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def _arguments(request: web.Request) -> dict[str, Any]:
    """The call's arguments: query string, then the form or JSON body (Slack accepts all three)."""
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        args.update(body if isinstance(body, dict) else {})
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return args


@functools.cache
def _spec() -> dict[str, Any]:
    return json.loads((VENDOR / "slack_web_openapi_v2.json").read_text())


def _spec_errors(method: str) -> frozenset[str] | None:
    """The `error` enum the vendored Web API spec documents for a method, or the errors of its
    vendored reference page for methods newer than the spec; None where neither has any."""
    operations = _spec()["paths"].get(f"/{method}")
    if not operations:
        page = VENDOR / "methods" / f"{method}.json"
        return frozenset(json.loads(page.read_text())["errors"]) if page.exists() else None
    codes: set[str] = set()
    for operation in operations.values():
        schema = operation.get("responses", {}).get("default", {}).get("schema", {})
        codes.update(schema.get("properties", {}).get("error", {}).get("enum", []))
    return frozenset(codes) if codes else None
