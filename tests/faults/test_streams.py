"""Faults in a streamed answer, injected into real `oi-bot` processes: a crash mid-stream, Slack
rate limiting the appends, a stream Slack has closed. Each still ends in exactly one message in
the thread, the streamed one, holding the finished answer and no longer streaming.
"""

from __future__ import annotations

import json

from tests.databases import sqlite_url
from tests.fakes import openai_api
from tests.fakes.openai_api import VALID_ANSWER, FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tests.faults.harness import (
    CHANNEL,
    Bots,
    answers,
    assert_answered_once,
    mention,
    question_ts,
    until,
)

TS = question_ts(0)
STREAMING = {"OI_SLACK_STREAMING": "on"}


def _stream_ts(fake: FakeSlack) -> str | None:
    started = [call for call in fake.calls_to("chat.startStream") if call.status == 200]
    assert len(started) <= 1, "a second stream was started"
    return str(started[0].response["ts"]) if started else None


def _streamed_text(fake: FakeSlack) -> str:
    ts = _stream_ts(fake)
    chunks = fake.stream_chunks(CHANNEL, ts) if ts else []
    return "".join(chunk["text"] for chunk in chunks if chunk["type"] == "markdown_text")


async def _summary_streamed(fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> str:
    """Let the model write its summary (a paced stream: the role chunk, then the pieces up to
    the next key), and wait until Slack shows it; the streamed message's ts."""
    pieces = openai_api.stream_pieces(json.dumps(VALID_ANSWER))
    written = next(
        count
        for count in range(1, len(pieces) + 1)
        if '"recommendation"' in "".join(pieces[:count])
    )
    fake_openai.send_chunks(1 + written)
    await until(fake_slack, lambda fake: "Retries without" in _streamed_text(fake))
    ts = _stream_ts(fake_slack)
    assert ts is not None
    return ts


async def test_kill_9_mid_stream_then_restart_finishes_that_message(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path
) -> None:
    """The crashed process's stream is found by the next one: it is stopped, and the same message
    becomes the answer; no second answer is started."""
    database = sqlite_url(tmp_path)
    [crashed] = bots.start(database, **STREAMING)
    fake_openai.script(openai_api.paced(openai_api.answer()), openai_api.answer())
    assert await crashed.send(mention(TS)) == 200
    streamed = await _summary_streamed(fake_slack, fake_openai)
    crashed.kill()
    assert fake_slack.is_streaming(CHANNEL, streamed)
    [restarted] = bots.start(database, **STREAMING)
    await until(fake_slack, lambda fake: len(answers(fake)) == 1)
    assert await restarted.stop() == 0
    assert_answered_once(fake_slack, TS)
    [answer] = answers(fake_slack)
    assert answer.args["ts"] == streamed
    assert not fake_slack.is_streaming(CHANNEL, streamed)
    assert len(fake_openai.requests) == 2


async def test_slack_rate_limiting_appends_still_ends_in_one_answer(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path
) -> None:
    """429 on chat.appendStream, past the client's own retries: the steps and text wait for the
    next append, and the answer still lands once, in the streamed message."""
    [bot] = bots.start(sqlite_url(tmp_path), **STREAMING)
    fake_slack.rate_limit("chat.appendStream", times=12, retry_after=0)
    fake_openai.script(openai_api.spaced(openai_api.answer(), 0.02))
    assert await bot.send(mention(TS)) == 200
    await until(fake_slack, lambda fake: len(answers(fake)) == 1)
    assert await bot.stop() == 0
    assert any(call.status == 429 for call in fake_slack.calls_to("chat.appendStream"))
    assert_answered_once(fake_slack, TS)
    [answer] = answers(fake_slack)
    assert answer.args["ts"] == _stream_ts(fake_slack)


async def test_a_stream_slack_closed_is_finished_with_an_update(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path
) -> None:
    """Slack closes a stream left idle (message_not_in_streaming_state): what is left of the
    answer is not appended; the finished answer replaces the message with chat.update."""
    [bot] = bots.start(sqlite_url(tmp_path), **STREAMING)
    fake_openai.script(openai_api.paced(openai_api.answer()))
    assert await bot.send(mention(TS)) == 200
    streamed = await _summary_streamed(fake_slack, fake_openai)
    fake_slack.expire_stream(CHANNEL, streamed)
    fake_openai.release()
    await until(fake_slack, lambda fake: len(answers(fake)) == 1)
    assert await bot.stop() == 0
    assert_answered_once(fake_slack, TS)
    [answer] = answers(fake_slack)
    assert answer.args["ts"] == streamed
