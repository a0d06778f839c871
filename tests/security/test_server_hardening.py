"""The HTTP front door: Slack's signature before anything reads a body, metrics kept internal,
no raw workspace IDs in metrics, and no parameters in a database error.

Everything goes through the real bot (`BotServer`) over HTTP on loopback.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.config import ConfigError, load_settings
from bot.metrics import Metrics
from bot.server import MAX_BODY_BYTES
from bot.store.database import connect
from tests.fakes.slack_requests import event_body, signed_headers, slash_command_body
from tests.slack_bot import SIGNING_SECRET, RunningBot, answer_updates, mention_event, running_bot

COMMAND = slash_command_body("backend-engineer review the retries")
FORM = "application/x-www-form-urlencoded"


async def _post(bot: RunningBot, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with bot.session.post(f"{bot.url}/slack/events", data=body, headers=headers) as reply:
        return reply.status, await reply.text()


def _signed(body: bytes, content_type: str, **overrides: str) -> dict[str, str]:
    headers = {**signed_headers(body, SIGNING_SECRET), "Content-Type": content_type}
    return {**headers, **overrides}


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def _rejected(metrics: str, reason: str) -> float:
    found = re.search(rf'oi_slack_rejected_requests_total{{reason="{reason}"}} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


# Signature first: 401 before the body is parsed

STALE = int(time.time()) - 6 * 60
UNSIGNED_CASES: dict[str, tuple[bytes, dict[str, str]]] = {
    "no signature": (COMMAND.encode(), {"Content-Type": FORM}),
    "no timestamp": (
        COMMAND.encode(),
        {k: v for k, v in _signed(COMMAND.encode(), FORM).items() if "Timestamp" not in k},
    ),
    "wrong secret": (
        COMMAND.encode(),
        {**signed_headers(COMMAND, "not-the-secret"), "Content-Type": FORM},
    ),
    "stale": (COMMAND.encode(), signed_headers(COMMAND, SIGNING_SECRET, timestamp=STALE)),
    "timestamp not a number": (
        COMMAND.encode(),
        _signed(COMMAND.encode(), FORM, **{"X-Slack-Request-Timestamp": "soon"}),
    ),
    "huge timestamp": (
        COMMAND.encode(),
        _signed(COMMAND.encode(), FORM, **{"X-Slack-Request-Timestamp": "9" * 5000}),
    ),
    "body changed after signing": (
        COMMAND.replace("retries", "secrets").encode(),
        _signed(COMMAND.encode(), FORM),
    ),
    "unsigned bad JSON": (b"{not json", {"Content-Type": "application/json"}),
    "unsigned payload that is not JSON": (b"payload=%7Bnope", {"Content-Type": FORM}),
    "unsigned payload that is a list": (b"payload=%5B1%5D", {"Content-Type": FORM}),
    "unsigned empty": (b"", {"Content-Type": FORM}),
    "signature of another body": (b"{}", _signed(b'{"a": 1}', "application/json")),
    # Slack's bodies are UTF-8: one that is not cannot be checked, even with a right HMAC
    "signed but not UTF-8": (b"text=\xff\xfe", _signed(b"text=\xff\xfe", FORM)),
}


@pytest.mark.parametrize("case", UNSIGNED_CASES, ids=str)
async def test_an_unverified_request_gets_401_and_does_nothing(
    case, slack_bot, fake_openai, fake_slack, caplog
):
    body, headers = UNSIGNED_CASES[case]
    calls_before = len(fake_slack.calls)
    status, said = await _post(slack_bot, body, headers)
    assert (status, json.loads(said)) == (401, {"error": "invalid request"})
    await slack_bot.settle()
    assert fake_openai.requests == [] and len(fake_slack.calls) == calls_before
    assert _tracebacks(caplog) == []
    _, metrics = await slack_bot.get("/metrics")
    assert _rejected(metrics, "signature") == 1


MALFORMED_CASES: dict[str, tuple[bytes, str]] = {
    "bad JSON": (b'{"type": "event_callback",', "application/json"),
    "JSON that is a list": (b"[1, 2]", "application/json"),
    "JSON that is a string": (b'"event_callback"', "application/json"),
    "form declared as JSON": (COMMAND.encode(), "application/json"),
    "payload that is not JSON": (b"payload=%7Bnope", FORM),
    "payload that is a list": (b"payload=%5B%7B%7D%5D", FORM),
    "empty body": (b"", FORM),
    "empty JSON object": (b"{}", "application/json"),
}


@pytest.mark.parametrize("case", MALFORMED_CASES, ids=str)
async def test_a_signed_malformed_body_gets_400_without_a_traceback(
    case, slack_bot, fake_openai, fake_slack, caplog
):
    body, content_type = MALFORMED_CASES[case]
    calls_before = len(fake_slack.calls)
    status, said = await _post(slack_bot, body, _signed(body, content_type))
    assert (status, json.loads(said)) == (400, {"error": "malformed request"})
    await slack_bot.settle()
    assert fake_openai.requests == [] and len(fake_slack.calls) == calls_before
    assert _tracebacks(caplog) == []
    _, metrics = await slack_bot.get("/metrics")
    assert _rejected(metrics, "malformed") == 1


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
async def test_a_body_over_the_limit_gets_413_unread(signed, slack_bot, fake_openai, caplog):
    body = b"text=" + b"a" * MAX_BODY_BYTES
    headers = _signed(body, FORM) if signed else {"Content-Type": FORM}
    status, _ = await _post(slack_bot, body, headers)
    assert status == 413
    await slack_bot.settle()
    assert fake_openai.requests == []
    assert _tracebacks(caplog) == []
    _, metrics = await slack_bot.get("/metrics")
    assert _rejected(metrics, "too_large") == 1


async def test_the_largest_message_slack_sends_is_under_the_limit(slack_bot, fake_slack):
    """40,000 characters of three-byte text, as text and again in rich-text blocks."""
    words = "€" * 39_990
    event = mention_event(f"<@UBOT> {words}")
    section = {"type": "rich_text_section", "elements": [{"type": "text", "text": words}]}
    event["blocks"] = [{"type": "rich_text", "block_id": "b", "elements": [section]}]
    body = event_body(event, event_id="Ev-large")
    assert 200_000 < len(body.encode()) < MAX_BODY_BYTES
    status, _ = await slack_bot.send(body)
    assert status == 200
    await slack_bot.settle()


async def test_a_signed_request_still_gets_its_answer(slack_bot, fake_openai):
    status, _ = await slack_bot.send(
        event_body(mention_event("<@UBOT> review the retries"), event_id="Ev-ok")
    )
    assert status == 200
    await slack_bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
    assert len(fake_openai.requests) == 1


# /metrics and /readyz on a port of their own


async def _status(session: aiohttp.ClientSession, port: int, path: str) -> int:
    async with session.get(f"http://127.0.0.1:{port}{path}") as reply:
        return reply.status


async def test_metrics_port_serves_metrics_and_readiness_and_port_does_not(
    settings_for, fake_slack
):
    async with running_bot(settings_for(oi_metrics_port=0), fake_slack) as bot:
        port, internal = bot.server.port, bot.server.metrics_port
        assert internal not in (0, port)
        session = bot.session
        assert await _status(session, port, "/metrics") == 404
        assert await _status(session, port, "/readyz") == 404
        assert await _status(session, port, "/healthz") == 200
        assert await _status(session, internal, "/metrics") == 200
        assert await _status(session, internal, "/readyz") == 200
        assert await _status(session, internal, "/healthz") == 200
        async with session.post(f"http://127.0.0.1:{internal}/slack/events", data=COMMAND) as r:
            assert r.status == 404  # Slack's requests only on PORT
        status, _ = await bot.send(COMMAND)
        assert status == 200
    async with aiohttp.ClientSession() as session:
        for closed in (port, internal):
            with pytest.raises(aiohttp.ClientConnectionError):
                await _status(session, closed, "/healthz")


async def test_without_a_metrics_port_everything_is_on_port(slack_bot):
    assert slack_bot.server.metrics_port == slack_bot.server.port
    assert (await slack_bot.get("/metrics"))[0] == 200
    assert (await slack_bot.get("/readyz"))[0] == 200


def test_metrics_port_must_differ_from_port(monkeypatch):
    monkeypatch.setenv("PORT", "3000")
    monkeypatch.setenv("OI_METRICS_PORT", "3000")
    with pytest.raises(ConfigError, match="OI_METRICS_PORT: .*must differ from PORT"):
        load_settings()


# No raw Slack team IDs in metrics unless asked


async def _tokens_metric_after_an_answer(bot: RunningBot) -> str:
    await bot.send(event_body(mention_event("<@UBOT> review the retries"), event_id="Ev-team"))
    await bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
    await bot.settle()
    _, metrics = await bot.get("/metrics")
    return metrics


async def test_metrics_label_workspaces_with_a_pseudonym(slack_bot):
    metrics = await _tokens_metric_after_an_answer(slack_bot)
    label = slack_bot.server.metrics.team_label("T111")
    assert re.fullmatch(r"[0-9a-f]{16}", label)
    assert f'oi_workspace_tokens_total{{team="{label}"}}' in metrics
    assert "T111" not in metrics


async def test_oi_metrics_team_ids_shows_raw_team_ids(settings_for, fake_slack, fake_openai):
    async with running_bot(settings_for(oi_metrics_team_ids=True), fake_slack) as bot:
        metrics = await _tokens_metric_after_an_answer(bot)
    assert 'oi_workspace_tokens_total{team="T111"}' in metrics


def test_pseudonyms_agree_across_replicas_and_depend_on_the_key():
    one, other_replica, other_key = (Metrics(team_key=key) for key in (b"k1", b"k1", b"k2"))
    assert one.team_label("T111") == other_replica.team_label("T111")
    assert one.team_label("T111") != other_key.team_label("T111")
    assert one.team_label("T111") != one.team_label("T222")


# The database never puts a statement's parameters in an error


async def test_a_failing_statements_error_does_not_carry_its_parameters(database_url):
    database = connect(database_url)
    secret = "question-text-that-must-not-leak"

    def failing(session: Any) -> None:
        session.execute(text("INSERT INTO no_such_table VALUES (:text)"), {"text": secret})

    try:
        with pytest.raises(DBAPIError) as raised:
            await database.run(failing)
    finally:
        await database.close()
    assert "no_such_table" in str(raised.value)
    assert secret not in str(raised.value) and secret not in repr(raised.value)
