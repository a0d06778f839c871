"""The bot's DM as an agent: prompts from the persona cards, answers as before, each persona as
someone, and a status and title that never fail a question."""

from __future__ import annotations

import json

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from structlog.testing import capture_logs

from bot.core.commands import Ask, parse_command
from bot.core.persona import Persona, load_personas
from bot.slack.assistant import (
    MAX_PROMPTS,
    PROMPT_TITLE_CHARACTERS,
    PROMPTS_TITLE,
    THREAD_TITLE_CHARACTERS,
    SuggestedPrompt,
    author,
    can_customize,
    set_status,
    set_title,
    suggested_prompts,
)
from tests.fakes.openai_api import VALID_ANSWER
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import app_home_opened_event, assistant_thread_event, event_body
from tests.slack_bot import RunningBot, message_event

THREAD_TS = "1726133698.626339"
# The seed card's three example use cases, as the DM shows them.
BACKEND_PROMPTS = [
    {
        "title": "Review this backend design",
        "message": "backend-engineer review this backend design and explain the biggest service "
        "and API risks",
    },
    {
        "title": "Map the safest backend implementation…",
        "message": "backend-engineer map the safest backend implementation path for this "
        "feature and data flow",
    },
    {
        "title": "Identify the correctness, reliability",
        "message": "backend-engineer identify the correctness, reliability, and operational gaps "
        "in this server-side plan",
    },
]


def _backend_engineer(**changes: object) -> Persona:
    persona = load_personas().get("backend-engineer")
    return Persona.model_validate({**persona.model_dump(by_alias=True), **changes})


def _effects(bot: RunningBot) -> list[str]:
    """The Web API calls the bot made (auth.test only identifies it at start)."""
    return [call.method for call in bot.fake_slack.calls if call.method != "auth.test"]


def _client(fake_slack: FakeSlack, base_url: str | None = None) -> AsyncWebClient:
    """A client that retries nothing Slack refuses, so a refusal reaches the code under test."""
    return AsyncWebClient(token=fake_slack.bot_token, base_url=base_url or fake_slack.api_url)


# -- suggested prompts, end to end


async def test_opening_the_agent_dm_suggests_the_cards_prompts(slack_bot):
    status, _ = await slack_bot.send(event_body(app_home_opened_event(), event_id="Ev-home"))
    assert status == 200
    [call] = await slack_bot.wait_for_calls("assistant.threads.setSuggestedPrompts", 1)
    assert "thread_ts" not in call.args  # the agent view drops prompts given a thread, silently
    shown = slack_bot.fake_slack.assistant_thread("D111")
    assert shown == {"prompts": BACKEND_PROMPTS, "prompts_title": PROMPTS_TITLE}


def test_the_prompts_ask_what_the_dm_grammar_takes():
    personas = load_personas()
    for prompt in BACKEND_PROMPTS:
        command = parse_command(prompt["message"], personas, default_persona="backend-engineer")
        assert command == Ask("backend-engineer", prompt["message"].split(" ", 1)[1])
        assert len(prompt["title"]) <= PROMPT_TITLE_CHARACTERS


async def test_opening_the_dm_again_shows_the_same_prompts_and_home_shows_none(slack_bot):
    await slack_bot.send(event_body(app_home_opened_event(tab="home"), event_id="Ev-1"))
    await slack_bot.send(event_body(app_home_opened_event(), event_id="Ev-2"))
    await slack_bot.send(event_body(app_home_opened_event(), event_id="Ev-3"))
    await slack_bot.wait_for_calls("assistant.threads.setSuggestedPrompts", 2)
    await slack_bot.settle()
    first, second = slack_bot.fake_slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert first.args == second.args
    assert _effects(slack_bot) == ["assistant.threads.setSuggestedPrompts"] * 2
    assert slack_bot.fake_slack.assistant_thread("D111")["prompts"] == BACKEND_PROMPTS


async def test_starting_an_assistant_thread_suggests_the_prompts_in_it(slack_bot):
    started = assistant_thread_event(channel="D222", thread_ts=THREAD_TS)
    assert (await slack_bot.send(event_body(started, event_id="Ev-started")))[0] == 200
    await slack_bot.wait_for_calls("assistant.threads.setSuggestedPrompts", 1)
    assert slack_bot.fake_slack.assistant_thread("D222", THREAD_TS)["prompts"] == BACKEND_PROMPTS
    assert slack_bot.fake_slack.assistant_thread("D222") == {}


