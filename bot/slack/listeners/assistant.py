"""The agent DM: the prompts it suggests when someone opens it.

A question typed there, or sent by clicking a prompt, is an ordinary DM (`message.im`, in a thread
in the older assistant view) and `messages` answers it like any other; nothing here touches
messages, so each is still answered once.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.assistant import suggest_prompts, suggested_prompts
from bot.slack.services import SlackServices


def register(app: AsyncApp, services: SlackServices) -> None:
    """The prompts are made once: the persona cards are read at start-up, the default first."""
    default = services.personas.get(services.default_persona)
    others = [persona for persona in services.personas.all() if persona.name != default.name]
    prompts = suggested_prompts([default, *others])

    @app.event("app_home_opened")
    async def on_app_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        """The agent view: the DM was opened; its prompts go above the composer, no thread."""
        if event.get("tab") != "messages":
            return
        services.tasks.spawn(
            suggest_prompts(client, channel=event["channel"], thread_ts=None, prompts=prompts),
            name="suggest-prompts",
        )

    @app.event("assistant_thread_started")
    async def on_assistant_thread_started(event: dict[str, Any], client: AsyncWebClient) -> None:
        """The older assistant view: a thread was started; the prompts go in it."""
        thread = event["assistant_thread"]
        services.tasks.spawn(
            suggest_prompts(
                client, channel=thread["channel_id"], thread_ts=thread["thread_ts"], prompts=prompts
            ),
            name="suggest-prompts",
        )

    @app.event("assistant_thread_context_changed")
    async def on_assistant_thread_context_changed() -> None:
        """Acknowledged only: answers read the channel's linked sources, not what the person
        happens to be looking at."""
