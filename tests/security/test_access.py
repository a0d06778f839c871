"""Who may read what, through the real bot over signed HTTP (README, "Security model").

A conversation reads what is linked to it, plus public GitHub repositories; linking is for
admins; private content reaches a public channel only on the asker's confirmation; people from
other organisations read public sources only; buttons act only for the people they belong to;
quotas count every question, retries and thread replies included.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from bot.config import Settings
from bot.slack.render import CONFIRM_LINK_ACTION, FEEDBACK_ACTION, RETRY_ACTION
from tests.fakes import openai_api
from tests.fakes.github_api import FakeGitHub
from tests.fakes.linear_api import FakeLinear
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack, SlackCall
from tests.fakes.slack_requests import (
    block_actions_body,
    event_body,
    feedback_buttons_body,
    slash_command_body,
)
from tests.slack_bot import RunningBot, answer_updates, mention_event, message_event, running_bot

SECRET_README = "# secret\nThe launch codes are in vault/prod."
PUBLIC_README = "# tools\nShared scripts."


@pytest.fixture
def sources(fake_github: FakeGitHub, fake_linear: FakeLinear) -> None:
    fake_github.add_repo("acme", "secret", private=True, readme=SECRET_README)
    fake_github.add_repo("acme", "tools", readme=PUBLIC_README)
    fake_linear.add_team("PAY", "Payments")
    fake_linear.add_issue("PAY-7", title="Refund backlog", description="Owed since May.")


def _repo_url(fake_github: FakeGitHub, name: str) -> str:
    return f"{fake_github.web_url}/acme/{name}"


async def _ask(bot: RunningBot, text: str, *, n: int, **where: Any) -> SlackCall:
    """A mention (by W111 unless `user` says otherwise), and the answer it gets."""
    user = where.pop("user", "W111")
    event = mention_event(f"<@UBOT> {text}", ts=f"1700000{n:03d}.000100", **where)
    event["user"] = user
    await bot.send(event_body(event, event_id=f"Ev{n}"))
    await bot.wait_for(lambda fake: len(answer_updates(fake)) >= n)
    return answer_updates(bot.fake_slack)[n - 1]


def _shown(answer: SlackCall) -> str:
    return json.dumps(answer.args["blocks"])


def _prompt(fake_openai: FakeOpenAI, n: int) -> str:
    return json.dumps(fake_openai.requests[n - 1]["messages"])


def _repo_paths(fake_github: FakeGitHub, name: str) -> list[str]:
    return [r.path for r in fake_github.requests if r.path.startswith(f"/repos/acme/{name}")]


# -- a conversation reads what is linked to it, and public repositories


@pytest.mark.usefixtures("sources")
async def test_an_unlinked_private_repository_is_not_read_and_says_who_can_link_it(
    slack_bot: RunningBot, fake_openai: FakeOpenAI, fake_github: FakeGitHub
):
    answer = await _ask(slack_bot, f"what is in {_repo_url(fake_github, 'secret')}?", n=1)
    assert "launch codes" not in _prompt(fake_openai, 1)
    assert (
        "acme/secret is not linked to this channel; a workspace admin can "
        "`/oi link github acme/secret`" in _shown(answer)
    )
    # one GET of the repository says it is private; nothing inside it is read
    assert _repo_paths(fake_github, "secret") == ["/repos/acme/secret"]


@pytest.mark.usefixtures("sources")
async def test_a_public_repository_is_read_anywhere_and_a_linked_private_one_where_linked(
    slack_bot: RunningBot, fake_openai: FakeOpenAI, fake_github: FakeGitHub
):
    await _ask(slack_bot, f"what is in {_repo_url(fake_github, 'tools')}?", n=1)
    assert "Shared scripts." in _prompt(fake_openai, 1)
    await slack_bot.link("github", "acme/secret")  # C111 is public: confirmed by its admin
    await _ask(slack_bot, "what does our secret repo hold?", n=2)
    assert "launch codes" in _prompt(fake_openai, 2)
    answer = await _ask(slack_bot, f"and {_repo_url(fake_github, 'secret')}?", n=3, channel="C222")
    assert "launch codes" not in _prompt(fake_openai, 3)
    assert "acme/secret is not linked to this channel" in _shown(answer)


@pytest.mark.usefixtures("sources")
async def test_linear_is_read_only_for_teams_linked_to_the_conversation(
    slack_bot: RunningBot, fake_openai: FakeOpenAI, fake_linear: FakeLinear
):
    answer = await _ask(slack_bot, "why is PAY-7 stuck?", n=1)
    assert "Refund backlog" not in _prompt(fake_openai, 1)
    assert len(fake_linear.requests) == 0
    assert "Linear team PAY is not linked to this channel" in _shown(answer)
    assert "`/oi link linear PAY`" in _shown(answer)
    url = "https://linear.app/acme/issue/PAY-7/refund-backlog"
    await _ask(slack_bot, f"and {url}?", n=2, channel="G333")
    assert "Refund backlog" not in _prompt(fake_openai, 2) and len(fake_linear.requests) == 0
    await slack_bot.link("linear", "PAY")
    await _ask(slack_bot, "why is PAY-7 stuck?", n=3)
    assert "Refund backlog" in _prompt(fake_openai, 3)


@pytest.mark.usefixtures("sources")
async def test_a_dm_reads_only_what_is_linked_to_it(
    slack_bot: RunningBot, fake_openai: FakeOpenAI, fake_github: FakeGitHub
):
    url = _repo_url(fake_github, "secret")
    dm = message_event(f"what is in {url}?", ts="1700000001.000100", channel="D444")
    dm["channel_type"] = "im"
    await slack_bot.send(event_body(dm, event_id="Ev-dm"))
    await slack_bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
    [answer] = answer_updates(slack_bot.fake_slack)
    assert "launch codes" not in _prompt(fake_openai, 1)
    assert "acme/secret is not linked to this conversation" in _shown(answer)


# -- who may link


@pytest.mark.usefixtures("sources")
async def test_only_admins_change_links_and_defaults(slack_bot: RunningBot, fake_slack: FakeSlack):
    for command in (
        "link github acme/tools",
        "unlink github acme/tools",
        "default backend-engineer",
    ):
        status, said = await slack_bot.send(slash_command_body(command, user="W555"))
        assert status == 200 and "Only workspace admins and owners" in said, command
    _, listed = await slack_bot.send(slash_command_body("links"))
    assert "Nothing is linked" in listed
    fake_slack.add_user("W666", is_owner=True)
    url = fake_slack.response_url("owner")
    await slack_bot.send(
        slash_command_body("link github acme/tools", user="W666", response_url=url)
    )
    [linked] = await slack_bot.wait_for_calls("response_url", 1)
    assert linked.args["text"].startswith("Linked github acme/tools")


@pytest.mark.usefixtures("sources")
async def test_oi_admin_users_and_the_anyone_policy_let_others_link(
    settings_for: Callable[..., Settings], fake_slack: FakeSlack
):
    settings = settings_for(oi_admin_users="W555, W556")
    async with running_bot(settings, fake_slack) as bot:
        url = fake_slack.response_url("named")
        await bot.send(slash_command_body("link github acme/tools", user="W556", response_url=url))
        [linked] = await bot.wait_for_calls("response_url", 1)
        assert linked.args["text"].startswith("Linked")
        _, said = await bot.send(slash_command_body("unlink github acme/tools", user="W777"))
        assert "Only workspace admins" in said
    async with running_bot(settings_for(oi_link_policy="anyone"), fake_slack) as bot:
        _, said = await bot.send(slash_command_body("unlink github acme/tools", user="W777"))
        assert said == "Unlinked acme/tools."


# -- private into public, only on purpose


@pytest.mark.usefixtures("sources")
async def test_private_content_into_a_public_channel_waits_for_its_askers_confirmation(
    slack_bot: RunningBot, fake_slack: FakeSlack
):
    fake_slack.add_user("WADMIN", is_admin=True)
    fake_slack.add_user("WOTHER", is_admin=True)
    fake_slack.add_channel("C111", name="general")
    url = fake_slack.response_url("confirm")
    await slack_bot.send(
        slash_command_body("link github acme/secret", user="WADMIN", response_url=url)
    )
    [asked] = await slack_bot.wait_for_calls("response_url", 1)
    text = asked.args["text"]
    assert "acme/secret" in text and "private repository" in text and "#general" in text
    [button] = asked.args["blocks"][-1]["elements"]
    assert button["action_id"] == CONFIRM_LINK_ACTION and "#general" in button["text"]["text"]
    _, listed = await slack_bot.send(slash_command_body("links"))
    assert "Nothing is linked" in listed  # not before the click

    other = block_actions_body(
        CONFIRM_LINK_ACTION, button["value"], user="WOTHER", response_url=url
    )
    await slack_bot.send(other)
    refused = (await slack_bot.wait_for_calls("response_url", 2))[1]
    assert "Only <@WADMIN>" in refused.args["text"] and refused.args["replace_original"] is False
    _, listed = await slack_bot.send(slash_command_body("links"))
    assert "Nothing is linked" in listed

    mine = block_actions_body(CONFIRM_LINK_ACTION, button["value"], user="WADMIN", response_url=url)
    await slack_bot.send(mine)
    done = (await slack_bot.wait_for_calls("response_url", 3))[2]
    assert done.args["text"].startswith("Linked github acme/secret")
    _, listed = await slack_bot.send(slash_command_body("links"))
    assert "github acme/secret" in listed


@pytest.mark.usefixtures("sources")
async def test_private_channels_and_public_repositories_need_no_confirmation(
    slack_bot: RunningBot, fake_slack: FakeSlack
):
    fake_slack.add_user("WADMIN", is_admin=True)
    for n, (command, channel) in enumerate(
        [
            ("link github acme/secret", "G333"),
            ("link linear PAY", "G333"),
            ("link github acme/tools", "C111"),
        ],
        start=1,
    ):
        url = fake_slack.response_url(f"r{n}")
        await slack_bot.send(
            slash_command_body(command, channel=channel, user="WADMIN", response_url=url)
        )
        said = (await slack_bot.wait_for_calls("response_url", n))[n - 1]
        assert said.args["text"].startswith("Linked") and not said.args.get("blocks"), command


# -- Slack Connect: people from other organisations


@pytest.mark.usefixtures("sources")
async def test_outsiders_read_public_sources_only_by_default(
    slack_bot: RunningBot, fake_openai: FakeOpenAI, fake_github: FakeGitHub, fake_slack: FakeSlack
):
    await slack_bot.link("github", "acme/secret")
    await slack_bot.link("linear", "PAY")
    fake_slack.add_user("WEXT", team_id="T999")
    question = (
        f"compare {_repo_url(fake_github, 'secret')} with {_repo_url(fake_github, 'tools')} (PAY-7)"
    )
    answer = await _ask(slack_bot, question, n=1, user="WEXT")
    prompt = _prompt(fake_openai, 1)
    assert "Shared scripts." in prompt
    assert "launch codes" not in prompt and "Refund backlog" not in prompt
    shown = _shown(answer)
    assert "acme/secret is private, and questions from outside this workspace" in shown
    assert "PAY-7 is in Linear" in shown
    # a member asking the same in the same channel reads what is linked
    await _ask(slack_bot, question, n=2)
    assert "launch codes" in _prompt(fake_openai, 2) and "Refund backlog" in _prompt(fake_openai, 2)


@pytest.mark.usefixtures("sources")
async def test_an_events_user_team_makes_an_outsider_whatever_users_info_says(
    slack_bot: RunningBot, fake_openai: FakeOpenAI
):
    """Slack's guidance for shared channels: the event's `user_team` against our team."""
    await slack_bot.link("github", "acme/secret")
    event = mention_event("<@UBOT> what does our secret repo hold?", ts="1700000001.000100")
    event.update(user="W888", user_team="T999")  # users.info: a member of T111 by default
    await slack_bot.send(event_body(event, event_id="Ev1"))
    await slack_bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
    assert "launch codes" not in _prompt(fake_openai, 1)
    link = mention_event("<@UBOT> link github acme/tools", ts="1700000002.000100")
    link.update(user="W888", user_team="T999")
    await slack_bot.send(event_body(link, event_id="Ev2"))
    [told] = await slack_bot.wait_for_calls("chat.postEphemeral", 1)
    assert "outside this workspace" in told.args["text"]


async def _follow_up(bot: RunningBot, text: str, *, n: int, user: str = "W111") -> None:
    """A reply in the thread of the question `_ask` sent as n=1, and its answer (the n-th)."""
    reply = message_event(text, ts=f"1700000{n:03d}.000900", thread_ts="1700000001.000100")
    reply["user"] = user
    await bot.send(event_body(reply, event_id=f"Ev-reply-{n}"))
    await bot.wait_for(lambda fake: len(answer_updates(fake)) == n)


@pytest.mark.usefixtures("sources")
async def test_outsiders_in_a_thread_see_only_the_public_context_it_read_for_members(
    slack_bot: RunningBot, fake_openai: FakeOpenAI, fake_slack: FakeSlack, fake_github: FakeGitHub
):
    await slack_bot.link("github", "acme/secret")
    await _ask(slack_bot, f"compare our secret repo with {_repo_url(fake_github, 'tools')}", n=1)
    assert "launch codes" in _prompt(fake_openai, 1) and "Shared scripts." in _prompt(
        fake_openai, 1
    )
    read_before = len(fake_github.requests)
    fake_slack.add_user("WEXT", team_id="T999")
    await _follow_up(slack_bot, "and then?", n=2, user="WEXT")
    assert "launch codes" not in _prompt(fake_openai, 2)
    assert "Shared scripts." in _prompt(fake_openai, 2)  # public: reused, not read again
    assert len(fake_github.requests) == read_before


@pytest.mark.usefixtures("sources")
async def test_a_thread_stops_showing_what_was_unlinked_since(
    slack_bot: RunningBot, fake_openai: FakeOpenAI, fake_slack: FakeSlack
):
    await slack_bot.link("github", "acme/secret")
    await slack_bot.link("linear", "PAY")
    await _ask(slack_bot, "what does our secret repo hold, and PAY-7?", n=1)
    assert "launch codes" in _prompt(fake_openai, 1) and "Refund backlog" in _prompt(fake_openai, 1)
    for link in ("github acme/secret", "linear PAY"):
        _, said = await slack_bot.send(slash_command_body(f"unlink {link}", user="WADMIN"))
        assert said.startswith("Unlinked")
    await _follow_up(slack_bot, "and now?", n=2)
    prompt = _prompt(fake_openai, 2)
    assert "launch codes" not in prompt and "Refund backlog" not in prompt


@pytest.mark.usefixtures("sources")
async def test_outsiders_can_be_refused_or_treated_as_members(
    settings_for: Callable[..., Settings],
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    fake_github: FakeGitHub,
):
    fake_slack.add_user("WEXT", team_id="T999")
    async with running_bot(settings_for(oi_external_users="deny"), fake_slack) as bot:
        event = mention_event("<@UBOT> hello", ts="1700000001.000100")
        event["user"] = "WEXT"
        await bot.send(event_body(event, event_id="Ev1"))
        [told] = await bot.wait_for_calls("chat.postEphemeral", 1)
        await bot.settle()
        assert (
            told.args["user"] == "WEXT"
            and "only answer people from this workspace" in (told.args["text"])
        )
        _, said = await bot.send(slash_command_body("link github acme/tools", user="WEXT"))
        assert "outside this workspace" in said
    assert len(fake_openai.requests) == 0
    async with running_bot(settings_for(oi_external_users="full"), fake_slack) as bot:
        await bot.link("github", "acme/secret")
        event = mention_event("<@UBOT> what does our secret repo hold?", ts="1700000002.000100")
        event["user"] = "WEXT"
        await bot.send(event_body(event, event_id="Ev2"))
        await bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
    assert "launch codes" in _prompt(fake_openai, 1)


# -- buttons act only for the people they belong to


async def _failed_question(bot: RunningBot, fake_openai: FakeOpenAI) -> dict[str, Any]:
    """W111's question that failed, and its "Try again" button."""
    fake_openai.script(openai_api.error(500))
    await bot.send(event_body(mention_event("<@UBOT> will it fail?"), event_id="Ev-fail"))
    await bot.wait_for(lambda fake: any(_retry_button(c) for c in fake.calls_to("chat.update")))
    await bot.settle()
    return next(b for c in bot.fake_slack.calls_to("chat.update") if (b := _retry_button(c)))