async def test_a_changed_context_is_acknowledged_and_changes_nothing(slack_bot):
    changed = assistant_thread_event("assistant_thread_context_changed")
    status, _ = await slack_bot.send(event_body(changed, event_id="Ev-changed"))
    await slack_bot.settle()
    assert status == 200
    assert _effects(slack_bot) == []


async def test_refused_prompts_fail_nothing(slack_bot, fake_openai):
    slack_bot.fake_slack.fail("assistant.threads.setSuggestedPrompts", "not_agent_app")
    with capture_logs() as logs:
        status, _ = await slack_bot.send(event_body(app_home_opened_event(), event_id="Ev-1"))
        assert status == 200
        await slack_bot.wait_for_calls("assistant.threads.setSuggestedPrompts", 1)
        await slack_bot.settle()
    refused = [entry for entry in logs if entry["event"] == "slack.display_call_refused"]
    assert refused == [
        {
            "event": "slack.display_call_refused",
            "log_level": "info",
            "method": "assistant.threads.setSuggestedPrompts",
            "slack_error": "not_agent_app",
        }
    ]


async def test_a_question_in_an_assistant_thread_is_answered_once(slack_bot, fake_openai):
    """Slack sends it as `message.im` in the thread: the DM handler answers it, once, however
    often it arrives."""
    started = assistant_thread_event(channel="D111", thread_ts=THREAD_TS)
    await slack_bot.send(event_body(started, event_id="Ev-started"))
    question = message_event(
        "is this retry safe?",
        ts="1726133700.887259",
        thread_ts=THREAD_TS,
        channel="D111",
        channel_type="im",
    )
    await slack_bot.send(event_body(question, event_id="Ev-q"))
    await slack_bot.send(event_body(question, event_id="Ev-q"), retry=1)
    await slack_bot.wait_for(lambda fake: bool(_answers(fake)))
    await slack_bot.settle()
    assert len(fake_openai.requests) == 1
    assert fake_openai.requests[0]["messages"][-1]["content"] == "is this retry safe?"
    [answer] = _answers(slack_bot.fake_slack)
    assert answer["thread_ts"] == THREAD_TS


def _answers(fake: FakeSlack) -> list[dict[str, object]]:
    """The bot's messages in the assistant thread that show the answer."""
    return [
        message
        for message in fake.messages("D111", THREAD_TS)
        if message.get("bot_id") and VALID_ANSWER["summary"] in json.dumps(message)
    ]


# -- suggested prompts from several cards


def _card(name: str, use_cases: list[str]) -> Persona:
    return _backend_engineer(name=name, title=name.upper(), example_use_cases=use_cases)


def test_each_persona_gets_a_prompt_before_any_gets_a_second():
    backend = load_personas().get("backend-engineer")
    sre = _card("sre", ["oi sre find the noisiest alert", "oi sre plan the failover drill"])
    dba = _card("dba", ["check the slow query"])  # no `oi sre`: the words are the question
    prompts = suggested_prompts([backend, sre, dba])
    assert len(prompts) == MAX_PROMPTS
    assert [prompt.message.split(" ", 1)[0] for prompt in prompts] == [
        "backend-engineer",
        "sre",
        "dba",
        "backend-engineer",
    ]
    assert prompts[1] == SuggestedPrompt("Find the noisiest alert", "sre find the noisiest alert")
    assert prompts[2] == SuggestedPrompt("Check the slow query", "dba check the slow query")


def test_a_card_without_use_cases_suggests_nothing():
    assert suggested_prompts([_card("quiet", []), _card("terse", ["oi terse"])]) == []


# -- each persona as someone


def test_author_is_the_persona_only_where_the_app_may_say_so():
    persona = load_personas().get("backend-engineer")
    assert author(persona, customize=False) == {}
    assert author(persona, customize=True) == {"username": persona.title, "icon_emoji": ":gear:"}
    pictured = _backend_engineer(display_name="Backend Bot", icon="https://img.example/be.png")
    assert author(pictured, customize=True) == {
        "username": "Backend Bot",
        "icon_url": "https://img.example/be.png",
    }
    plain = _backend_engineer(display_name=None, icon=None, title="Backend Engineer (beta)")
    assert author(plain, customize=True) == {"username": "Backend Engineer (beta)"}


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        ("chat:write,chat:write.customize,commands", True),
        ("chat:write, chat:write.customize", True),
        ("chat:write.customize", True),
        ("chat:write,commands", False),
        ("chat:write.customizer", False),
        ("", False),
        (None, False),
    ],
)
def test_can_customize_reads_the_granted_scopes(scopes, allowed):
    assert can_customize(scopes) is allowed


