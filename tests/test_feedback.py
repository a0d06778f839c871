"""Votes on an answer, through the real bot over signed HTTP: Slack's own feedback buttons under
each answer, and the thumbs buttons that answers posted before them still carry."""

from __future__ import annotations

from typing import Any

from bot.slack.render import FEEDBACK_ACTION, FEEDBACK_DOWN_ACTION, feedback_vote
from tests.fakes.slack_requests import (
    block_actions_body,
    feedback_buttons_body,
    slash_command_body,
)
from tests.slack_bot import RunningBot, answer_updates

QUESTION = "review the retry design for POST /charges"


async def _answered(bot: RunningBot) -> dict[str, Any]:
    """Ask, and the feedback buttons element under the answer."""
    await bot.send(slash_command_body(f"backend-engineer {QUESTION}", trigger_id="t-1"))
    await bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
    [answer] = answer_updates(bot.fake_slack)
    [buttons] = [
        element
        for block in answer.args["blocks"]
        if block["type"] == "context_actions"
        for element in block["elements"]
        if element["type"] == "feedback_buttons"
    ]
    return buttons


def _request_id(buttons: dict[str, Any]) -> str:
    voted = feedback_vote(buttons["positive_button"]["value"])
    assert voted is not None
    return voted[1]


async def test_a_click_on_the_feedback_buttons_is_recorded_and_the_latest_vote_counts(
    slack_bot, fake_openai
):
    buttons = await _answered(slack_bot)
    request_id = _request_id(buttons)
    assert buttons["action_id"] == FEEDBACK_ACTION
    up, down = buttons["positive_button"]["value"], buttons["negative_button"]["value"]

    click = feedback_buttons_body(buttons["action_id"], up, user="W222")
    assert (await slack_bot.send(click))[0] == 200
    assert await slack_bot.server.store.feedback(request_id) == {"W222": "up"}
    await slack_bot.send(feedback_buttons_body(FEEDBACK_ACTION, down, label="👎", user="W222"))
    await slack_bot.send(feedback_buttons_body(FEEDBACK_ACTION, up, user="W111"))
    assert await slack_bot.server.store.feedback(request_id) == {"W222": "down", "W111": "up"}


async def test_the_thumbs_of_answers_posted_before_still_count(slack_bot, fake_openai):
    request_id = _request_id(await _answered(slack_bot))

    await slack_bot.send(block_actions_body(FEEDBACK_DOWN_ACTION, request_id, user="W222"))
    assert await slack_bot.server.store.feedback(request_id) == {"W222": "down"}


async def test_a_feedback_value_not_ours_records_nothing(slack_bot, fake_openai):
    request_id = _request_id(await _answered(slack_bot))

    for value in [f"sideways:{request_id}", request_id, "up:", "up:no-such-request"]:
        click = feedback_buttons_body(FEEDBACK_ACTION, value, user="W222")
        assert (await slack_bot.send(click))[0] == 200
    await slack_bot.settle()
    assert await slack_bot.server.store.feedback(request_id) == {}
    assert await slack_bot.server.store.feedback("no-such-request") == {}
