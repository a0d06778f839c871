"""One fault per test, injected into real `oi-bot` processes: every question still gets exactly one
answer (or one failure message) in Slack, never two and never none.

Each test ends by stopping the surviving processes with SIGTERM (which drains their work in flight)
before counting, so nothing can still arrive after the counts are taken.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.databases import fresh_postgres_url, sqlite_url
from tests.fakes import openai_api
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tests.faults.harness import (
    CHANNEL,
    USER,
    Bots,
    answers,
    assert_answered_once,
    ephemerals,
    failures,
    mention,
    question_ts,
    retry_click,
    until,
)

TS = question_ts(0)


async def _thinking(fake_openai: FakeOpenAI, count: int = 1) -> None:
    """Wait until `count` LLM calls are in flight (their replies scripted as held)."""
    await asyncio.to_thread(fake_openai.requests.wait_for, count)


async def test_kill_9_while_thinking_then_restart_answers_once(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path
) -> None:
    """A crash after the ack loses nothing: the next process finds the request's lease expired,
    resumes it, and turns the crashed process's placeholder (same ts) into the answer."""
    database = sqlite_url(tmp_path)
    [crashed] = bots.start(database)
    fake_openai.script(openai_api.held(openai_api.answer()))
    assert await crashed.send(mention(TS)) == 200
    await _thinking(fake_openai)
    crashed.kill()
    [restarted] = bots.start(database)
    await until(fake_slack, lambda fake: len(answers(fake)) == 1)
    assert await restarted.stop() == 0
    assert_answered_once(fake_slack, TS)
    assert len(fake_openai.requests) == 2  # the crashed call, then the resumed one
    [resumed] = restarted.logged("request.resumed")
    assert (resumed["attempts"], resumed["interruptions"]) == (1, 1)  # it only waited on the model


async def test_kill_9_after_the_answer_is_ready_before_slack_shows_it_answers_once(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path
) -> None:
    """A crash while Slack makes the answer wait (429, Retry-After 60) comes after the answer was
    remembered in the thread's memory: the next process answers again, replacing the same
    placeholder, rather than failing on what the first attempt left behind."""
    database = sqlite_url(tmp_path)
    [crashed] = bots.start(database)
    fake_slack.rate_limit("chat.update", times=1, retry_after=60)
    assert await crashed.send(mention(TS)) == 200
    await until(fake_slack, lambda fake: len(fake.calls_to("chat.update")) == 1)
    crashed.kill()
    [restarted] = bots.start(database)
    await until(fake_slack, lambda fake: len(answers(fake)) + len(failures(fake)) == 1)
    assert await restarted.stop() == 0
    assert_answered_once(fake_slack, TS)


async def test_the_leaseholder_killed_the_other_replica_answers_once(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, database_url: str
) -> None:
    """Two replicas on one database: when the one answering dies, the other takes the request
    over once its lease runs out, and answers it once."""
    holder, other = bots.start(database_url, count=2)
    fake_openai.script(openai_api.held(openai_api.answer()))
    assert await holder.send(mention(TS)) == 200
    await _thinking(fake_openai)
    holder.kill()
    await until(fake_slack, lambda fake: len(answers(fake)) == 1)
    assert await other.stop() == 0
    assert_answered_once(fake_slack, TS)
    assert len(other.logged("request.resumed")) == 1


async def test_slack_retrying_one_event_to_both_replicas_at_once_is_answered_once(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, database_url: str
) -> None:
    """Slack's delivery and its retry reach two replicas at the same moment: the store's claim
    lets exactly one of them take the question; both ack it, so Slack stops retrying."""
    first, second = bots.start(database_url, count=2)
    body = mention(TS)
    assert await asyncio.gather(first.send(body), second.send(body, retry=1)) == [200, 200]
    await until(fake_slack, lambda fake: len(answers(fake)) == 1)
    assert await asyncio.gather(first.stop(), second.stop()) == [0, 0]
    assert_answered_once(fake_slack, TS)
    assert len(fake_openai.requests) == 1


async def test_slack_rate_limiting_post_message_three_times_still_lands_once(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path
) -> None:
    """429 with Retry-After is waited out and retried by the client, not by posting again: one
    placeholder reaches the thread, and the answer replaces it."""
    [bot] = bots.start(sqlite_url(tmp_path))
    fake_slack.rate_limit("chat.postMessage", times=3, retry_after=0)
    assert await bot.send(mention(TS)) == 200
    await until(fake_slack, lambda fake: len(answers(fake)) == 1)
    assert await bot.stop() == 0
    assert [call.status for call in fake_slack.calls_to("chat.postMessage")] == [429] * 3 + [200]
    assert_answered_once(fake_slack, TS)


