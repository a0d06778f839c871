"""oi as an agent in Slack: whom its messages are from, the prompts its DM suggests, and the
status and title of a thread it answers in.

Slack shows an app with `agent_view` (manifest.yml) as an agent
(https://docs.slack.dev/ai/developing-agents): opening its DM, or starting a thread in the older
assistant view, is when it suggests prompts; while it answers, the thread shows a status and, in
the DM's history, a title. All of that is cosmetic, so a question never fails because Slack would
not show it: `_cosmetic` logs a failed call by its method and error code, and drops it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import TypedDict

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.persona import Persona

log = structlog.get_logger(__name__)

# Lets a message name its own author and icon (chat.postMessage's `username`, `icon_emoji`).
CUSTOMIZE_SCOPE = "chat:write.customize"
MAX_PROMPTS = 4  # "up to four suggested prompts" (assistant.threads.setSuggestedPrompts)
PROMPTS_TITLE = "Ask a persona"
# Slack documents no length for either title; each shows on one line, so it is cut at a word.
PROMPT_TITLE_CHARACTERS = 40
THREAD_TITLE_CHARACTERS = 60
_TRAILING = " ,;:.-"  # what a cut title does not end with
# Refusals that only mean "not here": not an agent thread or app, or a token or scope that may
# not; expected wherever a status or title is tried outside the agent DM, so not warnings.
_NOT_HERE = frozenset(
    {
        "channel_not_found",
        "invalid_thread_ts",
        "message_not_found",
        "missing_scope",
        "no_permission",
        "not_agent_app",
        "not_allowed_token_type",
    }
)


class Author(TypedDict, total=False):
    """Keyword arguments of chat.postMessage, chat_stream and setStatus naming the sender."""

    username: str
    icon_emoji: str
    icon_url: str


@dataclass(frozen=True)
class SuggestedPrompt:
    """A button in the agent DM: its `title`, and the `message` it sends for the person."""

    title: str
    message: str


def can_customize(scopes: str | None) -> bool:
    """Whether the granted scopes (auth.test's `x-oauth-scopes` header, comma-separated) let
    messages name their own author."""
    return CUSTOMIZE_SCOPE in {scope.strip() for scope in (scopes or "").split(",")}


def author(persona: Persona, *, customize: bool) -> Author:
    """The persona as the sender of its messages where the app may say so, else nothing (the
    app's own name and icon)."""
    if not customize:
        return {}
    sender = Author(username=persona.display_name or persona.title)
    if persona.icon and persona.icon.startswith(":"):
        sender["icon_emoji"] = persona.icon
    elif persona.icon:
        sender["icon_url"] = persona.icon
    return sender


def suggested_prompts(personas: Iterable[Persona]) -> list[SuggestedPrompt]:
    """Prompts from the cards' example use cases, each persona's first before anyone's second,
    so that as many personas as fit show; a prompt's message names its persona, as the DM's
    grammar (`<persona> <question>`) takes it."""
    per_persona = [_prompts(persona) for persona in personas]
    in_turn = [prompt for turn in zip_longest(*per_persona) for prompt in turn if prompt]
    return in_turn[:MAX_PROMPTS]


async def suggest_prompts(
    client: AsyncWebClient,
    *,
    channel: str,
    thread_ts: str | None,
    prompts: Sequence[SuggestedPrompt],
) -> None:
    """Show `prompts` in the agent DM `channel`; in the older assistant view, in its thread
    `thread_ts` (which the agent view refuses silently, so it must then be None)."""
    if not prompts:
        return
    await _cosmetic(
        client.assistant_threads_setSuggestedPrompts(
            channel_id=channel,
            thread_ts=thread_ts,
            title=PROMPTS_TITLE,
            prompts=[{"title": prompt.title, "message": prompt.message} for prompt in prompts],
        ),
        "assistant.threads.setSuggestedPrompts",
    )


async def set_status(
    client: AsyncWebClient,
    *,
    channel: str,
    thread_ts: str,
    status: str,
    sender: Author | None = None,
) -> None:
    """Show what the bot is doing under the thread's last message; "" clears it (so does
    Slack, two minutes after the status was set, or once the bot replies)."""
    await _cosmetic(
        client.assistant_threads_setStatus(
            channel_id=channel, thread_ts=thread_ts, status=status, **(sender or {})
        ),
        "assistant.threads.setStatus",
    )


async def set_title(client: AsyncWebClient, *, channel: str, thread_ts: str, title: str) -> None:
    """Name the thread in the agent DM's history after `title` (the question), on one line."""
    await _cosmetic(
        client.assistant_threads_setTitle(
            channel_id=channel,
            thread_ts=thread_ts,
            title=_shortened(_plain(title), THREAD_TITLE_CHARACTERS),
        ),
        "assistant.threads.setTitle",
    )


def _prompts(persona: Persona) -> list[SuggestedPrompt]:
    """A card's use cases read like commands (`oi backend-engineer review …`): the question
    is what follows the persona's name, the title its first clause."""
    prompts: list[SuggestedPrompt] = []
    for use_case in persona.example_use_cases:
        words = use_case.split()
        if words[:1] and words[0].lower() == "oi":
            words = words[1:]
        if words[:1] == [persona.name]:
            words = words[1:]
        if words:
            question = " ".join(words)
            clause = question.split(" and ", 1)[0].rstrip(_TRAILING)
            title = _shortened(clause[:1].upper() + clause[1:], PROMPT_TITLE_CHARACTERS)
            prompts.append(SuggestedPrompt(title=title, message=f"{persona.name} {question}"))
    return prompts


def _plain(text: str) -> str:
    """Slack's link markup as the text it shows: `<url|label>` as label, `<url>` as url."""
    text = re.sub(r"<([^<>|]*)\|([^<>]*)>", r"\2", text)
    return re.sub(r"<([^<>]*)>", r"\1", text)


def _shortened(text: str, limit: int) -> str:
    """`text` on one line, cut at the last word that fits `limit` characters with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    kept = text[: limit - 1]
    if " " in kept:
        kept = kept.rsplit(" ", 1)[0]
    return kept.rstrip(_TRAILING) + "…"


async def _cosmetic(call: Awaitable[object], method: str) -> None:
    """Await a call whose failure costs only a detail of the display: logged, never raised."""
    try:
        await call
    except SlackApiError as error:
        code = str(error.response.get("error") or error.response.status_code)
        report = log.info if code in _NOT_HERE else log.warning
        report("slack.display_call_refused", method=method, slack_error=code)
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as error:
        log.warning("slack.display_call_failed", method=method, error=type(error).__name__)
