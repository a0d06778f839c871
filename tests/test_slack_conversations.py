"""The Slack front door end to end: signed requests in, Web API calls out, one answer each."""

from __future__ import annotations

import json
import time

import pytest
from slack_sdk.models.blocks import Block

from bot.core.persona import BUILTIN_PERSONAS_DIR
from bot.slack.render import RETRY_ACTION
from tests.fakes import openai_api
from tests.fakes.openai_api import VALID_ANSWER
from tests.fakes.slack_requests import (
    block_actions_body,
    event_body,
    feedback_buttons_body,
    sample,
    signed_headers,
    slash_command_body,
)
from tests.slack_bot import (
    SIGNING_SECRET,
    RunningBot,
    answer_updates,
    mention_event,
    message_event,
    running_bot,
)

QUESTION = "review the retry design for POST /charges"


def _assert_valid_blocks(call) -> None:
    blocks = call.args["blocks"]
    assert len(blocks) <= 50
    for block in Block.parse_all(blocks):
        block.to_dict()  # runs slack_sdk's validators


def _effects(bot: RunningBot) -> list[str]:
    """The Web API calls that change what people see (auth.test only identifies the bot)."""
    return [call.method for call in bot.fake_slack.calls if call.method != "auth.test"]


async def test_slash_command_question_then_answer_in_its_thread(slack_bot, fake_openai):
    started = time.perf_counter()
    status, body = await slack_bot.send(
        slash_command_body(f"backend-engineer {QUESTION}", trigger_id="trig-1")
    )
    acked_in = time.perf_counter() - started
    assert status == 200 and body == ""
    assert acked_in < 3
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 1)
    question, placeholder = slack_bot.fake_slack.calls_to("chat.postMessage")
    assert "<@W111> asked *Backend Engineer*" in question.args["text"]
    assert "thread_ts" not in question.args or question.args["thread_ts"] is None
    thread_ts = question.response["ts"]
    assert placeholder.args["thread_ts"] == thread_ts
    assert "is thinking" in placeholder.args["text"]
    [answer] = answer_updates(slack_bot.fake_slack)
    assert answer.args["ts"] == placeholder.response["ts"]
    _assert_valid_blocks(answer)
    shown = json.dumps(answer.args["blocks"])
    assert VALID_ANSWER["summary"] in shown and "payments team" in shown
    assert fake_openai.requests[0]["messages"][-1]["content"] == QUESTION
    thread = slack_bot.fake_slack.messages("C111", thread_ts)
    assert [m["ts"] for m in thread] == [thread_ts, placeholder.response["ts"]]


async def test_follow_up_in_the_thread_sees_the_first_question_and_answer(slack_bot, fake_openai):
    await slack_bot.send(slash_command_body(f"backend-engineer {QUESTION}", trigger_id="t-1"))
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 1)
    thread_ts = slack_bot.fake_slack.calls_to("chat.postMessage")[0].response["ts"]

    follow_up = message_event(
        "and what about backoff?", ts="1700000200.000100", thread_ts=thread_ts
    )
    body = event_body(follow_up, event_id="Ev-follow-up")
    assert (await slack_bot.send(body))[0] == 200
    assert (await slack_bot.send(body, retry=1))[0] == 200
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 2)
    await slack_bot.settle()
    assert len(fake_openai.requests) == 2
    second = fake_openai.requests[1]["messages"]
    assert second[1] == {"role": "user", "content": QUESTION}
    assert json.loads(second[2]["content"]) == VALID_ANSWER
    assert second[-1] == {"role": "user", "content": "and what about backoff?"}
    placeholders = slack_bot.fake_slack.calls_to("chat.postMessage")[1:]
    assert [p.args["thread_ts"] for p in placeholders] == [thread_ts, thread_ts]


async def test_mention_is_answered_in_a_thread_under_it(slack_bot, fake_openai):
    event = mention_event(f"<@UBOT> backend-engineer {QUESTION}")
    assert (await slack_bot.send(event_body(event, event_id="Ev1")))[0] == 200
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 1)
    [placeholder] = slack_bot.fake_slack.calls_to("chat.postMessage")
    assert placeholder.args["thread_ts"] == event["ts"]
    assert fake_openai.requests[0]["messages"][-1]["content"] == QUESTION


