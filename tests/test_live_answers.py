"""Live answers end to end: the steps and the answer stream into Slack as they happen.

The bot runs for real against the local fakes; the fake OpenAI server streams its structured
output in server-sent events, and the fake Slack keeps each streamed message's chunks in order.
Assertions are on what Slack received, in order, and on the message a person sees in the end.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.config import Settings
from tests.fakes import openai_api
from tests.fakes.github_api import add_payments_sample
from tests.fakes.openai_api import VALID_ANSWER
from tests.fakes.slack_api import FakeSlack, SlackCall
from tests.fakes.slack_requests import event_body, slash_command_body
from tests.slack_bot import RunningBot, answer_updates, mention_event, message_event, running_bot

QUESTION = "review the retry design for POST /charges"
STREAM_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")


def _written_slowly(answer: dict[str, Any] | None = None) -> openai_api.Scripted:
    """The answer streamed over about half a second, as a model writes: Slack is shown it as it
    comes (an answer the model writes at once is shown only finished)."""
    return openai_api.spaced(openai_api.answer(answer), 0.008)


@pytest.fixture
async def slack_bot(
    settings_for: Callable[..., Settings], fake_slack: FakeSlack
) -> AsyncIterator[RunningBot]:
    """oi-bot as it runs by default: streaming."""
    async with running_bot(settings_for(oi_slack_streaming="on"), fake_slack) as bot:
        yield bot


def _stream_calls(fake_slack: FakeSlack) -> list[SlackCall]:
    return [call for call in fake_slack.calls if call.method in STREAM_METHODS]


def _chunks(fake_slack: FakeSlack, ts: str, channel: str = "C111") -> list[dict[str, Any]]:
    return fake_slack.stream_chunks(channel, ts)


def _streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(chunk["text"] for chunk in chunks if chunk["type"] == "markdown_text")


def _first_index(chunks: list[dict[str, Any]], predicate) -> int:
    return next(index for index, chunk in enumerate(chunks) if predicate(chunk))


def _assert_valid_blocks(blocks: list[dict[str, Any]]) -> None:
    assert len(blocks) <= 50
    for block in Block.parse_all(blocks):
        block.to_dict()  # slack_sdk's validators


async def _answered(bot: RunningBot, count: int = 1) -> list[SlackCall]:
    await bot.wait_for(lambda fake: len(answer_updates(fake)) == count)
    await bot.settle()
    return answer_updates(bot.fake_slack)


def _bot_messages(fake_slack: FakeSlack, thread_ts: str, channel: str = "C111") -> list[dict]:
    return [m for m in fake_slack.messages(channel, thread_ts) if m.get("bot_id")]


async def test_mention_streams_steps_then_the_answer_then_one_final_message(
    slack_bot, fake_openai, fake_github
):
    add_payments_sample(fake_github, files={"README.md": "# payments"})
    fake_openai.script(_written_slowly())
    pr_url = f"{fake_github.web_url}/acme/payments/pull/42"
    mention = mention_event(f"<@UBOT> review the retry design in <{pr_url}>")
    await slack_bot.send(event_body(mention, event_id="Ev-live-1"))
    [final] = await _answered(slack_bot)

    start, *_, stop = _stream_calls(slack_bot.fake_slack)
    assert start.method == "chat.startStream" and stop.method == "chat.stopStream"
    assert start.args["thread_ts"] == mention["ts"]
    assert start.args["recipient_user_id"] == "W111"
    assert start.args["recipient_team_id"] == "T111"
    ts = start.response["ts"]
    assert final.args["ts"] == ts  # the streamed message itself becomes the answer
    assert fake_openai.requests[0]["stream"] is True

    chunks = _chunks(slack_bot.fake_slack, ts)
    read = _first_index(
        chunks,
        lambda c: (
            c["type"] == "task_update"
            and "acme/payments#42" in c["title"]
            and c["status"] == "complete"
        ),
    )
    writing = _first_index(chunks, lambda c: c.get("title") == "Writing the answer")
    first_text = _first_index(chunks, lambda c: c["type"] == "markdown_text")
    assert read < writing < first_text
    assert chunks[read]["sources"][0]["url"].endswith("/acme/payments/pull/42")

    text = _streamed_text(chunks)
    assert text.index(VALID_ANSWER["summary"]) < text.index(VALID_ANSWER["recommendation"])
    assert text.index(VALID_ANSWER["recommendation"]) < text.index(VALID_ANSWER["risks"][0])

    _assert_valid_blocks(final.args["blocks"])
    shown = json.dumps(final.args["blocks"])
    assert VALID_ANSWER["summary"] in shown and "payments team" in shown
    assert not slack_bot.fake_slack.is_streaming("C111", ts)
    assert [m["ts"] for m in _bot_messages(slack_bot.fake_slack, mention["ts"])] == [ts]


async def test_slash_command_streams_under_the_posted_question(slack_bot, fake_openai):
    fake_openai.script(_written_slowly())
    await slack_bot.send(slash_command_body(f"backend-engineer {QUESTION}", trigger_id="t-1"))
    [final] = await _answered(slack_bot)
    [question] = slack_bot.fake_slack.calls_to("chat.postMessage")
    thread_ts = question.response["ts"]
    start = slack_bot.fake_slack.calls_to("chat.startStream")[0]
    assert start.args["thread_ts"] == thread_ts
    assert final.args["ts"] == start.response["ts"]
    streamed = _streamed_text(_chunks(slack_bot.fake_slack, final.args["ts"]))
    assert VALID_ANSWER["summary"] in streamed


async def test_follow_up_streams_in_the_same_thread(slack_bot, fake_openai):
    mention = mention_event(f"<@UBOT> {QUESTION}")
    fake_openai.script(openai_api.answer(), _written_slowly())
    await slack_bot.send(event_body(mention, event_id="Ev-first"))
    await _answered(slack_bot)
    follow_up = message_event(
        "and what about backoff?", ts="1700000200.000100", thread_ts=mention["ts"]
    )
    await slack_bot.send(event_body(follow_up, event_id="Ev-follow-up"))
    first, second = await _answered(slack_bot, 2)
    starts = slack_bot.fake_slack.calls_to("chat.startStream")
    assert [s.args["thread_ts"] for s in starts] == [mention["ts"], mention["ts"]]
    assert second.args["ts"] == starts[1].response["ts"]
    assert fake_openai.requests[1]["messages"][-1]["content"] == "and what about backoff?"
    chunks = _chunks(slack_bot.fake_slack, second.args["ts"])
    assert any(c.get("title") == "Writing the answer" for c in chunks)
    assert VALID_ANSWER["summary"] in _streamed_text(chunks)


async def test_agent_dm_sets_the_title_and_status_and_streams(slack_bot, fake_openai):
    fake_openai.script(_written_slowly())
    thread_ts = "1700000300.000100"
    dm = message_event(
        f"backend-engineer {QUESTION}",
        ts="1700000300.000200",
        thread_ts=thread_ts,
        channel="D111",
        channel_type="im",
    )
    await slack_bot.send(event_body(dm, event_id="Ev-dm"))
    [final] = await _answered(slack_bot)
    fake = slack_bot.fake_slack
    [start] = fake.calls_to("chat.startStream")
    assert start.args["channel"] == "D111" and start.args["thread_ts"] == thread_ts
    assert final.args["ts"] == start.response["ts"]
    [title] = fake.calls_to("assistant.threads.setTitle")
    assert title.args["thread_ts"] == thread_ts and "retry design" in title.args["title"]
    statuses = [call.args["status"] for call in fake.calls_to("assistant.threads.setStatus")]
    assert any("writing the answer" in status for status in statuses), statuses
    assert statuses[-1] == ""  # cleared once the answer is there
    assert VALID_ANSWER["summary"] in _streamed_text(_chunks(fake, final.args["ts"], "D111"))


async def test_streaming_off_updates_the_placeholder_with_the_current_step(
    settings_for, fake_slack, fake_openai, fake_github
):
    add_payments_sample(fake_github, files={"README.md": "# payments"})
    fake_openai.script(openai_api.held(openai_api.answer()))
    settings = settings_for(oi_slack_streaming="off")
    async with running_bot(settings, fake_slack) as bot:
        pr_url = f"{fake_github.web_url}/acme/payments/pull/42"
        await bot.send(event_body(mention_event(f"<@UBOT> review {pr_url}"), event_id="Ev-off"))
        await bot.wait_for(
            lambda fake: any(
                "Writing the answer" in call.args.get("text", "")
                for call in fake.calls_to("chat.update")
            )
        )
        fake_openai.release()
        [final] = await _answered(bot)
    assert not fake_slack.calls_to("chat.startStream")
    assert "stream" not in fake_openai.requests[0]  # nobody is shown the drafts
    [placeholder] = fake_slack.calls_to("chat.postMessage")
    assert final.args["ts"] == placeholder.response["ts"]
    steps = [call.args["text"] for call in fake_slack.calls_to("chat.update")][:-1]
    assert steps and all(call_text.count("Writing the answer") == 1 for call_text in steps)


async def test_a_workspace_that_refuses_streaming_gets_placeholders(slack_bot, fake_openai):
    slack_bot.fake_slack.fail("chat.startStream", "not_allowed_token_type")
    for number in (1, 2):
        mention = mention_event(f"<@UBOT> {QUESTION} {number}", ts=f"1700000400.00010{number}")
        await slack_bot.send(event_body(mention, event_id=f"Ev-refused-{number}"))
        await _answered(slack_bot, number)
    fake = slack_bot.fake_slack
    assert len(fake.calls_to("chat.startStream")) == 1  # asked once, then remembered
    placeholders = fake.calls_to("chat.postMessage")
    assert len(placeholders) == 2
    assert [c.args["ts"] for c in answer_updates(fake)] == [p.response["ts"] for p in placeholders]


async def test_rate_limited_appends_still_end_in_one_answer(slack_bot, fake_openai):
    slack_bot.fake_slack.rate_limit("chat.appendStream", times=8, retry_after=0)
    mention = mention_event(f"<@UBOT> {QUESTION}")
    await slack_bot.send(event_body(mention, event_id="Ev-429"))
    [final] = await _answered(slack_bot)
    fake = slack_bot.fake_slack
    [start] = fake.calls_to("chat.startStream")
    assert final.args["ts"] == start.response["ts"]
    assert VALID_ANSWER["summary"] in json.dumps(final.args["blocks"])
    assert [m["ts"] for m in _bot_messages(fake, mention["ts"])] == [final.args["ts"]]


async def test_a_stream_slack_closed_is_finished_with_an_update(slack_bot, fake_openai):
    fake_openai.script(openai_api.held(openai_api.answer()))
    mention = mention_event(f"<@UBOT> {QUESTION}")
    await slack_bot.send(event_body(mention, event_id="Ev-closed"))
    [start] = await slack_bot.wait_for_calls("chat.startStream", 1)
    ts = start.response["ts"]
    slack_bot.fake_slack.expire_stream("C111", ts)
    fake_openai.release()
    [final] = await _answered(slack_bot)
    assert final.args["ts"] == ts
    assert VALID_ANSWER["summary"] in json.dumps(final.args["blocks"])
    assert [m["ts"] for m in _bot_messages(slack_bot.fake_slack, mention["ts"])] == [ts]


PHISH = "https://evil.example/login"


async def test_a_hostile_answer_streams_inert(slack_bot, fake_openai):
    """What the model writes is streamed through the same rules as the final answer: no ping, no
    link of its own, no Markdown that would pass for the answer's own structure."""
    hostile = {
        **VALID_ANSWER,
        "summary": (
            f"Log in at {PHISH} or <https://evil.example/x|click here> <!channel> <@U0BOSS> "
            f"[the docs]({PHISH}) ![pixel]({PHISH}) @here\n# Approved\n> by security\n```sh"
        ),
        "rationale": [f"See {PHISH}\n**Risks**\n- none", "@everyone look"],
    }
    fake_openai.script(_written_slowly(hostile))
    mention = mention_event(f"<@UBOT> {QUESTION}")
    await slack_bot.send(event_body(mention, event_id="Ev-hostile"))
    [final] = await _answered(slack_bot)
    chunks = _chunks(slack_bot.fake_slack, final.args["ts"])
    text = _streamed_text(chunks)
    assert "Log in at" in text and "look" in text  # it was streamed, not left out
    for forbidden in ("<!channel>", "<@U0BOSS>", "<https://", PHISH, "](", "@here", "@everyone"):
        assert forbidden not in text, forbidden
    assert "hxxps://evil" in text  # defanged
    lines = text.splitlines()
    assert not any(line.lstrip().startswith(("#", ">", "```")) for line in lines)
    assert lines.count("**Risks**") == 1  # the answer's own label, not the model's
    _assert_valid_blocks(final.args["blocks"])