def _retry_button(call: SlackCall) -> dict[str, Any] | None:
    for block in call.args.get("blocks") or []:
        for element in block.get("elements", []):
            if element.get("action_id") == RETRY_ACTION:
                return element
    return None


async def test_try_again_is_for_the_asker_only_and_counts_toward_their_rate(
    settings_for: Callable[..., Settings], fake_slack: FakeSlack, fake_openai: FakeOpenAI
):
    async with running_bot(settings_for(oi_user_rate_per_minute=2), fake_slack) as bot:
        button = await _failed_question(bot, fake_openai)
        url = fake_slack.response_url("retry")
        await bot.send(
            block_actions_body(RETRY_ACTION, button["value"], user="W222", response_url=url)
        )
        [note] = await bot.wait_for_calls("response_url", 1)
        await bot.settle()
        assert "Only <@W111> can retry" in note.args["text"]
        assert len(fake_openai.requests) == 1  # the failed attempt only

        await bot.send(event_body(mention_event("<@UBOT> other", ts="1.000002"), event_id="E2"))
        await bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
        await bot.send(
            block_actions_body(RETRY_ACTION, button["value"], user="W111", response_url=url)
        )
        too_often = (await bot.wait_for_calls("response_url", 2))[1]
        await bot.settle()
    assert "You've asked 2 questions in the last minute" in too_often.args["text"]
    assert len(fake_openai.requests) == 2


