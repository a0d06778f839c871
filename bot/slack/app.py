"""The slack-bolt `AsyncApp` with oi's listeners; the server picks HTTP or Socket Mode."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.listeners import actions, assistant, messages, slash_command
from bot.slack.services import SlackServices


def build_slack_app(
    *, services: SlackServices, client: AsyncWebClient, signing_secret: str | None
) -> AsyncApp:
    """Listeners only claim and hand work over, and run before the ack: nothing acked is lost."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=signing_secret is not None,
        process_before_response=True,
        logger=logging.getLogger("slack_bolt"),
    )
    slash_command.register(app, services)
    messages.register(app, services)
    actions.register(app, services)
    assistant.register(app, services)
    return app