async def test_a_huge_answer_streams_within_slacks_limits_then_overflows_to_a_file(
    slack_bot, fake_openai
):
    line = "Retries replay non-idempotent writes unless every request carries its own key. "
    huge = {**VALID_ANSWER, "rationale": [line * 3] * 180}  # about 43,000 characters
    fake_openai.script(openai_api.spaced(openai_api.answer(huge), 0.0005))
    mention = mention_event(f"<@UBOT> {QUESTION}")
    await slack_bot.send(event_body(mention, event_id="Ev-huge"))
    await slack_bot.wait_for(lambda fake: bool(fake.uploaded_files()))
    [first] = await _answered(slack_bot)
    fake = slack_bot.fake_slack
    assert all(call.status == 200 and call.error is None for call in _stream_calls(fake))
    chunks = _chunks(fake, first.args["ts"])
    texts = [chunk["text"] for chunk in chunks if chunk["type"] == "markdown_text"]
    assert texts and all(len(text) <= 12_000 for text in texts)
    assert len("".join(texts)) <= 12_000
    bot_messages = _bot_messages(fake, mention["ts"])
    files = [m for m in bot_messages if m.get("files")]
    assert len(bot_messages) - len(files) <= 3  # the answer's messages, then its file
    for message in bot_messages:
        if not message.get("files"):
            _assert_valid_blocks(message["blocks"])
    [upload] = fake.uploaded_files()
    assert upload.name.endswith(".md") and upload.completed
    assert (upload.channel, upload.thread_ts) == ("C111", mention["ts"])
    assert upload.content is not None
    assert upload.content.decode().count(line.strip()) >= 180 * 3


