"""A small soak: two replicas on PostgreSQL answer 200 questions while one of them is killed -9
three times, Slack delivers some questions twice and rate-limits some posts and edits. Every
question is answered exactly once: none failed, none lost, none shown twice.

Deterministic: the kills and 429s come at chosen questions, and the test waits on what Slack
received, never on time. A 429 is injected only once the previous one was served, as Slack's
own are spread out: a burst longer than the bot's bounded retries (`RATE_LIMIT_RETRIES` in
bot/slack/client.py) would fail its question by design, which is not what this soak is about.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from tests.fakes.slack_api import FakeSlack
from tests.faults.harness import (
    CHANNEL,
    Bots,
    assert_one_answer_shown,
    failures,
    mention,
    own_postgres_database,
    question_ts,
    rate_limited,
    until,
)

QUESTIONS = 200
DELIVERED_TWICE_EVERY = 10  # question 0, 10, 20…: Slack's retry reaches the other replica too
KILLED_AFTER = (50, 101, 150)  # the replica that took this question is killed at once
RATE_LIMITED_EVERY = 20  # before question 7, 27, 47…: one 429 each on a post and on an edit
# How the reply is started (and so which post is rate-limited): a streamed message (the
# default), or a placeholder.
REPLIES = {
    "streamed": ({"OI_SLACK_STREAMING": "on"}, ("chat.startStream", "chat.update")),
    "placeholder": ({"OI_SLACK_STREAMING": "off"}, ("chat.postMessage", "chat.update")),
}
BUSY = {  # one asker, her questions queued behind two model slots per replica
    "OI_USER_RATE_PER_MINUTE": "10000",
    "OI_USER_MAX_IN_FLIGHT": "10000",
    "OI_MAX_CONCURRENCY": "2",
    "OI_QUEUE_LIMIT": "1000",
}


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """PostgreSQL for this test alone: the soak outlasts the shared test database's emptyings."""
    async with own_postgres_database() as url:
        yield url


@pytest.mark.parametrize("reply", REPLIES)
async def test_two_replicas_killed_three_times_answer_every_question_exactly_once(
    bots: Bots, fake_slack: FakeSlack, database: str, reply: str
) -> None:
    """Three times, the replica that has just acked a question is killed -9 (what it holds is
    queued, waiting on the model, or being shown) and a new one started; the survivors resume
    its questions once its leases run out. Each thread ends with one message, the answer."""
    variables, rate_limited_methods = REPLIES[reply]
    replicas = bots.start(database, count=2, **BUSY, **variables)
    threads = [question_ts(n) for n in range(QUESTIONS)]
    injected = 0
    for n, ts in enumerate(threads):
        if n % RATE_LIMITED_EVERY == 7:
            await until(fake_slack, _served_429s(injected))
            for method in rate_limited_methods:
                fake_slack.rate_limit(method, retry_after=0)
            injected += len(rate_limited_methods)
        first, other = replicas[n % 2], replicas[(n + 1) % 2]
        assert await first.send(mention(ts)) == 200
        if n % DELIVERED_TWICE_EVERY == 0:
            assert await other.send(mention(ts), retry=1) == 200
        if n in KILLED_AFTER:
            first.kill()
            [replicas[n % 2]] = bots.start(database, **BUSY, **variables)
    await until(fake_slack, lambda fake: _answered(fake, threads) or bool(failures(fake)))
    assert await asyncio.gather(*(replica.stop() for replica in replicas)) == [0, 0]
    assert failures(fake_slack) == []
    for ts in threads:
        assert_one_answer_shown(fake_slack, ts)
    assert len(rate_limited(fake_slack)) == injected == 20
    logged = [line for bot in bots.started for line in bot.events]
    assert [line for line in logged if line["level"] in ("error", "critical")] == []
    assert not [line for line in logged if line["event"] == "request.slack_failed"]
    assert [line for line in logged if line["event"] == "request.resumed"], "no churn exercised"


def _served_429s(count: int) -> Callable[[FakeSlack], bool]:
    """Whether Slack has answered `count` calls with 429 (all those injected so far)."""
    return lambda fake: len(rate_limited(fake)) >= count


def _answered(fake_slack: FakeSlack, threads: list[str]) -> bool:
    """Every thread shows one message, and it is an answer (its first block the header; a
    message still streaming may have no blocks yet)."""
    return all(
        [
            (message.get("blocks") or [{}])[0].get("type")
            for message in fake_slack.messages(CHANNEL, ts)
        ]
        == ["header"]
        for ts in threads
    )
