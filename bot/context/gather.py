"""Reading what a question refers to, before the persona answers it.

References come from the question and from the channel's links; every source is read at once,
each within its own timeout, so gathering takes as long as the slowest source, not the sum.
What was read is redacted, then budgeted (most specific first); what could not be read becomes an
honest `missingContext` line. Follow-ups in a thread see again what the thread already read,
without reading it again; only their new references are fetched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Protocol

import structlog

from bot.config import Settings
from bot.context.budget import fit_to_budget
from bot.context.github import GitHubSource
from bot.context.linear import LinearSource
from bot.context.models import (
    Fetched,
    GitHubReference,
    LinearReference,
    PrivateSourceError,
    Reference,
    SourceError,
)
from bot.context.redaction import redact
from bot.context.references import repository_problem, scan_references
from bot.core.answer import Citation
from bot.core.conversation import Grounding
from bot.core.persona import Persona, SourceKind
from bot.core.progress import SILENT, Progress, Step, StepState

log = structlog.get_logger(__name__)


class GitHubReader(Protocol):
    @property
    def web_hosts(self) -> frozenset[str]: ...

    async def fetch(
        self, reference: GitHubReference, *, public_only: bool = False
    ) -> list[Fetched]: ...

    async def check_repo(self, full_name: str) -> bool: ...

    async def aclose(self) -> None: ...


class LinearReader(Protocol):
    async def fetch(self, reference: LinearReference) -> list[Fetched]: ...

    async def check_team(self, key: str) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Links:
    """What a channel (or a terminal's flags) linked: repositories and Linear team keys."""

    repositories: Sequence[str] = ()
    linear_teams: Sequence[str] = ()


class Reach(Enum):
    """How far beyond its links a question may read (README, "Security model")."""

    # The terminal: whatever the tokens and the allow-lists admit; its user holds the tokens.
    TOKENS = "tokens"
    # A Slack conversation: what is linked to it, and public GitHub repositories.
    CONVERSATION = "conversation"
    # Someone from another organisation (Slack Connect): public GitHub repositories only.
    PUBLIC = "public"


@dataclass(frozen=True)
class _Planned:
    """A reference to read, and whether only a public repository may be read for it."""

    reference: Reference
    public_only: bool


@dataclass(frozen=True)
class Gathered(Grounding):
    """Context for one question, as the engine takes it (budgeted items, their citations, what
    could not be read), and what was newly read, for the thread's memory."""

    fetched: dict[str, list[Fetched]] = field(default_factory=dict)


class ContextGatherer:
    """Finds references, reads them concurrently, and fits them into the prompt's budget."""

    def __init__(
        self,
        *,
        github: GitHubReader,
        linear: LinearReader,
        timeout_seconds: float,
        token_budget: int,
        allowed_github_orgs: Collection[str] = (),
        allowed_linear_teams: Collection[str] = (),
    ) -> None:
        self._github = github
        self._linear = linear
        self._timeout_seconds = timeout_seconds
        self._token_budget = token_budget
        self._allowed_orgs = {org.lower() for org in allowed_github_orgs}
        self._allowed_teams = {team.upper() for team in allowed_linear_teams}

    @classmethod
    def from_settings(cls, settings: Settings) -> ContextGatherer:
        return cls(
            github=GitHubSource.from_settings(settings),
            linear=LinearSource.from_settings(settings),
            timeout_seconds=settings.oi_context_timeout_seconds,
            token_budget=settings.oi_context_token_budget,
            allowed_github_orgs=settings.allowed_github_orgs,
            allowed_linear_teams=settings.allowed_linear_teams,
        )

    async def aclose(self) -> None:
        await self._github.aclose()
        await self._linear.aclose()

    async def check_link(self, kind: SourceKind, target: str) -> bool:
        """Whether a link's content is private (Linear's always is); a `SourceError` refuses it
        unless the allow-lists admit it and the token can read it."""
        reason = self.refused(kind, target)
        if reason:
            raise SourceError(reason)
        if kind == "github":
            return await self._github.check_repo(target)
        await self._linear.check_team(target)
        return True

    def refused(self, kind: SourceKind, target: str) -> str | None:
        """Why an allow-list refuses a repository or team, or None when it may be read."""
        if kind == "github" and (problem := repository_problem(target)):
            return problem
        if kind == "github" and self._allowed_orgs:
            owner = target.split("/", 1)[0].lower()
            if owner not in self._allowed_orgs:
                return f"{target} is outside OI_GITHUB_ALLOWED_ORGS"
        if kind == "linear" and self._allowed_teams:
            team = target.split("-", 1)[0].upper()
            if team not in self._allowed_teams:
                return f"{target} is outside OI_LINEAR_ALLOWED_TEAMS"
        return None

    async def gather(
        self,
        *,
        text: str,
        persona: Persona,
        links: Links,
        reach: Reach,
        place: str = "this conversation",
        cached: Mapping[str, Sequence[Fetched]] = {},  # noqa: B006 (read-only)
        progress: Progress = SILENT,
    ) -> Gathered:
        """`reach` says what may be read besides `links`; `place` names the conversation in
        what was not read ("acme/secret is not linked to #general; …"). `progress` is told of
        each source as it is read, and of each one that is not."""
        started = time.perf_counter()
        if reach is Reach.PUBLIC:
            links = Links()
        cached = {
            key: items
            for key, items in cached.items()
            if _still_readable(key, items, links=links, reach=reach)
        }
        planned, missing = self._references(text, persona, links, reach, place, cached.keys())
        for number, line in enumerate(dict.fromkeys(missing)):
            await progress.step(Step(f"unread:{number}", _short(line), "error", detail=line))
        for plan in planned:
            if _key(plan.reference) in cached:
                await progress.step(_reading(plan.reference, "complete", "read earlier here"))
        new = [plan for plan in planned if _key(plan.reference) not in cached]
        fetched: dict[str, list[Fetched]] = {}

        async def read(plan: _Planned) -> None:
            await progress.step(_reading(plan.reference, "in_progress"))
            result = await self._read(plan)
            if isinstance(result, PrivateSourceError):
                result = _not_linked(plan.reference, reach, place)
            if isinstance(result, str):
                missing.append(result)
                await progress.step(_reading(plan.reference, "error", result))
            else:
                fetched[_key(plan.reference)] = result
                await progress.step(_reading(plan.reference, "complete", "done"))

        await asyncio.gather(*(read(plan) for plan in new))
        missing = list(dict.fromkeys(missing))  # several links into one private repository
        reused = [one for items in cached.values() for one in items]
        everything = [*reused, *(one for items in fetched.values() for one in items)]
        budgeted = fit_to_budget(everything, max_tokens=self._token_budget)
        log.info(
            "context.gathered",
            references=len(planned),
            fetched=len(new),
            reused=len(cached),
            missing=len(missing),
            left_out=len(budgeted.left_out),
            duration_ms=round((time.perf_counter() - started) * 1000),
        )
        return Gathered(
            items=budgeted.items,
            citations=_citations(everything),
            missing=missing,
            fetched=fetched,
        )

    def _references(
        self,
        text: str,
        persona: Persona,
        links: Links,
        reach: Reach,
        place: str,
        read_before: Collection[str],
    ) -> tuple[list[_Planned], list[str]]:
        """The question's references, then the links neither it nor the thread before it
        (`read_before`: cache keys) named already; allow-lists and `reach` apply."""
        sources = set(persona.connections.sources)
        found, refused_urls = scan_references(text, github_hosts=self._github.web_hosts)
        linked_teams = {team.upper() for team in links.linear_teams}
        named_repos = {r.full_name.lower() for r in found if isinstance(r, GitHubReference)}
        named_teams = {r.team for r in found if isinstance(r, LinearReference)}
        for key in read_before:
            vendor, name = _cached_source(key)
            (named_repos if vendor == "github" else named_teams).add(name)
        candidates: list[Reference] = [
            ref
            for ref in found
            if reach is not Reach.TOKENS
            or not (linked_teams and _is_bare_key(ref) and _team(ref) not in linked_teams)
        ]
        host = min(self._github.web_hosts)
        candidates += [
            _linked_repository(name, host)
            for name in links.repositories
            if name.lower() not in named_repos
        ]
        candidates += [
            LinearReference(kind="team", key=team) for team in sorted(linked_teams - named_teams)
        ]
        linked_repos = {name.lower() for name in links.repositories}
        planned: list[_Planned] = []
        missing = [f"Did not read {u.url}: {u.reason}" for u in refused_urls if u.source in sources]
        for ref in candidates:
            kind: SourceKind = "github" if isinstance(ref, GitHubReference) else "linear"
            if kind not in sources:
                continue
            reason = self.refused(kind, _target(ref))
            if reason:
                missing.append(f"Did not read {_label(ref)}: {reason}")
            elif isinstance(ref, GitHubReference):
                linked = reach is not Reach.PUBLIC and ref.full_name.lower() in linked_repos
                public_only = reach is not Reach.TOKENS and not linked
                planned.append(_Planned(ref, public_only=public_only))
            elif reach is Reach.TOKENS or (
                reach is Reach.CONVERSATION and ref.team in linked_teams
            ):
                planned.append(_Planned(ref, public_only=False))
            else:
                missing.append(_not_linked(ref, reach, place))
        return planned, missing

    async def _read(self, plan: _Planned) -> list[Fetched] | str | PrivateSourceError:
        """The redacted items read for one reference, or why they could not be read: a source's
        own words, which name what it could not read (the same words answer `/oi link`)."""
        reference = plan.reference
        try:
            async with asyncio.timeout(self._timeout_seconds):
                if isinstance(reference, GitHubReference):
                    items = await self._github.fetch(reference, public_only=plan.public_only)
                else:
                    items = await self._linear.fetch(reference)
        except TimeoutError:
            waited = f"no answer within {self._timeout_seconds:g}s"
            return f"Could not read {_label(reference)}: {waited}"
        except PrivateSourceError as error:
            return error
        except SourceError as error:
            return str(error)
        path = reference.path if isinstance(reference, GitHubReference) else None
        # In a thread: redacting the largest allowed text takes a while; /healthz must not wait.
        return await asyncio.to_thread(lambda: [_redacted(one, path) for one in items])


def _redacted(fetched: Fetched, path: str | None) -> Fetched:
    """Secrets never reach the model, a Slack message (titles are shown in Sources) or the
    store, from a title or a text; only their count is logged."""
    text = redact(fetched.item.text, path=path)
    title = redact(fetched.item.title)
    if text.count or title.count:
        log.warning("context.redacted", source=fetched.item.source, count=text.count + title.count)
    item = fetched.item.model_copy(update={"text": text.text, "title": title.text})
    return replace(fetched, item=item)


def _cached_source(key: str) -> tuple[str, str]:
    """The vendor and the repository (lower case) or Linear team a cache key (`_key`) names."""
    vendor, _, name = key.split(":", 3)[:3]
    return (vendor, name.lower()) if vendor == "github" else (vendor, name.split("-", 1)[0])


def _still_readable(key: str, items: Sequence[Fetched], *, links: Links, reach: Reach) -> bool:
    """Whether a thread's cached context may still be shown to this question: public content
    always; private content where it is still linked (it may have been unlinked since), and
    never to outsiders."""
    if reach is Reach.TOKENS or not any(one.private for one in items):
        return True
    vendor, name = _cached_source(key)
    if vendor == "github":
        return name in {repo.lower() for repo in links.repositories}
    return name in {team.upper() for team in links.linear_teams}


def _not_linked(reference: Reference, reach: Reach, place: str) -> str:
    """Why a private repository or a Linear ticket was not read here, and who can change it."""
    if isinstance(reference, GitHubReference):
        name, link = reference.full_name, f"github {reference.full_name}"
        what = f"{name} is private"
    else:
        name, link = reference.key, f"linear {reference.team}"
        what = f"{name} is in Linear, which is private to this workspace"
    if reach is Reach.PUBLIC:
        return f"{what}, and questions from outside this workspace read public sources only"
    if isinstance(reference, LinearReference):
        return (
            f"{name} was not read: Linear team {reference.team} is not linked to {place}; "
            f"a workspace admin can `/oi link {link}`"
        )
    return f"{name} is not linked to {place}; a workspace admin can `/oi link {link}`"


def _linked_repository(full_name: str, host: str) -> GitHubReference:
    owner, repo = full_name.split("/", 1)
    return GitHubReference(kind="repo", owner=owner, repo=repo, url=f"https://{host}/{full_name}")


def _is_bare_key(reference: Reference) -> bool:
    return (
        isinstance(reference, LinearReference)
        and reference.kind == "issue"
        and reference.url is None
    )


def _team(reference: Reference) -> str | None:
    return reference.team if isinstance(reference, LinearReference) else None


def _target(reference: Reference) -> str:
    return reference.full_name if isinstance(reference, GitHubReference) else reference.key


def _key(reference: Reference) -> str:
    """What a reference is cached under in a thread."""
    if isinstance(reference, GitHubReference):
        detail = reference.number or reference.path or reference.ref or ""
        lines = f"#L{reference.lines[0]}-L{reference.lines[1]}" if reference.lines else ""
        return f"github:{reference.kind}:{reference.full_name}:{detail}{lines}"
    return f"linear:{reference.kind}:{reference.key}"


def _reading(reference: Reference, state: StepState, detail: str = "") -> Step:
    url = reference.url
    return Step(_key(reference), f"Reading {_name(reference)}", state, detail=detail, url=url)


def _name(reference: Reference) -> str:
    """How a step names a source: `acme/payments#42`, `acme/payments/src/retry.py`, `PAY-123`."""
    if isinstance(reference, LinearReference):
        return reference.key
    if reference.number is not None:
        return f"{reference.full_name}#{reference.number}"
    if reference.path:
        return f"{reference.full_name}/{reference.path}"
    if reference.ref:
        return f"{reference.full_name}@{reference.ref[:12]}"
    return reference.full_name


def _short(line: str) -> str:
    """A step's title for a source not read: the line up to its first clause."""
    return line.split(";", 1)[0]


def _label(reference: Reference) -> str:
    if isinstance(reference, LinearReference):
        return f"Linear {reference.kind} {reference.key}"
    if reference.kind == "repo":
        return f"GitHub repository {reference.full_name}"
    return reference.url


def _citations(fetched: Sequence[Fetched]) -> list[Citation]:
    seen: dict[str, Citation] = {}
    for one in fetched:
        seen.setdefault(one.item.source, Citation(title=one.item.title, url=one.item.source))
    return list(seen.values())