async def test_an_append_waiting_out_a_long_rate_limit_does_not_hold_up_the_answer(
    slack_bot, fake_openai
):
    """Slack asks the steps' append to wait a minute: the answer does not wait with it."""
    slack_bot.fake_slack.rate_limit("chat.appendStream", times=1, retry_after=60)
    fake_openai.script(_written_slowly())
    mention = mention_event(f"<@UBOT> {QUESTION}")
    await slack_bot.send(event_body(mention, event_id="Ev-429-long"))
    [final] = await _answered(slack_bot)  # within the wait's 10 s, not after Slack's 60
    [start] = slack_bot.fake_slack.calls_to("chat.startStream")
    assert final.args["ts"] == start.response["ts"]
    assert slack_bot.fake_slack.calls_to("chat.appendStream")[0].status == 429
    assert not slack_bot.fake_slack.is_streaming("C111", final.args["ts"])


async def test_retries_and_the_message_twin_stream_one_answer(slack_bot, fake_openai):
    fake_openai.script(_written_slowly())
    event = mention_event(f"<@UBOT> {QUESTION}")
    body = event_body(event, event_id="Ev-twin-1")
    assert (await slack_bot.send(body))[0] == 200
    assert (await slack_bot.send(body, retry=1))[0] == 200
    as_message = message_event(event["text"], ts=event["ts"])
    assert (await slack_bot.send(event_body(as_message, event_id="Ev-twin-2")))[0] == 200
    [final] = await _answered(slack_bot)
    fake = slack_bot.fake_slack
    assert len(fake_openai.requests) == 1
    [start] = fake.calls_to("chat.startStream")
    assert len(fake.calls_to("chat.stopStream")) == 1
    assert [m["ts"] for m in _bot_messages(fake, event["ts"])] == [start.response["ts"]]


