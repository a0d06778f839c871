"""`oi-bot` as a real process: start-up checks, Socket Mode, and a SIGTERM that loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.server import BotServer, main, shown_database
from tests.databases import sqlite_url
from tests.fakes import openai_api
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import sample, signed_headers, slash_command_body, socket_envelope
from tests.faults.harness import OI_BOT, BotProcess
from tests.slack_bot import OPENAI_KEY, SIGNING_SECRET


def _environment(
    fake_slack: FakeSlack | None, fake_openai: FakeOpenAI | None, tmp_path: Path, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_", "OI_"))}
    env.update(PORT="0", LOG_FORMAT="json", DATABASE_URL=sqlite_url(tmp_path))
    env.update(  # nothing reachable: these tests read no repository and no ticket
        GITHUB_API_URL="http://127.0.0.1:9/api/v3", LINEAR_API_URL="http://127.0.0.1:9/graphql"
    )
    if fake_slack is not None:
        env.update(
            SLACK_BOT_TOKEN=fake_slack.bot_token,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=fake_slack.api_url,
        )
    if fake_openai is not None:
        env.update(OPENAI_API_KEY=OPENAI_KEY, OPENAI_BASE_URL=fake_openai.base_url)
    env.update(extra)
    return env


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        ("SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN"),
        ("SLACK_SIGNING_SECRET", "SLACK_SIGNING_SECRET"),
        ("OPENAI_API_KEY", "OPENAI_API_KEY"),
    ],
)
def test_missing_credentials_are_one_line_and_exit_2(
    drop, named, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """`oi-bot`'s own entry point, in this process: the start-up checks, without a process each
    (the commands that run it are checked once, below)."""
    env = _environment(None, None, tmp_path)
    env.update(SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s", OPENAI_API_KEY="sk-1")
    del env[drop]
    for name in os.environ:
        if name.startswith(("SLACK_", "OPENAI_", "OI_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main() == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and named in said and said.startswith("oi-bot: ")


@pytest.mark.parametrize("command", [[str(OI_BOT)], [sys.executable, "-m", "bot"]])
def test_both_commands_run_oi_bot_and_say_what_is_missing_in_one_line(command, tmp_path):
    env = _environment(None, None, tmp_path)
    env.update(SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s")
    result = _run(command, env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "OPENAI_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "wrong"), [("SLACK_BOT_TOKEN", "xoxb-wrong"), ("SLACK_APP_TOKEN", "xapp-wrong")]
)
def test_a_refused_token_is_a_clear_error(name, wrong, fake_slack, fake_openai, tmp_path):
    """One line, and nothing left open: no "Unclosed client session" after it. (A refused
    app-level token would otherwise have Socket Mode retry it for ever.)"""
    env = _environment(fake_slack, fake_openai, tmp_path, **{name: wrong})
    result = _run([str(OI_BOT)], env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"oi-bot: {name} was refused by Slack (invalid_auth)"]


def test_slack_unreachable_at_start_is_one_line_naming_slack_api_url(fake_openai, tmp_path):
    """Connection refused (a DNS failure takes the same path: aiohttp's ClientConnectorError)."""
    env = _environment(
        None,
        fake_openai,
        tmp_path,
        SLACK_BOT_TOKEN="xoxb-1",
        SLACK_SIGNING_SECRET="s",
        SLACK_API_URL="http://127.0.0.1:9/api/",
    )
    result = _run([str(OI_BOT)], env)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()  # no traceback, no "Unclosed client session"
    assert line.startswith("oi-bot: Slack could not be reached at SLACK_API_URL=http://127.0.0.1:9")
    assert "Connect call failed" in line


def test_a_database_that_cannot_be_opened_is_one_line_without_its_password(
    fake_slack, fake_openai, tmp_path
):
    env = _environment(
        fake_slack,
        fake_openai,
        tmp_path,
        DATABASE_URL="postgresql+asyncpg://oi:hunter2@127.0.0.1:9/oi",
    )
    result = _run([str(OI_BOT)], env)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("oi-bot: the database at DATABASE_URL=postgresql+asyncpg://oi:***@")
    assert "hunter2" not in line


def test_ready_is_one_human_line_and_no_library_chatter(fake_slack, fake_openai, tmp_path):
    """stdout: how Slack reaches the bot, the database, the personas; stderr: our JSON log only,
    without Alembic's migration steps or slack_bolt's warning about the token we gave it."""
    process = subprocess.Popen(
        [str(OI_BOT)],
        env=_environment(fake_slack, fake_openai, tmp_path, LOG_LEVEL="INFO"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline()
    process.send_signal(signal.SIGTERM)
    rest, log = process.communicate(timeout=30)
    assert process.returncode == 0, log
    assert re.fullmatch(
        r"oi-bot ready: HTTP on port \d+ \(Slack posts to /slack/events\), "
        rf"database {re.escape(sqlite_url(tmp_path))}, personas: backend-engineer\n",
        ready,
    )
    assert rest == ""
    loggers = {json.loads(line)["logger"] for line in log.splitlines()}
    assert loggers == {"bot.server"}, log


def test_the_ready_line_hides_the_database_password():
    shown = shown_database("postgresql+asyncpg://oi:hunter2@db.internal:5432/oi")
    assert shown == "postgresql+asyncpg://oi:***@db.internal:5432/oi"


@pytest.fixture
def bot_process(fake_slack, fake_openai, tmp_path) -> Iterator[BotProcess]:
    """oi-bot started on a free port (read from its own `server.started` log line)."""
    process = BotProcess(_environment(fake_slack, fake_openai, tmp_path))
    try:
        process.wait_started()
        yield process
    finally:
        process.kill()


async def test_sigterm_finishes_the_answer_in_flight_then_exits_0(
    bot_process, fake_slack, fake_openai
):
    process = bot_process
    fake_openai.script(openai_api.held(openai_api.answer()))
    body = slash_command_body("backend-engineer review the retries", trigger_id="t-sigterm")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{process.url}/healthz") as health,
    ):
        assert health.status == 200
    assert await process.send(body) == 200
    await asyncio.to_thread(fake_openai.requests.wait_for, 1)  # the LLM call is in flight
    process.terminate()
    fake_openai.release()
    assert await process.exited(30) == 0
    answers = [
        call
        for call in fake_slack.calls_to("chat.update")
        if call.args["blocks"][0]["type"] == "header"
    ]
    assert len(answers) == 1 and answers[0].status == 200
    assert process.wait_for_log("server.stopped")


async def test_socket_mode_answers_events_and_still_serves_health(
    settings_for, fake_slack, fake_openai
):
    settings = settings_for(
        slack_app_token=fake_slack.app_token,
        slack_signing_secret=None,
    )
    server = BotServer(settings)
    await server.start()
    try:
        event = sample("app_mention.json")
        event["event"].update(text="<@UBOT> review the retries", channel="C111", user="W111")
        envelope = socket_envelope(event, envelope_id="env-1")
        await asyncio.to_thread(fake_slack.send_envelope, envelope)
        await asyncio.to_thread(fake_slack.wait_for_ack, "env-1")
        [update] = await asyncio.to_thread(fake_slack.wait_for_calls, "chat.update", 1)
        assert update.args["blocks"][0]["type"] == "header"
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{server.port}"
            async with session.get(f"{base}/healthz") as health:
                assert health.status == 200
            async with session.post(f"{base}/slack/events", data="{}") as events:
                assert events.status == 404  # Socket Mode takes no HTTP requests from Slack
    finally:
        await server.stop()


async def test_while_stopping_new_requests_get_503_so_slack_retries_elsewhere(
    settings_for, fake_slack, fake_openai
):
    settings = settings_for()
    server = BotServer(settings)
    await server.start()
    fake_openai.script(openai_api.held(openai_api.answer()))
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{server.port}/slack/events"
        first = slash_command_body("backend-engineer review", trigger_id="t-1")
        async with session.post(
            url, data=first, headers=signed_headers(first, SIGNING_SECRET)
        ) as r:
            assert r.status == 200
        await asyncio.to_thread(fake_openai.requests.wait_for, 1)
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0)  # let stop() begin: it stops accepting before its first await
        second = slash_command_body("backend-engineer again", trigger_id="t-2")
        async with session.post(
            url, data=second, headers=signed_headers(second, SIGNING_SECRET)
        ) as r:
            assert r.status == 503
        fake_openai.release()
        await stopping
    assert len(fake_openai.requests) == 1
    assert (await asyncio.to_thread(fake_slack.wait_for_calls, "chat.update", 1))[0].status == 200