async def test_llm_failing_every_call_is_one_failure_message_with_a_working_try_again(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path
) -> None:
    """While the LLM answers 500, the thread shows one failure message (a retry that fails again
    rewrites it); once the LLM is back, "Try again" replaces it with the answer, once."""
    [bot] = bots.start(sqlite_url(tmp_path))
    fake_openai.script(openai_api.error(500), openai_api.error(500))
    assert await bot.send(mention(TS)) == 200
    await until(fake_slack, lambda fake: len(failures(fake)) == 1)
    [failed] = failures(fake_slack)
    assert await bot.send(retry_click(failed)) == 200
    await until(fake_slack, lambda fake: len(failures(fake)) == 2)
    assert [call.args["ts"] for call in failures(fake_slack)] == [failed.args["ts"]] * 2
    assert len(fake_slack.messages(CHANNEL, TS)) == 1
    click = retry_click(failed)  # the LLM answers again: nothing more is scripted
    assert await asyncio.gather(bot.send(click), bot.send(click)) == [200, 200]  # double click
    await until(fake_slack, lambda fake: len(answers(fake)) == 1)
    assert await bot.stop() == 0
    assert_answered_once(fake_slack, TS)
    assert answers(fake_slack)[0].args["ts"] == failed.args["ts"]
    assert len(fake_openai.requests) == 3


async def test_database_connections_dropped_mid_request_answers_once(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """PostgreSQL drops every connection of the bot while the LLM is thinking (a failover, a
    restart): the pool reconnects, and the answer lands once."""
    database = await fresh_postgres_url()
    [bot] = bots.start(database)
    fake_openai.script(openai_api.held(openai_api.answer()))
    assert await bot.send(mention(TS)) == 200
    await _thinking(fake_openai)
    assert await _drop_connections(database) >= 1
    fake_openai.release()
    await until(fake_slack, lambda fake: len(answers(fake)) == 1)
    assert await bot.stop() == 0
    assert_answered_once(fake_slack, TS)


async def _drop_connections(database_url: str) -> int:
    """Terminate every other session on the test database, as a PostgreSQL restart would."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            dropped = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        await engine.dispose()
    return int(dropped or 0)


async def test_sigterm_with_three_in_flight_drains_them_then_exits_0(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path
) -> None:
    """Within the grace period, a stopping process finishes what it took on before exiting."""
    [bot] = bots.start(sqlite_url(tmp_path))
    threads = [question_ts(n) for n in range(3)]
    fake_openai.script(*[openai_api.held(openai_api.answer())] * 3)
    for ts in threads:
        assert await bot.send(mention(ts)) == 200
    await _thinking(fake_openai, 3)
    bot.terminate()
    await asyncio.to_thread(bot.wait_for_log, "server.stopping")
    fake_openai.release()
    assert await bot.exited() == 0
    for ts in threads:
        assert_answered_once(fake_slack, ts)
    assert len(fake_openai.requests) == 3


async def test_sigterm_past_the_grace_hands_three_back_and_the_next_process_answers(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path
) -> None:
    """With no grace left, a stopping process hands its requests back (no lease to wait out) and
    still exits 0; the next process resumes all three at start-up and answers each once."""
    database = sqlite_url(tmp_path)
    [stopping] = bots.start(database, OI_SHUTDOWN_GRACE_SECONDS="0")
    threads = [question_ts(n) for n in range(3)]
    fake_openai.script(*[openai_api.held(openai_api.answer())] * 3)
    for ts in threads:
        assert await stopping.send(mention(ts)) == 200
    await _thinking(fake_openai, 3)
    assert await stopping.stop() == 0
    assert len(stopping.logged("request.handed_back")) == 3
    assert answers(fake_slack) == []
    [successor] = bots.start(database)
    await until(fake_slack, lambda fake: len(answers(fake)) == 3)
    assert await successor.stop() == 0
    for ts in threads:
        assert_answered_once(fake_slack, ts)
    assert len(successor.logged("request.resumed")) == 3


async def test_fifty_questions_in_a_minute_get_ten_answers_and_forty_refusals(
    bots: Bots, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path
) -> None:
    """Past the per-person limit a question is refused with the reason, to its author only, and
    costs no LLM call."""
    [bot] = bots.start(
        sqlite_url(tmp_path), OI_USER_RATE_PER_MINUTE="10", OI_USER_MAX_IN_FLIGHT="10"
    )
    threads = [question_ts(n) for n in range(50)]
    for ts in threads:
        assert await bot.send(mention(ts)) == 200
    await until(fake_slack, lambda fake: len(answers(fake)) == 10 and len(ephemerals(fake)) == 40)
    assert await bot.stop() == 0
    assert len(fake_openai.requests) == 10
    for ts in threads[:10]:
        assert_answered_once(fake_slack, ts)
    refused = ephemerals(fake_slack)
    assert [call.args["thread_ts"] for call in refused] == threads[10:]
    assert all(call.args["user"] == USER for call in refused)
    assert all("the limit is 10" in call.args["text"] for call in refused)
    assert all(fake_slack.messages(CHANNEL, ts) == [] for ts in threads[10:])
