"""Buttons under answers: "Try again" on a failure, and thumbs up/down feedback."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.slack.render import FEEDBACK_DOWN_ACTION, FEEDBACK_UP_ACTION, RETRY_ACTION
from bot.slack.services import SlackServices
from bot.store.store import Vote


def register(app: AsyncApp, services: SlackServices) -> None:
    @app.action(RETRY_ACTION)
    async def on_retry(ack: AsyncAck, action: dict[str, Any]) -> None:
        await ack()
        request = await services.store.reopen_failed(action["value"])
        if request is not None:
            services.tasks.spawn(services.responder.answer(request), name=f"retry-{request.id}")

    @app.action(FEEDBACK_UP_ACTION)
    @app.action(FEEDBACK_DOWN_ACTION)
    async def on_feedback(ack: AsyncAck, action: dict[str, Any], body: dict[str, Any]) -> None:
        await ack()
        vote: Vote = "up" if action["action_id"] == FEEDBACK_UP_ACTION else "down"
        request = await services.store.get_request(action["value"])
        if request is None:
            return
        await services.store.record_feedback(request.id, body["user"]["id"], vote)
        services.metrics.feedback.labels(vote).inc()
