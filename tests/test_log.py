"""One logging pipeline: structlog and stdlib loggers alike, request ids bound, secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from bot.log import VENDOR_LOGGERS, configure_logging, request_context
from tests.fakes import openai_api
from tests.fakes.github_api import FakeGitHub
from tests.fakes.linear_api import FakeLinear
from tests.fakes.openai_api import VALID_ANSWER
from tests.fakes.slack_requests import event_body, slash_command_body
from tests.slack_bot import answer_updates, mention_event, running_bot

SECRET = "xoxb-very-secret-token"


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    handlers = logging.getLogger().handlers[:]
    configure_logging(level="INFO", log_format="json", secrets=[SECRET], stream=stream)
    yield stream
    logging.getLogger().handlers[:] = handlers
    structlog.reset_defaults()


def _events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_structlog_and_stdlib_share_the_json_pipeline(log_stream):
    with request_context("req-1"):
        structlog.get_logger("bot.test").info("asked", tokens=3)
        logging.getLogger("slack_bolt.App").warning("bolt says %s", "hi")
    structlog.get_logger("bot.test").info("outside")
    asked, bolt, outside = _events(log_stream)
    assert asked["event"] == "asked" and asked["tokens"] == 3 and asked["request_id"] == "req-1"
    assert bolt["event"] == "bolt says hi" and bolt["logger"] == "slack_bolt.App"
    assert bolt["request_id"] == "req-1" and bolt["level"] == "warning"
    assert "request_id" not in outside


def test_secrets_are_scrubbed_wherever_they_appear(log_stream):
    structlog.get_logger("bot.test").info(f"token {SECRET}", headers={"auth": f"Bearer {SECRET}"})
    logging.getLogger("openai").error("sent %s", SECRET)
    text = log_stream.getvalue()
    assert SECRET not in text
    assert text.count("[redacted]") == 3


def test_level_filters(log_stream):
    logging.getLogger("openai").debug("noise")
    assert log_stream.getvalue() == ""


# Through the real bot: at DEBUG, what vendors log carries no body, question, prompt or token.

QUESTION = "why-does-QUESTION-MARKER-7f3a-retry"
PR_BODY = "PR-BODY-MARKER-51c2 changes charging"
TICKET_TEXT = "TICKET-MARKER-e8b4 seen on timeouts"
ANSWER_TEXT = "ANSWER-MARKER-2a6d retries are bounded"
PRIVATE = "G111"  # a private channel: linking a private source there needs no confirmation


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """The one pipeline at DEBUG, without the secret scrubber: a token a vendor logs shows."""
    stream = io.StringIO()
    handlers, level = logging.getLogger().handlers[:], logging.getLogger().level
    vendor_levels = {name: logging.getLogger(name).level for name in VENDOR_LOGGERS}
    configure_logging(level="DEBUG", log_format="json", secrets=(), stream=stream)
    yield stream
    logging.getLogger().handlers[:] = handlers
    logging.getLogger().setLevel(level)
    for name, vendor_level in vendor_levels.items():
        logging.getLogger(name).setLevel(vendor_level)
    structlog.reset_defaults()


def _add_sources(fake_github: FakeGitHub, fake_linear: FakeLinear) -> None:
    fake_github.add_repo("acme", "payments", readme="# payments")
    fake_github.add_pull(
        "acme",
        "payments",
        42,
        title="Retry charges",
        body=PR_BODY,
        files=[
            {
                "filename": "charge.py",
                "status": "modified",
                "additions": 1,
                "deletions": 0,
                "changes": 1,
                "patch": "@@ -1 +1,2 @@\n def charge():\n+    retry()",
            }
        ],
        head_sha="b" * 40,
    )
    fake_linear.add_team("PAY", "Payments")
    fake_linear.add_issue("PAY-123", title="Duplicate charges", description=TICKET_TEXT)


async def test_at_debug_vendors_log_no_body_question_or_token(
    debug_log, settings_for, fake_slack, fake_openai, fake_github, fake_linear
):
    _add_sources(fake_github, fake_linear)
    fake_openai.script(openai_api.answer({**VALID_ANSWER, "summary": ANSWER_TEXT}))
    settings = settings_for(oi_link_policy="anyone")  # linking is not what this test is about
    async with running_bot(settings, fake_slack) as bot:
        for link in ("link github acme/payments", "link linear PAY"):
            url = fake_slack.response_url(link)
            await bot.send(slash_command_body(link, channel=PRIVATE, response_url=url))
        await bot.wait_for(lambda fake: len(fake.calls_to("response_url")) == 2)
        pr_url = f"{fake_github.web_url}/acme/payments/pull/42"
        question = f"<@UBOT> {QUESTION} in <{pr_url}|the PR> (PAY-123)"
        await bot.send(event_body(mention_event(question, channel=PRIVATE), event_id="Ev-debug"))
        await bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
        await bot.settle()
    logging.getLogger("bot.test").debug("DEBUG-LINES-SHOW")

    prompt = json.dumps(fake_openai.requests[0])
    assert PR_BODY in prompt and TICKET_TEXT in prompt  # both were read
    text = debug_log.getvalue()
    assert "DEBUG-LINES-SHOW" in text
    for private in (
        QUESTION,
        PR_BODY,
        TICKET_TEXT,
        ANSWER_TEXT,
        *settings.secret_values(),
    ):
        assert private not in text, private
    vendors = [e for e in _events(debug_log) if e.get("logger", "").split(".")[0] in VENDOR_LOGGERS]
    assert all(e["level"] in ("warning", "error", "critical") for e in vendors), vendors
