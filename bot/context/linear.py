"""The Linear vendor module: read-only GraphQL for the issues and teams a question names.

It owns one gql client (aiohttp transport) for the process, its timeout, its retries (a 5xx or
a failed connection is tried again, twice, after a short pause; a rate limit is not: Linear's
window outlasts a question), and the translation of Linear's errors into `SourceError`.
See https://linear.app/developers/graphql: a personal API key
goes in `Authorization: <key>` (no `Bearer`), and rate limiting is a GraphQL error whose
`extensions.code` is `RATELIMITED`. Every document is a constant here, so a test can validate
each one against Linear's published schema.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import structlog
from gql import Client, GraphQLRequest, gql
from gql.client import AsyncClientSession
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportError,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)

from bot.config import Settings
from bot.context.models import (
    PRIORITY_BACKGROUND,
    PRIORITY_PRIMARY,
    Fetched,
    LinearReference,
    SourceError,
)
from bot.context.redaction import cap_body
from bot.context.references import linear_key_problem
from bot.core.conversation import ContextItem

log = structlog.get_logger(__name__)

LATEST_COMMENTS = 10
IN_PROGRESS_LIMIT = 25

# Linear orders connections newest first (`orderBy` has no direction), so `first: N` is the
# latest N; they are put back in chronological order for the prompt.
ISSUE_QUERY = gql(
    """
    query Issue($id: String!, $comments: Int!) {
      issue(id: $id) {
        identifier
        title
        description
        url
        priorityLabel
        updatedAt
        state { name type }
        assignee { name }
        labels { nodes { name } }
        project { name }
        parent { identifier title }
        comments(first: $comments, orderBy: createdAt) {
          nodes { body createdAt user { name } }
        }
      }
    }
    """
)

TEAM_IN_PROGRESS_QUERY = gql(
    """
    query TeamInProgress($key: String!, $first: Int!) {
      teams(filter: { key: { eq: $key } }) {
        nodes {
          key
          name
          organization { urlKey }
          issues(
            filter: { state: { type: { eq: "started" } } }
            first: $first
            orderBy: updatedAt
          ) {
            nodes { identifier title assignee { name } state { name } }
          }
        }
      }
    }
    """
)

TEAM_QUERY = gql(
    """
    query Team($key: String!) {
      teams(filter: { key: { eq: $key } }) {
        nodes { key name }
      }
    }
    """
)

_NOT_FOUND_CODES = {"INPUT_ERROR", "FORBIDDEN"}
_RETRIES = 2
_RETRY_PAUSE_SECONDS = 0.25  # then 0.5: well inside OI_CONTEXT_TIMEOUT_SECONDS


class LinearSource:
    """Reads Linear issues and teams' work in progress as context; never writes to Linear."""

    def __init__(self, *, api_key: str | None, api_url: str, timeout_seconds: float) -> None:
        self._client = (
            Client(
                transport=AIOHTTPTransport(url=api_url, headers={"Authorization": api_key}),
                execute_timeout=timeout_seconds,
            )
            if api_key
            else None
        )
        self._session: AsyncClientSession | None = None
        self._connecting = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LinearSource:
        key = settings.linear_api_key
        return cls(
            api_key=key.get_secret_value() if key else None,
            api_url=settings.linear_api_url,
            timeout_seconds=settings.oi_context_timeout_seconds,
        )

    async def aclose(self) -> None:
        if self._client is not None and self._session is not None:
            await self._client.close_async()
            self._session = None

    async def fetch(self, reference: LinearReference) -> list[Fetched]:
        """The issue with its latest comments, or the team's issues in progress."""
        _refuse(linear_key_problem(reference.key, team=reference.kind == "team"))
        if reference.kind == "issue":
            return [await self._issue(reference.key)]
        return [await self._team_in_progress(reference.key, reference.url)]

    async def check_team(self, key: str) -> None:
        """The team exists and this key can read it (`/oi link linear PAY`), else SourceError."""
        _refuse(linear_key_problem(key, team=True))
        data = await self._execute(TEAM_QUERY, {"key": key}, subject=f"Linear team {key}")
        if not data["teams"]["nodes"]:
            raise SourceError(_not_found(f"Linear team {key}"))

    async def _issue(self, key: str) -> Fetched:
        variables = {"id": key, "comments": LATEST_COMMENTS}
        issue = (await self._execute(ISSUE_QUERY, variables, subject=key))["issue"]
        item = ContextItem(
            source=issue["url"],
            title=f"{issue['identifier']}: {cap_body(issue['title'])}",
            text=_issue_text(issue),
        )
        return Fetched(item=item, priority=PRIORITY_PRIMARY, revision=issue["updatedAt"])

    async def _team_in_progress(self, key: str, url: str | None) -> Fetched:
        subject = f"Linear team {key}"
        variables = {"key": key, "first": IN_PROGRESS_LIMIT}
        teams = (await self._execute(TEAM_IN_PROGRESS_QUERY, variables, subject=subject))["teams"]
        if not teams["nodes"]:
            raise SourceError(_not_found(subject))
        team = teams["nodes"][0]
        text = _team_text(team)
        item = ContextItem(
            source=url or f"https://linear.app/{team['organization']['urlKey']}/team/{key}/active",
            title=f"{team['key']} ({team['name']}): issues in progress",
            text=text,
        )
        revision = hashlib.sha256(text.encode()).hexdigest()[:16]
        return Fetched(item=item, priority=PRIORITY_BACKGROUND, revision=revision)

    async def _execute(
        self, query: GraphQLRequest, variables: dict[str, Any], *, subject: str
    ) -> dict[str, Any]:
        """One request's data, or a SourceError saying why not; no vendor exception escapes."""
        if self._client is None:
            raise SourceError(f"{subject} could not be read: LINEAR_API_KEY is not set")
        request = GraphQLRequest(query, variable_values=variables)
        retries = 0
        while True:
            try:
                session = await self._connected(self._client)
                return await session.execute(request)
            except (TransportError, TimeoutError) as error:
                if retries < _RETRIES and _worth_retrying(error):
                    await asyncio.sleep(_RETRY_PAUSE_SECONDS * 2**retries)
                    retries += 1
                    continue
                reason = _describe(error, subject)
                log.warning("linear.failed", subject=subject, reason=reason, retries=retries)
                raise SourceError(reason) from None

    async def _connected(self, client: Client) -> AsyncClientSession:
        """The one session of the process, opened on first use."""
        async with self._connecting:
            if self._session is None:
                self._session = await client.connect_async()
            return self._session


