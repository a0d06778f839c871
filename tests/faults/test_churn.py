"""Churn: processes killed again and again. Attempts are spent only by the question that kills
its process; a question that only waited beside it is answered exactly once.
"""

from __future__ import annotations

import asyncio

from tests.databases import sqlite_url
from tests.fakes import openai_api
from tests.fakes.github_api import FakeGitHub, add_payments_sample
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tests.faults.harness import (
    BotProcess,
    Bots,
    answers,
    assert_answered_once,
    failures,
    mention,
    question_ts,
    until,
)


async def test_a_question_that_kills_its_process_every_time_fails_after_its_attempts(
    bots: Bots,
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    fake_github: FakeGitHub,
    tmp_path,
) -> None:
    """The culprit's pull request takes its process down while being read (as an out-of-memory
    kill would), every time; a healthy question waiting on the model dies with it each time.
    After OI_MAX_ATTEMPTS (3) the culprit ends with the failure message; the healthy question,
    interrupted as often, is answered once."""
    database = sqlite_url(tmp_path)
    add_payments_sample(fake_github, files={"payments/charge.py": "def charge(): ..."})
    fake_github.hold("/repos/acme/payments")
    fake_openai.script(*[openai_api.held(openai_api.answer())] * 4)
    healthy, culprit = question_ts(0), question_ts(1)
    pull = f"<{fake_github.web_url}/acme/payments/pull/42|the PR>"
    [bot] = bots.start(database)
    assert await bot.send(mention(healthy)) == 200
    assert await bot.send(mention(culprit, f"<@UBOT> review {pull}")) == 200
    seen = (0, 0)  # requests GitHub and the model had received when the last process died
    for _ in range(3):
        # this process reads the pull request (the culprit is at risk), and the healthy
        # question waits on the model
        await asyncio.to_thread(fake_github.requests.wait_for, seen[0] + 1)
        await asyncio.to_thread(fake_openai.requests.wait_for, seen[1] + 1)
        bot = _replace(bots, bot, database)
        seen = (len(fake_github.requests), len(fake_openai.requests))
    await until(fake_slack, lambda fake: len(failures(fake)) == 1)
    fake_openai.release()
    await until(fake_slack, lambda fake: len(answers(fake)) == 1)
    assert await bot.stop() == 0
    [failure] = failures(fake_slack)
    assert "after 3 attempts" in failure.args["text"]
    assert_answered_once(fake_slack, healthy)
    [resumed] = bot.logged("request.done")
    assert resumed["outcome"] == "answered"


def _replace(bots: Bots, bot: BotProcess, database: str) -> BotProcess:
    """Kill -9 `bot` and start its successor on the same database."""
    bot.kill()
    [successor] = bots.start(database)
    return successor