async def test_slack_receives_the_persona_as_the_sender(fake_slack):
    sender = author(load_personas().get("backend-engineer"), customize=True)
    client = _client(fake_slack)
    await client.chat_postMessage(channel="C111", text="hi", **sender)
    await client.assistant_threads_setStatus(
        channel_id="D111", thread_ts=THREAD_TS, status="is reading", **sender
    )
    posted, status = fake_slack.calls
    for call in (posted, status):
        assert call.args["username"] == "Backend Engineer"
        assert call.args["icon_emoji"] == ":gear:"


# -- status and title


async def test_status_is_shown_then_cleared(fake_slack):
    client = _client(fake_slack)
    sender = author(load_personas().get("backend-engineer"), customize=True)
    await set_status(client, channel="D111", thread_ts=THREAD_TS, status="reading", sender=sender)
    assert fake_slack.assistant_thread("D111", THREAD_TS)["status"] == "reading"
    [shown] = fake_slack.calls_to("assistant.threads.setStatus")
    assert shown.args["username"] == "Backend Engineer"
    await set_status(client, channel="D111", thread_ts=THREAD_TS, status="")
    assert fake_slack.assistant_thread("D111", THREAD_TS)["status"] == ""


async def test_title_is_the_question_on_one_line(fake_slack):
    question = (
        "review <https://github.com/acme/pay/pull/7|PR 7> and tell me\n\nwhy the retries in "
        "<https://wiki.example/retries> double-charge customers"
    )
    await set_title(_client(fake_slack), channel="D111", thread_ts=THREAD_TS, title=question)
    title = fake_slack.assistant_thread("D111", THREAD_TS)["title"]
    assert title == "review PR 7 and tell me why the retries in…"
    assert len(title) <= THREAD_TITLE_CHARACTERS
    await set_title(_client(fake_slack), channel="D111", thread_ts=THREAD_TS, title="short one")
    assert fake_slack.assistant_thread("D111", THREAD_TS)["title"] == "short one"


async def test_a_thread_that_is_not_an_agents_is_logged_not_raised(fake_slack):
    fake_slack.fail("assistant.threads.setTitle", "invalid_thread_ts")
    fake_slack.fail("assistant.threads.setStatus", "channel_not_found")
    client = _client(fake_slack)
    with capture_logs() as logs:
        await set_title(client, channel="C111", thread_ts=THREAD_TS, title="why?")
        await set_status(client, channel="C111", thread_ts=THREAD_TS, status="is reading")
    assert [(entry["method"], entry["slack_error"], entry["log_level"]) for entry in logs] == [
        ("assistant.threads.setTitle", "invalid_thread_ts", "info"),
        ("assistant.threads.setStatus", "channel_not_found", "info"),
    ]
    assert fake_slack.bot_token not in repr(logs)


async def test_rate_limits_and_outages_are_warnings_not_failures(fake_slack):
    fake_slack.rate_limit("assistant.threads.setStatus")
    fake_slack.server_error("assistant.threads.setTitle")
    client = _client(fake_slack)
    with capture_logs() as logs:
        await set_status(client, channel="D111", thread_ts=THREAD_TS, status="is reading")
        await set_title(client, channel="D111", thread_ts=THREAD_TS, title="why?")
    assert [(entry["slack_error"], entry["log_level"]) for entry in logs] == [
        ("ratelimited", "warning"),
        ("fatal_error", "warning"),
    ]
    assert fake_slack.assistant_thread("D111", THREAD_TS) == {}


async def test_an_unreachable_slack_is_a_warning_not_a_failure(fake_slack):
    nowhere = _client(fake_slack, base_url="http://127.0.0.1:9/api/")
    with capture_logs() as logs:
        await set_status(nowhere, channel="D111", thread_ts=THREAD_TS, status="is reading")
    [entry] = logs
    assert entry["event"] == "slack.display_call_failed"
    assert entry["log_level"] == "warning"
    assert entry["method"] == "assistant.threads.setStatus"
