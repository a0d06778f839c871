"""What crosses the context boundary: references found in text, and what sources read for them.

Sources return these plain frozen objects, never vendor SDK objects, so nothing lazy reaches the
event loop and nothing else needs to know a vendor's types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.core.conversation import ContextItem
from bot.core.persona import SourceKind

GitHubKind = Literal["repo", "pull", "issue", "file", "tree", "commit"]
LinearKind = Literal["issue", "team"]


@dataclass(frozen=True)
class GitHubReference:
    """A repository, or a pull request, issue, file (or line range), tree or commit in one."""

    kind: GitHubKind
    owner: str
    repo: str
    url: str
    number: int | None = None
    path: str | None = None
    ref: str | None = None
    lines: tuple[int, int] | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"


@dataclass(frozen=True)
class LinearReference:
    """A Linear issue (`PAY-123`) or a team (`PAY`: its issues in progress)."""

    kind: LinearKind
    key: str
    url: str | None = None

    @property
    def team(self) -> str:
        return self.key.split("-", 1)[0]


Reference = GitHubReference | LinearReference


@dataclass(frozen=True)
class RefusedReference:
    """A GitHub or Linear URL that is not read: it could reach beyond what it names.

    `url` is shortened, its invisible characters escaped, so it can be shown; `reason` says why
    in words for `missingContext`.
    """

    source: SourceKind
    url: str
    reason: str


@dataclass(frozen=True)
class Fetched:
    """One context item a source read, with its place in the budget and its revision.

    `priority` orders items into the token budget, lower first (a PR's diff and a ticket before
    a README); `revision` (a head sha, an `updatedAt`) says when a cached copy is stale;
    `private`: from a private repository or from Linear, so a thread's follow-ups reuse it only
    where it may still be read (linked, and not for outsiders).
    """

    item: ContextItem
    priority: int
    revision: str
    private: bool = True


class SourceError(Exception):
    """A reference could not be read; the message is said to the user in `missingContext`."""


class PrivateSourceError(SourceError):
    """A private repository, asked for where only public ones may be read."""


# Budget order (lower first): what the question is about, then its details, then background.
PRIORITY_PRIMARY = 0  # a pull request's diff, a Linear issue
PRIORITY_DETAIL = 1  # a file or line range, a GitHub issue, a commit
PRIORITY_BACKGROUND = 2  # a repository's tree and manifests, a team's issues in progress
PRIORITY_README = 3  # a repository's README