async def test_mention_without_a_persona_uses_the_default(slack_bot, fake_openai):
    await slack_bot.send(event_body(mention_event("<@UBOT> is this retry safe?"), event_id="Ev1"))
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 1)
    assert fake_openai.requests[0]["messages"][-1]["content"] == "is this retry safe?"
    assert "Backend Engineer" in fake_openai.requests[0]["messages"][0]["content"]


async def test_direct_message_is_a_question(slack_bot, fake_openai):
    dm = message_event("is this retry safe?", ts="1700000300.000100", channel_type="im")
    dm["channel"] = "D111"
    await slack_bot.send(event_body(dm, event_id="Ev-dm"))
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 1)
    assert slack_bot.fake_slack.calls_to("chat.postMessage")[0].args["channel"] == "D111"


async def test_retries_and_double_delivery_are_answered_once(slack_bot, fake_openai):
    event = mention_event(f"<@UBOT> {QUESTION}")
    body = event_body(event, event_id="Ev1")
    assert (await slack_bot.send(body))[0] == 200
    assert (await slack_bot.send(body, retry=1))[0] == 200
    as_message = message_event(event["text"], ts=event["ts"])
    assert (await slack_bot.send(event_body(as_message, event_id="Ev2")))[0] == 200
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 1)
    await slack_bot.settle()
    assert len(fake_openai.requests) == 1
    assert len(slack_bot.fake_slack.calls_to("chat.postMessage")) == 1
    assert len(answer_updates(slack_bot.fake_slack)) == 1


async def test_slash_command_retry_is_answered_once(slack_bot, fake_openai):
    body = slash_command_body(f"backend-engineer {QUESTION}", trigger_id="trig-same")
    await slack_bot.send(body)
    await slack_bot.send(body, retry=1)
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 1)
    await slack_bot.settle()
    assert len(fake_openai.requests) == 1


async def test_bad_signature_and_stale_requests_do_nothing(slack_bot, fake_openai):
    body = slash_command_body(f"backend-engineer {QUESTION}")
    forged = signed_headers(body, "not-the-secret")
    assert (await slack_bot.send(body, headers=forged))[0] == 401
    stale = signed_headers(body, SIGNING_SECRET, timestamp=int(time.time()) - 600)
    assert (await slack_bot.send(body, headers=stale))[0] == 401
    await slack_bot.settle()
    assert fake_openai.requests == []
    assert _effects(slack_bot) == []


async def test_bots_edits_joins_and_unknown_threads_are_ignored(slack_bot, fake_openai):
    bot_message = sample("message.bot_message.json")
    bot_message["event"].update(channel="C111", text="<@UBOT> backend-engineer hi")
    await slack_bot.send(json.dumps(bot_message))
    own = message_event(
        "backend-engineer hi", ts="1700000400.000100", thread_ts="1700000000.000100"
    )
    own["user"] = "UBOT"
    await slack_bot.send(event_body(own, event_id="Ev-own"))
    edit = message_event("<@UBOT> hi", ts="1700000400.000200", subtype="message_changed")
    await slack_bot.send(event_body(edit, event_id="Ev-edit"))
    join = message_event("<@W111> has joined", ts="1700000400.000300", subtype="channel_join")
    await slack_bot.send(event_body(join, event_id="Ev-join"))
    stranger = message_event("a reply", ts="1700000400.000400", thread_ts="1600000000.000100")
    await slack_bot.send(event_body(stranger, event_id="Ev-stranger"))
    await slack_bot.settle()
    assert fake_openai.requests == []
    assert _effects(slack_bot) == []


