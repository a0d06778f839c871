"""A local Linear GraphQL API: `POST /graphql`, held to Linear's published schema.

Every document is parsed and validated against the vendored schema (`tests/vendor/linear/`,
Linear's own SDL); an invalid one gets Linear's validation error and is recorded as invalid, so
tests can assert the bot sent none. Valid documents are executed by graphql-core against that
same schema, over the issues and teams a test adds, so a field the bot asks for must exist and
come back in Linear's shape. Failures follow Linear's: a rate limit is HTTP 400 with
`extensions.code` `RATELIMITED`, a bad key is `AUTHENTICATION_ERROR`, an unknown issue is
"Entity not found: Issue" (`INPUT_ERROR`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    build_schema,
    execute_sync,
    parse,
    validate,
)

from tests.fakes._server import RequestLog, ThreadedServer

SCHEMA_PATH = Path(__file__).parent.parent / "vendor" / "linear" / "schema.graphql"
API_KEY = "lin_api_fake0123456789"
WORKSPACE = "acme"

_PRIORITY_LABELS = {0: "No priority", 1: "Urgent", 2: "High", 3: "Medium", 4: "Low"}
_DEFAULT_PAGE = 50  # Linear's default `first`/`last`


@functools.cache
def linear_schema() -> GraphQLSchema:
    """Linear's schema, built once a process (about a second: the SDL is 1.25 MB)."""
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class LinearRequest:
    """One request as received: the document text, its variables, the Authorization header."""

    query: str
    variables: dict[str, Any]
    authorization: str | None
    valid: bool


class FakeLinear:
    """The server and its data; `requests` holds every request received, in order."""

    def __init__(self) -> None:
        self.api_key = API_KEY
        self.requests: RequestLog[LinearRequest] = RequestLog()
        self._issues: dict[str, dict[str, Any]] = {}
        self._teams: dict[str, dict[str, Any]] = {}
        self._rate_limited = 0
        self._server_errors = 0
        self._key_rejected = False
        self._held = False
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_post("/graphql", self._graphql)
        self._server = ThreadedServer(app)

    @property
    def api_url(self) -> str:
        return f"{self._server.url}/graphql"

    @property
    def invalid_requests(self) -> list[LinearRequest]:
        return [request for request in self.requests if not request.valid]

    def start(self) -> None:
        linear_schema()
        self._server.start()

    def stop(self) -> None:
        self._server.stop(before=self._release)

    def add_team(self, key: str, name: str) -> None:
        team = {"key": key, "name": name, "organization": {"urlKey": WORKSPACE}}
        self._teams[key] = {**team, "issues": _connection(lambda: self._team_issues(key))}

    def add_issue(
        self,
        identifier: str,
        *,
        title: str,
        description: str | None = None,
        state: tuple[str, str] = ("In Progress", "started"),
        priority: int = 2,
        assignee: str | None = None,
        labels: Iterable[str] = (),
        project: str | None = None,
        parent: str | None = None,
        comments: Iterable[tuple[str | None, str, str]] = (),
        updated_at: str = "2026-11-20T10:00:00.000Z",
    ) -> None:
        """An issue; `comments` are (author or None for an integration, body, createdAt)."""
        label_nodes = [{"name": label} for label in labels]
        comment_nodes = [
            {"body": body, "createdAt": created_at, "user": _named(author)}
            for author, body, created_at in sorted(comments, key=lambda c: c[2], reverse=True)
        ]
        self._issues[identifier] = {
            "identifier": identifier,
            "title": title,
            "description": description,
            "url": f"https://linear.app/{WORKSPACE}/issue/{identifier}",
            "priority": priority,
            "priorityLabel": _PRIORITY_LABELS[priority],
            "updatedAt": updated_at,
            "state": {"name": state[0], "type": state[1]},
            "assignee": _named(assignee),
            "labels": _connection(lambda: label_nodes),
            "project": _named(project),
            "parent": (lambda _info: self._issues[parent]) if parent else None,
            "comments": _connection(lambda: comment_nodes),
        }

    def rate_limited(self, times: int = 1) -> None:
        """The next `times` requests get Linear's RATELIMITED error."""
        self._rate_limited += times

    def server_error(self, times: int = 1) -> None:
        """The next `times` requests get an HTTP 503, as Linear's edge answers in an outage."""
        self._server_errors += times

    def reject_key(self) -> None:
        """From now on every request gets Linear's authentication error, whatever its key."""
        self._key_rejected = True

    def hold(self) -> None:
        """Requests from now on wait, unanswered, until `release()`."""
        self._server.call(self._hold)

    def release(self) -> None:
        self._server.call(self._release)

    async def _hold(self) -> None:
        self._held = True
        self._released.clear()

    async def _release(self) -> None:
        self._held = False
        self._released.set()

    async def _graphql(self, request: web.Request) -> web.Response:
        body = await request.json()
        query, variables = body.get("query", ""), body.get("variables") or {}
        authorization = request.headers.get("Authorization")
        document, problems = _parsed(query)
        self.requests.append(LinearRequest(query, variables, authorization, valid=not problems))
        if self._server_errors:
            self._server_errors -= 1
            return web.Response(status=503, text="Service Unavailable")
        if document is None or problems:
            return _errors(400, problems, code="GRAPHQL_VALIDATION_FAILED")
        if self._key_rejected or authorization != self.api_key:
            return _errors(
                401,
                ["Authentication required, not authenticated"],
                code="AUTHENTICATION_ERROR",
                type="authentication error",
            )
        if self._rate_limited:
            self._rate_limited -= 1
            return _errors(400, ["Rate limit exceeded"], code="RATELIMITED", type="ratelimited")
        if self._held:
            await self._released.wait()
        result = execute_sync(
            linear_schema(),
            document,
            root_value={"issue": self._issue, "teams": self._teams_matching},
            variable_values=variables,
            operation_name=body.get("operationName"),
        )
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [error.formatted for error in result.errors]
        return web.json_response(payload)

    def _issue(self, _info: Any, id: str) -> dict[str, Any]:
        if id not in self._issues:
            raise GraphQLError(
                "Entity not found: Issue",
                extensions={
                    "type": "invalid input",
                    "code": "INPUT_ERROR",
                    "statusCode": 400,
                    "userError": True,
                    "userPresentableMessage": "Could not find referenced Issue.",
                },
            )
        return self._issues[id]

    def _teams_matching(self, _info: Any, filter: dict[str, Any] | None = None, **_: Any) -> Any:
        return {"nodes": [team for team in self._teams.values() if _matches(team, filter)]}

    def _team_issues(self, key: str) -> list[dict[str, Any]]:
        return [issue for name, issue in self._issues.items() if name.startswith(f"{key}-")]


