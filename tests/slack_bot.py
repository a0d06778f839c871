"""The real bot (`BotServer`) running in the test's event loop, driven by signed HTTP requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.config import Settings
from bot.server import BotServer
from tests.fakes.github_api import FakeGitHub
from tests.fakes.linear_api import FakeLinear
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack, SlackCall
from tests.fakes.slack_requests import (
    block_actions_body,
    sample,
    signed_headers,
    slash_command_body,
)

SIGNING_SECRET = "test-signing-secret"
OPENAI_KEY = "sk-test-bot-0123456789"


def bot_settings(
    *,
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    fake_github: FakeGitHub,
    fake_linear: FakeLinear,
    database_url: str,
    **overrides: Any,
) -> Settings:
    """Every vendor on its local fake, so no test can reach the real one."""
    values: dict[str, Any] = dict(
        slack_bot_token=fake_slack.bot_token,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake_slack.api_url,
        openai_api_key=OPENAI_KEY,
        openai_base_url=fake_openai.base_url,
        openai_model="test-model",
        github_token=fake_github.token,
        github_api_url=fake_github.api_url,
        linear_api_key=fake_linear.api_key,
        linear_api_url=fake_linear.api_url,
        oi_context_timeout_seconds=5,
        oi_llm_max_retries=0,
        oi_llm_timeout_seconds=5,
        database_url=database_url,
        port=0,
        oi_shutdown_grace_seconds=5,
        # The placeholder-then-update path, which most tests read most simply; the streamed
        # path (the default) is tests/test_live_answers.py's and tests/faults/test_streams.py's.
        oi_slack_streaming="off",
    )
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_bot(settings: Settings, fake_slack: FakeSlack) -> AsyncIterator[RunningBot]:
    """oi-bot started in this event loop with `settings`, stopped (gracefully) afterwards."""
    server = BotServer(settings)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield RunningBot(server=server, session=session, fake_slack=fake_slack)
    finally:
        await server.stop()


@dataclass
class RunningBot:
    server: BotServer
    session: aiohttp.ClientSession
    fake_slack: FakeSlack

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def send(
        self, body: str, *, headers: dict[str, str] | None = None, retry: int | None = None
    ) -> tuple[int, str]:
        """POST a body to /slack/events signed as Slack signs it (or with the given headers)."""
        sent = headers if headers is not None else signed_headers(body, SIGNING_SECRET)
        if retry is not None:
            sent = {**sent, "X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        async with self.session.post(f"{self.url}/slack/events", data=body, headers=sent) as reply:
            return reply.status, await reply.text()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(f"{self.url}{path}") as reply:
            return reply.status, await reply.text()

    async def wait_for(self, predicate: Callable[[FakeSlack], bool]) -> None:
        await asyncio.to_thread(self.fake_slack.wait_for, predicate)

    async def wait_for_calls(self, method: str, count: int) -> list[Any]:
        return await asyncio.to_thread(self.fake_slack.wait_for_calls, method, count)

    async def link(
        self, kind: str, target: str, *, channel: str = "C111", user: str = "WADMIN"
    ) -> None:
        """`/oi link <kind> <target>` typed by a workspace admin in `channel`, confirmed with the
        button when the bot asks (private content into a public channel), until it is linked."""
        self.fake_slack.add_user(user, is_admin=True)
        name = f"link/{kind}/{target}/{channel}"
        url = self.fake_slack.response_url(name)
        said = slash_command_body(
            f"link {kind} {target}", channel=channel, user=user, response_url=url
        )
        await self.send(said)
        reply = await self._response(name, 1)
        if reply.args.get("blocks"):
            [button] = reply.args["blocks"][-1]["elements"]
            click = block_actions_body(
                button["action_id"], button["value"], channel=channel, user=user, response_url=url
            )
            await self.send(click)
            reply = await self._response(name, 2)
        assert reply.args["text"].startswith("Linked"), reply.args["text"]

    async def _response(self, name: str, count: int) -> SlackCall:
        """The `count`th message the bot sent to the response URL `name`."""

        def sent(fake: FakeSlack) -> list[SlackCall]:
            return [c for c in fake.calls_to("response_url") if c.path == f"/response/{name}"]

        await self.wait_for(lambda fake: len(sent(fake)) >= count)
        return sent(self.fake_slack)[count - 1]

    async def settle(self) -> None:
        """Wait until the bot has no work in flight (so a test can assert nothing else happens)."""
        await self.server.tasks.drain(timeout=10)


def mention_event(
    text: str,
    *,
    ts: str = "1700000100.000100",
    channel: str = "C111",
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """An `app_mention` event from W111, built from Slack's own sample."""
    event = sample("app_mention.json")["event"]
    event.update(text=text, ts=ts, channel=channel, user="W111")
    event.pop("thread_ts", None)
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def message_event(
    text: str, *, ts: str, thread_ts: str | None = None, channel: str = "C111", **extra: Any
) -> dict[str, Any]:
    """A `message` event from W111 (in a thread when `thread_ts` is given), from the sample."""
    event = sample("message.thread_reply.json")["event"]
    event.update(text=text, ts=ts, channel=channel, user="W111", **extra)
    event.pop("blocks", None)
    if thread_ts:
        event["thread_ts"] = thread_ts
    else:
        event.pop("thread_ts", None)
        event.pop("parent_user_id", None)
    return event


def answer_updates(fake_slack: FakeSlack) -> list[SlackCall]:
    """The chat.update calls that put an answer (a header block first) in place of a placeholder."""
    return [
        call
        for call in fake_slack.calls_to("chat.update")
        if call.args.get("blocks") and call.args["blocks"][0]["type"] == "header"
    ]