async def test_help_personas_and_typos_answer_at_once_without_the_llm(slack_bot, fake_openai):
    # a slash command's HTTP response is shown to the person who typed it, and only to them
    status, usage = await slack_bot.send(slash_command_body("help"))
    assert status == 200 and "/oi &lt;persona&gt; &lt;question&gt;" in usage
    status, listed = await slack_bot.send(slash_command_body("personas"))
    assert "*backend-engineer*" in listed
    status, typo = await slack_bot.send(slash_command_body("backend-enginer review this"))
    assert "Did you mean: backend-engineer?" in typo
    status, empty = await slack_bot.send(slash_command_body(""))
    assert "Usage" in empty
    await slack_bot.send(event_body(mention_event("<@UBOT> help"), event_id="Ev-help"))
    [ephemeral] = await slack_bot.wait_for_calls("chat.postEphemeral", 1)
    assert ephemeral.args["user"] == "W111" and "/oi" in ephemeral.args["text"]
    await slack_bot.settle()
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("replies", "said"),
    [
        ([openai_api.refusal("Not something I review.")], "declined to answer"),
        ([openai_api.content_reply("nope"), openai_api.content_reply("{}")], "did not fit"),
        ([openai_api.truncated()], "cut off"),
    ],
)
async def test_each_llm_failure_is_an_honest_message(slack_bot, fake_openai, replies, said):
    fake_openai.script(*replies)
    await slack_bot.send(event_body(mention_event(f"<@UBOT> {QUESTION}"), event_id="Ev1"))
    await slack_bot.wait_for(
        lambda fake: any(said in c.args.get("text", "") for c in fake.calls_to("chat.update"))
    )
    await slack_bot.settle()
    request_id = [
        e["value"]
        for b in slack_bot.fake_slack.calls_to("chat.update")[0].args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert (await slack_bot.server.store.get_request(request_id[0])).state == "failed"


async def test_llm_failure_is_a_message_with_a_working_try_again(slack_bot, fake_openai):
    fake_openai.script(openai_api.error(500, "boom"))
    await slack_bot.send(slash_command_body(f"backend-engineer {QUESTION}", trigger_id="t-1"))
    await slack_bot.wait_for(
        lambda fake: any(
            "unavailable" in c.args.get("text", "") for c in fake.calls_to("chat.update")
        )
    )
    [failure] = slack_bot.fake_slack.calls_to("chat.update")
    buttons = [e for b in failure.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    [retry] = [b for b in buttons if b["action_id"] == RETRY_ACTION]

    click = block_actions_body(
        RETRY_ACTION, retry["value"], message_ts=failure.args["ts"], user="W111"
    )
    assert (await slack_bot.send(click))[0] == 200
    await slack_bot.send(click)  # a double click starts nothing more
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 1)
    await slack_bot.settle()
    [answer] = answer_updates(slack_bot.fake_slack)
    assert answer.args["ts"] == failure.args["ts"]
    assert len(fake_openai.requests) == 2
    request = await slack_bot.server.store.get_request(retry["value"])
    assert request.state == "answered"


async def test_not_in_channel_tells_the_user_to_invite_the_bot(slack_bot, fake_openai):
    slack_bot.fake_slack.fail("chat.postMessage", "not_in_channel")
    body = slash_command_body(
        f"backend-engineer {QUESTION}", response_url=slack_bot.fake_slack.response_url("r1")
    )
    await slack_bot.send(body)
    [told] = await slack_bot.wait_for_calls("response_url", 1)
    assert "/invite @oi" in told.args["text"] and told.args["response_type"] == "ephemeral"
    await slack_bot.settle()
    assert fake_openai.requests == []


async def test_feedback_is_recorded(slack_bot, fake_openai):
    await slack_bot.send(slash_command_body(f"backend-engineer {QUESTION}", trigger_id="t-1"))
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 1)
    [answer] = answer_updates(slack_bot.fake_slack)
    [buttons] = [
        e for b in answer.args["blocks"] if b["type"] == "context_actions" for e in b["elements"]
    ]
    up = buttons["positive_button"]["value"]
    click = feedback_buttons_body(buttons["action_id"], up, user="W222")
    assert (await slack_bot.send(click))[0] == 200
    assert await slack_bot.server.store.feedback(up.split(":", 1)[1]) == {"W222": "up"}


async def test_rate_limited_slack_still_gets_the_answer_once(slack_bot, fake_openai, monkeypatch):
    monkeypatch.setattr("slack_sdk.http_retry.builtin_async_handlers.random.random", lambda: 0.0)
    slack_bot.fake_slack.rate_limit("chat.update", times=2, retry_after=0)
    await slack_bot.send(event_body(mention_event(f"<@UBOT> {QUESTION}"), event_id="Ev1"))
    await slack_bot.wait_for(
        lambda fake: len([c for c in answer_updates(slack_bot.fake_slack) if c.status == 200]) == 1
    )
    statuses = [c.status for c in answer_updates(slack_bot.fake_slack)]
    assert statuses == [429, 429, 200]


