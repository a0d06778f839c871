"""Who a Slack person is and what a conversation is, as the access rules need them.

`users.info` says whether someone is a workspace admin or owner and which organisation they
belong to (Slack Connect brings people from other organisations into shared channels);
`conversations.info` says whether a channel is public; `conversations.members` who is in it.
Answers are kept for a minute: a question, its link command and its buttons ask the same things
within seconds, and a changed role or channel takes effect within that minute. Anything Slack
cannot tell us is taken as the less trusting answer (an outsider, a public channel, not a member).
https://docs.slack.dev/apis/slack-connect/using-slack-connect-api-methods
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.cache import TimedCache

log = structlog.get_logger(__name__)

_TTL_SECONDS = 60.0
_MEMBERS_PAGE = 1000  # conversations.members' largest page


@dataclass(frozen=True)
class Person:
    """What the access rules ask of a Slack user."""

    user_id: str
    is_admin: bool  # a workspace admin or owner
    is_external: bool  # from another organisation (Slack Connect), or unknown to Slack


@dataclass(frozen=True)
class Conversation:
    """What the access rules ask of a conversation: is it public, and what to call it."""

    channel_id: str
    is_public: bool  # anyone in the workspace can join and read it
    name: str | None

    @property
    def label(self) -> str:
        """`#general` for a channel, "this conversation" for a DM or a group DM."""
        return f"#{self.name}" if self.name else "this conversation"


class SlackDirectory:
    """`users.info`, `conversations.info` and `conversations.members`, cached for a minute."""

    def __init__(self, *, client: AsyncWebClient, home_team_id: str | None) -> None:
        """`home_team_id`: the installing workspace; unknown, only Slack's `is_stranger` makes
        an outsider."""
        self._client = client
        self._home_team_id = home_team_id
        self._people: TimedCache[Person] = TimedCache(ttl_seconds=_TTL_SECONDS)
        self._conversations: TimedCache[Conversation] = TimedCache(ttl_seconds=_TTL_SECONDS)
        self._members: TimedCache[frozenset[str]] = TimedCache(ttl_seconds=_TTL_SECONDS)

    async def person(self, user_id: str, *, team_id: str | None = None) -> Person:
        """`team_id`: the person's own team where Slack's payload names it (an event's
        `user_team`); another team than ours makes them an outsider, whatever users.info says."""
        person = await self._people.get(user_id, lambda: self._look_up_person(user_id))
        if self._is_other(team_id):
            return Person(user_id=user_id, is_admin=False, is_external=True)
        return person

    async def conversation(self, channel_id: str) -> Conversation:
        return await self._conversations.get(
            channel_id, lambda: self._look_up_conversation(channel_id)
        )

    async def is_member(self, channel_id: str, user_id: str) -> bool:
        members = await self._members.get(channel_id, lambda: self._look_up_members(channel_id))
        return user_id in members

    def _is_other(self, team_id: str | None) -> bool:
        """Whether `team_id` names another team than ours (Slack Connect)."""
        return bool(team_id and self._home_team_id and team_id != self._home_team_id)

    async def _look_up_person(self, user_id: str) -> Person:
        response = await _data(self._client.users_info(user=user_id), "users.info")
        if response is None:
            return Person(user_id=user_id, is_admin=False, is_external=True)
        user = response["user"]
        external = bool(user.get("is_stranger")) or self._is_other(user.get("team_id"))
        admin = any(user.get(role) for role in ("is_admin", "is_owner", "is_primary_owner"))
        return Person(user_id=user_id, is_admin=admin and not external, is_external=external)

    async def _look_up_conversation(self, channel_id: str) -> Conversation:
        info = self._client.conversations_info(channel=channel_id)
        response = await _data(info, "conversations.info")
        if response is None:
            return Conversation(channel_id=channel_id, is_public=True, name=None)
        channel = response["channel"]
        private = any(channel.get(flag) for flag in ("is_private", "is_im", "is_mpim"))
        name = None if channel.get("is_im") or channel.get("is_mpim") else channel.get("name")
        return Conversation(channel_id=channel_id, is_public=not private, name=name)

    async def _look_up_members(self, channel_id: str) -> frozenset[str]:
        members: set[str] = set()
        cursor = None
        while True:
            page = self._client.conversations_members(
                channel=channel_id, limit=_MEMBERS_PAGE, cursor=cursor
            )
            response = await _data(page, "conversations.members")
            if response is None:
                return frozenset()
            members.update(response["members"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return frozenset(members)


async def _data(call: Awaitable[AsyncSlackResponse], method: str) -> dict[str, Any] | None:
    """The answer's body, or None (logged) when Slack refused the call or failed."""
    try:
        response = await call
    except SlackApiError as error:
        data = error.response.data
        code = data.get("error") if isinstance(data, dict) else error.response.status_code
        log.warning("slack.look_up_failed", method=method, slack_error=str(code))
        return None
    return response.data if isinstance(response.data, dict) else None
