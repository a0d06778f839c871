"""Nothing lost, nothing twice, within limits: the bot in-process against the local fakes.

Crashes with real processes are in tests/faults/; here the store is prepared as a crashed
process would have left it, and limits are set low enough to hit.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.store import NewRequest, Store
from tests.fakes import openai_api
from tests.fakes.openai_api import VALID_ANSWER
from tests.fakes.slack_requests import event_body, slash_command_body
from tests.slack_bot import RunningBot, answer_updates, mention_event, running_bot

THREAD = "1700000100.000100"


def _answers(bot: RunningBot) -> list:
    return [call for call in answer_updates(bot.fake_slack) if call.status == 200]


def _failures(bot: RunningBot, words: str) -> list:
    return [c for c in bot.fake_slack.calls if words in c.args.get("text", "")]


async def _left_by_a_crash(settings, *, state: str = "received", **request) -> str:
    """A request as a process that died mid-answer leaves it: unfinished in `state` (received
    or gathering; thinking is gathering's next step), its lease expired."""
    dead = await Store.open(settings.database_url, owner="dead-process", lease_seconds=-1)
    fields = dict(
        claim_key="message:C111:1700000100.000100",
        kind="mention",
        team_id="T111",
        channel_id="C111",
        user_id="W111",
        thread_ts=THREAD,
        persona="backend-engineer",
        question="is the retry design safe?",
    )
    fields.update(request)
    claimed = await dead.claim_request(NewRequest(**fields))
    if state in ("gathering", "thinking"):
        await dead.transition(claimed.id, "gathering")
    if state == "thinking":
        memory = await dead.open_thread("T111", "C111", THREAD, "backend-engineer")
        await dead.record_gathered_and_think(claimed.id, memory.thread.id, {})
    await dead.close()
    assert claimed is not None
    return claimed.id


async def test_a_crashed_processs_request_is_resumed_and_answered_once(
    settings_for, fake_slack, fake_openai
):
    settings = settings_for(oi_lease_seconds=30)
    request_id = await _left_by_a_crash(settings)
    async with running_bot(settings, fake_slack) as bot:
        await bot.wait_for(lambda fake: len(_answers(bot)) == 1)
        assert await bot.server.resume_unfinished() == 0  # taken once, not again
        await bot.settle()
        request = await bot.server.store.get_request(request_id)
    assert request.state == "answered" and request.attempts == 1  # it had not started
    assert len(fake_openai.requests) == 1
    assert [c.args["thread_ts"] for c in fake_slack.calls_to("chat.postMessage")] == [THREAD]


async def test_slack_limiting_past_the_clients_retries_is_tried_again_later_not_left_silent(
    settings_for, fake_slack, fake_openai
):
    fake_slack.rate_limit("chat.update", times=5, retry_after=0)  # slack_sdk retries 4 times
    async with running_bot(settings_for(oi_lease_seconds=30), fake_slack) as bot:
        await bot.send(event_body(mention_event("<@UBOT> still there?"), event_id="Ev1"))
        await bot.wait_for(lambda fake: len(fake.calls_to("chat.update")) == 5)
        await bot.settle()
        assert _answers(bot) == []
        assert await bot.server.resume_unfinished() == 1  # handed back: the next try answers
        await bot.wait_for(lambda fake: len(_answers(bot)) == 1)
        await bot.settle()
    assert _failures(bot, ":warning:") == []


async def test_a_resumed_answer_updates_the_messages_already_posted(
    settings_for, fake_slack, fake_openai
):
    settings = settings_for(oi_lease_seconds=30)
    web = AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    placeholder = (await web.chat_postMessage(channel="C111", thread_ts=THREAD, text="…"))["ts"]
    part_two = (await web.chat_postMessage(channel="C111", thread_ts=THREAD, text="2/…"))["ts"]
    request_id = await _left_by_a_crash(settings)
    dead = await Store.open(settings.database_url, owner="dead-process", lease_seconds=-1)
    await dead.transition(request_id, "gathering", reply_ts=placeholder)
    await dead.set_continuation_ts(request_id, [part_two])
    await dead.close()
    huge = {**VALID_ANSWER, "rationale": [f"reason {n}: " + "x" * 900 for n in range(30)]}
    fake_openai.script(openai_api.answer(huge))
    posted_before = len(fake_slack.calls_to("chat.postMessage"))
    async with running_bot(settings, fake_slack) as bot:
        await bot.wait_for(lambda fake: len(_answers(bot)) >= 1)
        await bot.settle()
        request = await bot.server.store.get_request(request_id)
    updated = {c.args["ts"] for c in fake_slack.calls_to("chat.update") if c.status == 200}
    assert {placeholder, part_two} <= updated
    new_posts = fake_slack.calls_to("chat.postMessage")[posted_before:]
    assert len(new_posts) == len(request.continuation_ts) - 1
    assert request.continuation_ts[0] == part_two
    shown = json.dumps([m.get("blocks") for m in fake_slack.messages("C111", THREAD)])
    shown += "".join((file.content or b"").decode() for file in fake_slack.uploaded_files())
    assert all(f"reason {n}:" in shown for n in range(30))


@pytest.mark.parametrize("streaming", ["on", "off"])
async def test_a_reply_posted_by_an_attempt_that_died_before_recording_it_is_reused(
    settings_for, fake_slack, fake_openai, streaming
):
    """The process died between Slack taking its reply and the store recording it: the reply
    carries the request's id, so the resumed request finds it and answers there."""
    settings = settings_for(oi_lease_seconds=30, oi_slack_streaming=streaming)
    request_id = await _left_by_a_crash(settings)
    web = AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    metadata = {"event_type": "oi_reply", "event_payload": {"request_id": request_id}}
    orphan = await web.chat_startStream(
        channel="C111",
        thread_ts=THREAD,
        recipient_user_id="W111",
        recipient_team_id="T111",
        chunks=[{"type": "task_update", "id": "gathering", "title": "…", "status": "in_progress"}],
        metadata=metadata,
    )
    other = await web.chat_postMessage(channel="C111", thread_ts=THREAD, text="someone else")
    async with running_bot(settings, fake_slack) as bot:
        await bot.wait_for(lambda fake: len(_answers(bot)) == 1)
        await bot.settle()
    [answer] = _answers(bot)
    assert answer.args["ts"] == orphan["ts"]
    assert not fake_slack.is_streaming("C111", orphan["ts"])
    assert [m["ts"] for m in fake_slack.messages("C111", THREAD)] == [orphan["ts"], other["ts"]]
    assert not fake_slack.calls_to("chat.startStream")[1:]  # only the orphan's own start


@pytest.mark.parametrize("posted", [True, False])
async def test_a_slash_commands_question_posted_before_a_crash_is_not_posted_again(
    settings_for, fake_slack, fake_openai, posted
):
    """The process died between Slack taking the echoed question and the store recording the
    thread: the question carries the request's id, so the resumed request answers under it."""
    settings = settings_for(oi_lease_seconds=30)
    request_id = await _left_by_a_crash(
        settings, kind="command", thread_ts=None, claim_key="command:trig-crash"
    )
    web = AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    metadata = {"event_type": "oi_question", "event_payload": {"request_id": request_id}}
    if posted:
        await web.chat_postMessage(channel="C111", text="<@W111> asked …", metadata=metadata)
    await web.chat_postMessage(channel="C111", text="someone else, later")
    async with running_bot(settings, fake_slack) as bot:
        await bot.wait_for(lambda fake: len(_answers(bot)) == 1)
        await bot.settle()
        request = await bot.server.store.get_request(request_id)
    questions = [m for m in fake_slack.messages("C111") if m.get("metadata") == metadata]
    assert len(questions) == 1 and request.thread_ts == questions[0]["ts"]
    [answer] = _answers(bot)
    [reply] = [
        m for m in fake_slack.messages("C111", request.thread_ts) if m["ts"] == answer.args["ts"]
    ]
    assert reply["thread_ts"] == request.thread_ts
    [history] = fake_slack.calls_to("conversations.history")
    assert history.args["include_all_metadata"] in (True, "1", "true")


async def test_past_the_attempt_limit_a_request_fails_with_a_message(
    settings_for, fake_slack, fake_openai
):
    """Its process died while reading what it refers to: that try is blamed on it."""
    settings = settings_for(oi_max_attempts=1)
    request_id = await _left_by_a_crash(settings, state="gathering")
    async with running_bot(settings, fake_slack) as bot:
        await bot.wait_for(lambda fake: _failures(bot, "after 1 attempts"))
        await bot.settle()
        assert (await bot.server.store.get_request(request_id)).state == "failed"
    assert fake_openai.requests == []


async def test_a_crash_while_it_waited_on_the_model_uses_no_attempt(
    settings_for, fake_slack, fake_openai
):
    settings = settings_for(oi_max_attempts=1)
    request_id = await _left_by_a_crash(settings, state="thinking")
    async with running_bot(settings, fake_slack) as bot:
        await bot.wait_for(lambda fake: len(_answers(bot)) == 1)
        await bot.settle()
        request = await bot.server.store.get_request(request_id)
    assert (request.state, request.attempts, request.interruptions) == ("answered", 1, 1)
    assert _failures(bot, "attempts") == []


async def test_beyond_the_queue_the_user_is_told_the_bot_is_busy(
    settings_for, fake_slack, fake_openai
):
    fake_openai.script(openai_api.held(openai_api.answer()))
    async with running_bot(settings_for(oi_max_concurrency=1, oi_queue_limit=0), fake_slack) as bot:
        await bot.send(event_body(mention_event("<@UBOT> first", ts="1.000001"), event_id="E1"))
        await asyncio.to_thread(fake_openai.requests.wait_for, 1)
        await bot.send(event_body(mention_event("<@UBOT> second", ts="1.000002"), event_id="E2"))
        await bot.wait_for(lambda fake: _failures(bot, "too many questions"))
        fake_openai.release()
        await bot.wait_for(lambda fake: len(_answers(bot)) == 1)
        await bot.settle()
    assert len(fake_openai.requests) == 1
    [busy] = _failures(bot, "too many questions")
    assert any(b["type"] == "actions" for b in busy.args["blocks"])  # Try again


async def test_per_user_rate_limit_refuses_without_an_llm_call(
    settings_for, fake_slack, fake_openai
):
    async with running_bot(settings_for(oi_user_rate_per_minute=2), fake_slack) as bot:
        for n in range(4):
            mention = mention_event(f"<@UBOT> question {n}", ts=f"1.00000{n}")
            await bot.send(event_body(mention, event_id=f"E{n}"))
        await bot.wait_for(lambda fake: len(fake.calls_to("chat.postEphemeral")) == 2)
        await bot.wait_for(lambda fake: len(_answers(bot)) == 2)
        await bot.settle()
    assert len(fake_openai.requests) == 2
    for refusal in fake_slack.calls_to("chat.postEphemeral"):
        assert "the limit is 2" in refusal.args["text"]


async def test_too_long_a_question_is_refused_with_its_limit(slack_bot, fake_openai, fake_slack):
    status, said = await slack_bot.send(slash_command_body("backend-engineer " + "x" * 9000))
    assert status == 200 and "the limit is 8,000" in said
    await slack_bot.settle()
    assert fake_openai.requests == []


async def test_a_spent_daily_budget_is_said_until_the_next_day(
    settings_for, fake_slack, fake_openai
):
    async with running_bot(settings_for(oi_daily_token_budget=1), fake_slack) as bot:
        await bot.send(event_body(mention_event("<@UBOT> first", ts="1.000001"), event_id="E1"))
        await bot.wait_for(lambda fake: len(_answers(bot)) == 1)
        await bot.send(event_body(mention_event("<@UBOT> second", ts="1.000002"), event_id="E2"))
        await bot.wait_for(lambda fake: _failures(bot, "daily budget"))
        await bot.settle()
        _, metrics = await bot.get("/metrics")
    assert len(fake_openai.requests) == 1
    team = bot.server.metrics.team_label("T111")  # a pseudonym, not the raw team ID
    assert f'oi_workspace_tokens_total{{team="{team}"}}' in metrics


async def test_a_request_past_its_deadline_gets_a_failure_message(
    settings_for, fake_slack, fake_openai
):
    fake_openai.script(openai_api.held(openai_api.answer()))
    async with running_bot(settings_for(oi_request_deadline_seconds=0.5), fake_slack) as bot:
        await bot.send(event_body(mention_event("<@UBOT> slow one", ts="1.000001"), event_id="E1"))
        await bot.wait_for(lambda fake: _failures(bot, "took longer than 0.5s"))
        fake_openai.release()
        await bot.settle()
    assert _answers(bot) == []


async def test_shutdown_hands_unfinished_work_back(settings_for, fake_slack, fake_openai):
    fake_openai.script(openai_api.held(openai_api.answer()))
    settings = settings_for(oi_shutdown_grace_seconds=0)
    async with running_bot(settings, fake_slack) as bot:
        await bot.send(event_body(mention_event("<@UBOT> in flight", ts="1.000001"), event_id="E1"))
        await asyncio.to_thread(fake_openai.requests.wait_for, 1)
    fake_openai.release()
    store = await Store.open(settings.database_url)
    try:
        [request_id] = await store.resumable()
        assert (await store.get_request(request_id)).state == "thinking"
    finally:
        await store.close()
    assert _answers(bot) == [] and _failures(bot, ":warning:") == []


async def test_concurrent_deliveries_never_pass_the_rate_limit(
    settings_for, fake_slack, fake_openai
):
    settings = settings_for(oi_user_rate_per_minute=5, oi_user_max_in_flight=20)
    async with running_bot(settings, fake_slack) as bot:
        bodies = [
            event_body(mention_event(f"<@UBOT> question {n}", ts=f"2.{n:06d}"), event_id=f"E{n}")
            for n in range(20)
        ]
        statuses = await asyncio.gather(*(bot.send(body) for body in bodies))
        await bot.settle()
    assert {status for status, _ in statuses} == {200}
    assert len(fake_openai.requests) == 5
    assert len(fake_slack.calls_to("chat.postEphemeral")) == 15