async def test_try_again_by_the_asker_answers(slack_bot: RunningBot, fake_openai: FakeOpenAI):
    button = await _failed_question(slack_bot, fake_openai)
    fake_openai.script(openai_api.answer())
    await slack_bot.send(block_actions_body(RETRY_ACTION, button["value"], user="W111"))
    await slack_bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)


async def test_feedback_counts_only_from_the_conversations_members(
    slack_bot: RunningBot, fake_slack: FakeSlack
):
    fake_slack.add_channel("C111", members=["UBOT", "W111"])
    await slack_bot.send(event_body(mention_event("<@UBOT> rate me"), event_id="Ev1"))
    await slack_bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
    [answer] = answer_updates(fake_slack)
    up = next(
        e["positive_button"]["value"]
        for b in answer.args["blocks"]
        for e in b.get("elements", [])
        if e.get("action_id") == FEEDBACK_ACTION
    )
    request_id = up.split(":", 1)[1]
    url = fake_slack.response_url("vote")
    await slack_bot.send(feedback_buttons_body(FEEDBACK_ACTION, up, user="W999", response_url=url))
    [note] = await slack_bot.wait_for_calls("response_url", 1)
    assert "Only people in this conversation" in note.args["text"]
    await slack_bot.send(feedback_buttons_body(FEEDBACK_ACTION, up, user="W111"))
    await slack_bot.settle()
    assert await slack_bot.server.store.feedback(request_id) == {"W111": "up"}