def _connection(nodes: Callable[[], list[dict[str, Any]]]) -> Callable[..., dict[str, Any]]:
    """A Linear connection field: `filter`, `first`, `last`, `orderBy`, newest first."""

    def resolve(
        _info: Any,
        filter: dict[str, Any] | None = None,
        first: int | None = None,
        last: int | None = None,
        orderBy: str = "createdAt",
        **_: Any,
    ) -> dict[str, Any]:
        matching = [node for node in nodes() if _matches(node, filter)]
        if orderBy == "updatedAt":
            matching.sort(key=lambda node: node["updatedAt"], reverse=True)
        if last is not None:
            return {"nodes": matching[-last:] if last else []}
        return {"nodes": matching[: first if first is not None else _DEFAULT_PAGE]}

    return resolve


def _matches(entity: dict[str, Any], filter: dict[str, Any] | None) -> bool:
    """Linear's filter objects, `eq` comparators only: `{state: {type: {eq: "started"}}}`."""
    for field, condition in (filter or {}).items():
        value = entity.get(field)
        if isinstance(value, dict):
            if not _matches(value, condition):
                return False
        elif set(condition) != {"eq"}:
            raise NotImplementedError(f"the fake Linear filters with eq only, not {condition}")
        elif value != condition["eq"]:
            return False
    return True


def _named(name: str | None) -> dict[str, str] | None:
    return {"name": name} if name else None


def _parsed(query: str) -> tuple[DocumentNode | None, list[str]]:
    """The document and what is wrong with it against Linear's schema (nothing, we hope)."""
    try:
        document = parse(query)
    except GraphQLError as error:
        return None, [error.message]
    return document, [error.message for error in validate(linear_schema(), document)]


def _errors(status: int, messages: list[str], *, code: str, **extensions: Any) -> web.Response:
    errors = [
        {"message": message, "extensions": {"code": code, **extensions}} for message in messages
    ]
    return web.json_response({"errors": errors}, status=status)