async def test_a_model_that_cannot_stream_json_still_shows_the_steps(
    settings_for, fake_slack, fake_openai
):
    """With the schema in the prompt the model may write prose first, so nothing is streamed
    from it: the steps are, and the finished answer replaces them."""
    settings = settings_for(oi_slack_streaming="on", oi_structured_output="prompt")
    async with running_bot(settings, fake_slack) as bot:
        await bot.send(event_body(mention_event(f"<@UBOT> {QUESTION}"), event_id="Ev-prompt"))
        [final] = await _answered(bot)
    assert "stream" not in fake_openai.requests[0]
    chunks = _chunks(fake_slack, final.args["ts"])
    titles = [chunk.get("title") for chunk in chunks if chunk["type"] == "task_update"]
    assert "Writing the answer" in titles and not _streamed_text(chunks)
    assert VALID_ANSWER["summary"] in json.dumps(final.args["blocks"])


async def test_without_chat_write_customize_answers_go_out_under_the_apps_name(
    settings_for, fake_slack, fake_openai
):
    fake_slack.scopes = tuple(s for s in fake_slack.scopes if s != "chat:write.customize")
    async with running_bot(settings_for(oi_slack_streaming="on"), fake_slack) as bot:
        await bot.send(event_body(mention_event(f"<@UBOT> {QUESTION}"), event_id="Ev-plain"))
        await _answered(bot)
    [start] = fake_slack.calls_to("chat.startStream")
    assert not {"username", "icon_emoji", "icon_url"} & start.args.keys()