# -- quotas: questions in flight, thread replies, the daily budget


async def test_a_person_has_a_bounded_number_of_questions_in_flight(
    settings_for: Callable[..., Settings], fake_slack: FakeSlack, fake_openai: FakeOpenAI
):
    fake_openai.script(openai_api.held(openai_api.answer()))
    async with running_bot(settings_for(oi_user_max_in_flight=1), fake_slack) as bot:
        await bot.send(event_body(mention_event("<@UBOT> first", ts="1.000001"), event_id="E1"))
        await asyncio.to_thread(fake_openai.requests.wait_for, 1)
        await bot.send(event_body(mention_event("<@UBOT> second", ts="1.000002"), event_id="E2"))
        [told] = await bot.wait_for_calls("chat.postEphemeral", 1)
        assert (
            "I'm still answering 1 of your questions; the limit is 1 at once" in told.args["text"]
        )
        fake_openai.release()
        await bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
        await bot.settle()  # answered, and stored as answered
        await bot.send(event_body(mention_event("<@UBOT> third", ts="1.000003"), event_id="E3"))
        await bot.wait_for(lambda fake: len(answer_updates(fake)) == 2)


async def test_thread_replies_from_people_who_never_mentioned_the_bot_count_toward_their_rate(
    settings_for: Callable[..., Settings], fake_slack: FakeSlack, fake_openai: FakeOpenAI
):
    async with running_bot(settings_for(oi_user_rate_per_minute=1), fake_slack) as bot:
        await bot.send(event_body(mention_event("<@UBOT> start", ts="1.000001"), event_id="E1"))
        await bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
        for n in (2, 3):
            reply = message_event(f"reply {n}", ts=f"1.00000{n}", thread_ts="1.000001")
            reply["user"] = "W222"
            await bot.send(event_body(reply, event_id=f"E{n}"))
        [told] = await bot.wait_for_calls("chat.postEphemeral", 1)
        await bot.wait_for(lambda fake: len(answer_updates(fake)) == 2)
        await bot.settle()
    assert told.args["user"] == "W222" and "the limit is 1" in told.args["text"]
    assert len(fake_openai.requests) == 2


async def test_the_daily_budget_is_reserved_before_parallel_calls(
    settings_for: Callable[..., Settings], fake_slack: FakeSlack, fake_openai: FakeOpenAI
):
    fake_openai.script(openai_api.held(openai_api.answer()), openai_api.held(openai_api.answer()))
    async with running_bot(settings_for(oi_daily_token_budget=1), fake_slack) as bot:
        for n, user in ((1, "W111"), (2, "W222")):
            event = mention_event(f"<@UBOT> question {n}", ts=f"1.00000{n}")
            event["user"] = user
            await bot.send(event_body(event, event_id=f"E{n}"))
        await bot.wait_for(
            lambda fake: any("daily budget" in c.args.get("text", "") for c in fake.calls)
        )
        fake_openai.release()
        await bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
        await bot.settle()
    assert len(fake_openai.requests) == 1