def _refuse(problem: str | None) -> None:
    """A key outside Linear's shape is never sent, even as a variable."""
    if problem is not None:
        raise SourceError(f"Linear: not requested, {problem}")


def _worth_retrying(error: Exception) -> bool:
    """Linear's outage or a lost connection may be over in a moment; a refusal will not be."""
    if isinstance(error, TransportServerError):
        return error.code is not None and error.code >= 500
    return isinstance(error, TransportConnectionFailed)


def _describe(error: Exception, subject: str) -> str:
    """Linear's reason in a short sentence naming what was asked for; never the API key."""
    if isinstance(error, TransportQueryError):
        return _query_error_reason(error.errors or [], subject)
    if isinstance(error, TransportServerError):
        if error.code in (401, 403):
            return f"{subject} could not be read: LINEAR_API_KEY was not accepted"
        if error.code == 429:
            return f"{subject} could not be read: Linear rate limit reached"
        return f"{subject} could not be read: Linear answered HTTP {error.code}"
    if isinstance(error, TransportProtocolError):
        return f"{subject} could not be read: Linear's answer was not GraphQL"
    if isinstance(error, TransportConnectionFailed):
        return f"{subject} could not be read: could not connect to Linear (LINEAR_API_URL)"
    return f"{subject} could not be read: Linear did not answer in time"


def _query_error_reason(errors: list[dict[str, Any]], subject: str) -> str:
    """Linear says why in `extensions.code`: RATELIMITED, AUTHENTICATION_ERROR, INPUT_ERROR…"""
    codes = {(error.get("extensions") or {}).get("code") for error in errors}
    if "RATELIMITED" in codes:
        return f"{subject} could not be read: Linear rate limit reached"
    if "AUTHENTICATION_ERROR" in codes:
        return f"{subject} could not be read: LINEAR_API_KEY was not accepted"
    if codes & _NOT_FOUND_CODES:
        return _not_found(subject)
    message = str(errors[0].get("message", "")) if errors else ""
    return f"{subject} could not be read: Linear refused the query ({message[:200]})"


def _not_found(subject: str) -> str:
    return f"{subject} was not found, or this LINEAR_API_KEY cannot read it"


def _issue_text(issue: dict[str, Any]) -> str:
    parent = issue["parent"]
    parent_text = f"{parent['identifier']} {parent['title']}" if parent else "none"
    labels = ", ".join(label["name"] for label in issue["labels"]["nodes"])
    lines = [
        f"Linear issue {issue['identifier']}: {cap_body(issue['title'])}",
        f"State: {issue['state']['name']} ({issue['state']['type']})",
        f"Priority: {issue['priorityLabel']}",
        f"Assignee: {_name(issue['assignee'], 'unassigned')}",
        f"Labels: {labels or 'none'}",
        f"Project: {_name(issue['project'], 'none')}",
        f"Parent: {parent_text}",
        f"Updated: {issue['updatedAt']}",
        "",
        "Description:",
        cap_body(issue["description"]) or "(none)",
    ]
    comments = sorted(issue["comments"]["nodes"], key=lambda comment: comment["createdAt"])
    if comments:
        lines += ["", f"Latest comments, oldest first (up to {LATEST_COMMENTS}):"]
        lines += [_comment_text(comment) for comment in comments]
    return "\n".join(lines)


def _comment_text(comment: dict[str, Any]) -> str:
    author = _name(comment["user"], "(no user)")
    body = cap_body(comment["body"]).strip().replace("\n", "\n  ")
    return f"- {author}, {comment['createdAt']}:\n  {body}"


def _team_text(team: dict[str, Any]) -> str:
    issues = team["issues"]["nodes"]
    lines = [f"Linear team {team['key']} ({team['name']}): issues in progress"]
    lines += [
        f"- {issue['identifier']} {cap_body(issue['title'])} [{issue['state']['name']}]"
        f" ({_name(issue['assignee'], 'unassigned')})"
        for issue in issues
    ]
    if not issues:
        lines.append("(none)")
    return "\n".join(lines)


def _name(entity: dict[str, Any] | None, missing: str) -> str:
    return entity["name"] if entity else missing