async def test_slack_5xx_is_retried_and_the_answer_lands_once(slack_bot, fake_openai):
    slack_bot.fake_slack.server_error("chat.update", times=1)
    await slack_bot.send(event_body(mention_event(f"<@UBOT> {QUESTION}"), event_id="Ev1"))
    await slack_bot.wait_for(
        lambda fake: any(c.status == 200 for c in answer_updates(slack_bot.fake_slack))
    )
    await slack_bot.settle()
    assert [c.status for c in answer_updates(slack_bot.fake_slack)] == [500, 200]


async def test_long_answer_is_split_over_messages_in_the_thread(slack_bot, fake_openai):
    huge = {
        **VALID_ANSWER,
        "rationale": [f"reason {n}: " + "x" * 900 for n in range(60)],
        "summary": "<!channel> " + "s" * 9000,
    }
    fake_openai.script(openai_api.answer(huge))
    await slack_bot.send(event_body(mention_event(f"<@UBOT> {QUESTION}"), event_id="Ev1"))
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 1)
    await slack_bot.settle()
    posts = slack_bot.fake_slack.calls_to("chat.postMessage")
    continued = [c for c in posts[1:]]
    assert continued and all(c.status == 200 for c in continued)
    for call in [*answer_updates(slack_bot.fake_slack), *continued]:
        _assert_valid_blocks(call)
    shown = json.dumps(
        [c.args["blocks"] for c in [*answer_updates(slack_bot.fake_slack), *continued]]
    )
    [upload] = slack_bot.fake_slack.uploaded_files()  # what three messages cannot hold
    shown += (upload.content or b"").decode()
    assert all(f"reason {n}:" in shown for n in range(60))
    assert "<!channel>" not in shown and "&lt;!channel&gt;" in shown


async def test_health_readiness_and_metrics(slack_bot, fake_openai):
    assert await slack_bot.get("/healthz") == (200, "ok")
    assert await slack_bot.get("/readyz") == (200, "ready")
    await slack_bot.send(slash_command_body(f"backend-engineer {QUESTION}", trigger_id="t-1"))
    await slack_bot.wait_for(lambda fake: len(answer_updates(slack_bot.fake_slack)) == 1)
    await slack_bot.settle()
    status, metrics = await slack_bot.get("/metrics")
    assert status == 200
    assert 'oi_requests_total{kind="command",outcome="answered"} 1.0' in metrics
    for histogram in (
        "oi_ack_seconds",
        "oi_context_seconds",
        "oi_llm_seconds",
        "oi_end_to_end_seconds",
    ):
        assert f"{histogram}_count" in metrics
    assert 'oi_llm_tokens_total{direction="prompt"}' in metrics


async def test_channel_default_persona_answers_mentions_that_name_none(
    settings_for, fake_slack, fake_openai, tmp_path
):
    card = (BUILTIN_PERSONAS_DIR / "backend-engineer.toml").read_text()
    card = card.replace('name = "backend-engineer"', 'name = "sre"')
    (tmp_path / "sre.toml").write_text(card.replace('title = "Backend Engineer"', 'title = "SRE"'))
    settings = settings_for(
        oi_personas_dir=str(tmp_path),
    )
    fake_slack.add_user("W111", is_admin=True)
    async with running_bot(settings, fake_slack) as bot:
        status, said = await bot.send(slash_command_body("default sre"))
        assert status == 200 and "*SRE* now answers mentions in this channel" in said
        await bot.send(event_body(mention_event("<@UBOT> is this safe?"), event_id="Ev1"))
        await bot.wait_for(lambda fake: len(answer_updates(bot.fake_slack)) == 1)
        assert "You are the SRE persona" in fake_openai.requests[0]["messages"][0]["content"]
        other = mention_event("<@UBOT> and here?", ts="1700000500.000100")
        other["channel"] = "C222"
        await bot.send(event_body(other, event_id="Ev2"))
        await bot.wait_for(lambda fake: len(answer_updates(bot.fake_slack)) == 2)
        assert "Backend Engineer" in fake_openai.requests[1]["messages"][0]["content"]
