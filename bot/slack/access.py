"""Who may do what in Slack: link sources to a conversation, and read beyond its links.

The bot's tokens read a company's private code and backlog, so what a conversation sees is
decided here, not by whoever pastes a URL (README, "Security model"):
- linking (`/oi link`, `/oi unlink`, `/oi default`) is for workspace admins and owners and the
  people in `OI_ADMIN_USERS`, unless `OI_LINK_POLICY=anyone`;
- people from other organisations (Slack Connect) read public sources only
  (`OI_EXTERNAL_USERS=public-only`), are refused (`deny`) or treated as members (`full`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.config import Settings
from bot.context.gather import Reach
from bot.slack.directory import Person

LinkPolicy = Literal["admins", "anyone"]
ExternalPolicy = Literal["public-only", "deny", "full"]

NOT_AN_ADMIN = (
    "Only workspace admins and owners (and the people named in the bot's OI_ADMIN_USERS) "
    "can change what this channel links or its default persona. Ask one of them."
)
OUTSIDER_CANNOT_LINK = (
    "People from outside this workspace can't change what this channel links or its default "
    "persona."
)
OUTSIDERS_DENIED = (
    "Sorry, I only answer people from this workspace. Ask someone from it to ask me instead."
)


@dataclass(frozen=True)
class AccessPolicy:
    link_policy: LinkPolicy
    admin_users: frozenset[str]
    external_users: ExternalPolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            link_policy=settings.oi_link_policy,
            admin_users=frozenset(settings.admin_users),
            external_users=settings.oi_external_users,
        )

    def why_not_link(self, person: Person) -> str | None:
        """Why this person may not change a conversation's links, or None when they may."""
        if person.is_external and self.external_users != "full":
            return OUTSIDER_CANNOT_LINK
        if self.link_policy == "anyone" or person.is_admin or person.user_id in self.admin_users:
            return None
        return NOT_AN_ADMIN

    def reach(self, person: Person) -> Reach | None:
        """How far this person's questions read; None: they are not answered at all."""
        if not person.is_external or self.external_users == "full":
            return Reach.CONVERSATION
        return Reach.PUBLIC if self.external_users == "public-only" else None


def place(channel_id: str) -> str:
    """The conversation as a missingContext line names it: DMs start with `D`."""
    return "this conversation" if channel_id.startswith("D") else "this channel"
