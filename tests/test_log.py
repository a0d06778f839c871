"""One logging pipeline: structlog and stdlib loggers alike, request ids bound, secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from bot.log import configure_logging, request_context

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