async def test_with_chat_write_customize_answers_go_out_as_the_persona(slack_bot, fake_openai):
    await slack_bot.send(event_body(mention_event(f"<@UBOT> {QUESTION}"), event_id="Ev-named"))
    await _answered(slack_bot)
    [start] = slack_bot.fake_slack.calls_to("chat.startStream")
    assert start.args["username"] == "Backend Engineer" and start.args["icon_emoji"] == ":gear:"


async def test_a_failure_stops_the_stream_and_takes_its_place(slack_bot, fake_openai):
    fake_openai.script(openai_api.refusal("Not something I can review."))
    mention = mention_event(f"<@UBOT> {QUESTION}")
    await slack_bot.send(event_body(mention, event_id="Ev-refused"))
    await slack_bot.wait_for(
        lambda fake: any("Try again" in json.dumps(c.args) for c in fake.calls_to("chat.update"))
    )
    await slack_bot.settle()
    fake = slack_bot.fake_slack
    [start] = fake.calls_to("chat.startStream")
    ts = start.response["ts"]
    [failure] = fake.calls_to("chat.update")
    assert failure.args["ts"] == ts and "declined to answer" in failure.args["text"]
    assert len(fake.calls_to("chat.stopStream")) == 1 and not fake.is_streaming("C111", ts)
    assert [m["ts"] for m in _bot_messages(fake, mention["ts"])] == [ts]
    statuses = fake.calls_to("assistant.threads.setStatus")
    assert statuses and statuses[-1].args["status"] == ""  # cleared, not left "writing"
