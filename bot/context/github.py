"""The GitHub context source: read-only REST calls through PyGithub, in a bounded thread pool.

PyGithub is synchronous, and its connection object keeps each request's URL on itself, so one
client must not be shared by threads (PyGithub/PyGithub#2052): every worker thread of the pool has
its own `Github` client. The function a worker runs returns plain text in `Fetched` items, never a
PyGithub object, whose lazy attributes would make HTTP calls on the event loop. Each client has a
per-request timeout, a bounded retry, and a cap on how long a rate limit may be waited out; past
that cap the limit becomes a `SourceError` at once. PyGithub's and requests' exceptions stop here,
turned into a `SourceError` that says what could not be read and why. See https://docs.github.com/rest.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from itertools import islice
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote, urlsplit

import github
import requests
import structlog
from github.ContentFile import ContentFile
from github.File import File
from github.GithubException import (
    BadAttributeException,
    GithubException,
    RateLimitExceededExceedsMaxWait,
    RateLimitExceededException,
    UnknownObjectException,
)
from github.GithubObject import NotSet
from github.Issue import Issue
from github.NamedUser import NamedUser
from github.Organization import Organization
from github.Repository import Repository
from urllib3 import HTTPResponse, Retry

from bot.cache import TimedCache
from bot.config import ConfigError, Settings
from bot.context.models import (
    PRIORITY_BACKGROUND,
    PRIORITY_DETAIL,
    PRIORITY_PRIMARY,
    PRIORITY_README,
    Fetched,
    GitHubReference,
    PrivateSourceError,
    SourceError,
)
from bot.context.redaction import cap_body, redact
from bot.context.references import github_reference_problem, repository_problem
from bot.core.conversation import ContextItem

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

_VISIBILITY_TTL_SECONDS = 60.0  # a repository made private is read as public a minute at most
_TIMEOUT_SECONDS = 10.0  # one HTTP attempt; GitHub answers reads in well under a second
_RETRIES = 2  # connection failures and 5xx; a read timeout is not retried
_PER_PAGE = 100  # GitHub's largest page: fewest calls for a PR's files or an issue's comments
_MAX_CHANGED_FILES = 300  # a PR's or commit's files read (three pages)
_MAX_PATCH_CHARS = 20_000  # a longer patch is noted, not included
_MAX_DIFF_CHARS = 150_000  # all patches of one PR or commit together
_MAX_COMMENTS = 20  # an issue's latest comments
_MAX_FILE_BYTES = 200_000  # a larger file is noted unless a line range is asked for
_MAX_README_CHARS = 30_000
_MAX_MANIFESTS = 8
_MAX_MANIFEST_CHARS = 8_000
_MANIFEST_DEPTH = 2  # manifests are looked for at the top and two folders down

# PyGithub asserts what it expects of GitHub's answers (a `url` on another host than
# GITHUB_API_URL fails its same-host check): an answer it cannot follow, not a bug of ours.
_VENDOR_ERRORS = (
    GithubException,
    BadAttributeException,
    requests.RequestException,
    AssertionError,
)

# Files and folders that show how a repository is built, deployed and split into services.
_MANIFEST_NAMES = frozenset(
    {
        "pyproject.toml",
        "requirements.txt",
        "package.json",
        "go.mod",
        "Cargo.toml",
        "pom.xml",
        "build.gradle",
        "Dockerfile",
    }
)
_MANIFEST_PATTERNS = (
    "docker-compose*.y*ml",
    "compose*.y*ml",
    "openapi*.y*ml",
    "openapi*.json",
    "swagger*.y*ml",
    "swagger*.json",
    "*.proto",
)
_TOPOLOGY_FOLDERS = frozenset(
    {"migrations", "alembic", "proto", "protos", "services", "cmd", "deploy", "k8s", "helm"}
)
_SKIPPED_FOLDERS = frozenset({"node_modules", "vendor", "third_party"})


class GitHubSource:
    """Reads GitHub references into context items, read-only, with bounded threads and waits."""

    def __init__(
        self,
        *,
        token: str | None,
        api_url: str,
        timeout_seconds: float,
        max_workers: int = 4,
        max_rate_limit_wait_seconds: int = 10,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._has_token = bool(token)
        retry = _Retry(
            total=_RETRIES,
            read=False,
            backoff_factor=0.5,
            raise_on_status=False,
            max_rate_limit_wait=max_rate_limit_wait_seconds,
        )
        self._client_options: dict[str, Any] = dict(
            base_url=self._api_url,
            auth=github.Auth.Token(token) if token else None,
            timeout=max(1, math.ceil(timeout_seconds)),  # PyGithub takes whole seconds
            per_page=_PER_PAGE,
            retry=retry,
            pool_size=1,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
        )
        self._clients: list[github.Github] = []
        self._visibility: TimedCache[bool] = TimedCache(ttl_seconds=_VISIBILITY_TTL_SECONDS)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="github", initializer=self._open_client
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHubSource:
        """A request never outlives the whole source's read (`OI_CONTEXT_TIMEOUT_SECONDS`)."""
        if urlsplit(settings.github_api_url).scheme not in ("http", "https"):
            raise ConfigError(
                f"GITHUB_API_URL is not an http(s) URL: {settings.github_api_url!r} "
                "(GitHub Enterprise: https://<host>/api/v3)"
            )
        token = settings.github_token
        return cls(
            token=token.get_secret_value() if token else None,
            api_url=settings.github_api_url,
            timeout_seconds=min(_TIMEOUT_SECONDS, settings.oi_context_timeout_seconds),
        )

    @property
    def web_hosts(self) -> frozenset[str]:
        """Hosts whose web URLs are this GitHub: `github.com` for `api.github.com`, the host
        itself for Enterprise's `https://host/api/v3`, `host:port` when the URL has a port."""
        parts = urlsplit(self._api_url)
        host = (parts.hostname or "").removeprefix("api.")
        return frozenset({f"{host}:{parts.port}" if parts.port else host})

    async def fetch(
        self, reference: GitHubReference, *, public_only: bool = False
    ) -> list[Fetched]:
        """The items for one reference, or a `SourceError` saying what and why.

        `public_only`: a private repository is not read at all (`PrivateSourceError`), for a
        conversation it is not linked to; what is read then is marked public. Otherwise items
        are marked private, whatever the repository is: they were read on a link or a token.
        """
        what = _describe(reference)
        _refuse(what, github_reference_problem(reference))
        started = time.perf_counter()
        if public_only and await self._is_private(reference.full_name, what=what):
            raise PrivateSourceError(f"{reference.full_name} is private")
        read = functools.partial(_read, private=not public_only)
        fetched = await self._run(read, reference, what=what)
        log.info(
            "github.fetched",
            url=reference.url,
            kind=reference.kind,
            items=len(fetched),
            duration_ms=round((time.perf_counter() - started) * 1000),
        )
        return fetched

    async def check_repo(self, full_name: str) -> bool:
        """Whether `owner/repo` is private, for `/oi link github`; a `SourceError` says why it
        cannot be read."""
        _refuse(f"repository {full_name}", repository_problem(full_name))
        return await self._run(_is_private, full_name, what=f"repository {full_name}")

    async def _is_private(self, full_name: str, *, what: str) -> bool:
        """A repository's visibility, asked once a minute at most: questions about the same
        repository come in bursts, and each ask is a GET before anything else is read."""
        return await self._visibility.get(
            full_name.lower(), lambda: self._run(_is_private, full_name, what=what)
        )

    async def aclose(self) -> None:
        """Let calls in flight finish (each is bounded by the timeout), then close the clients."""
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        for client in self._clients:
            client.close()

    def _open_client(self) -> None:
        """Run once in each worker thread: that thread's own client."""
        client = github.Github(**self._client_options)
        self._clients.append(client)
        self._local.client = client

    def _in_worker(self, read: Callable[[github.Github, Any], _T], argument: Any) -> _T:
        return read(self._local.client, argument)

    async def _run(
        self, read: Callable[[github.Github, Any], _T], argument: Any, *, what: str
    ) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._in_worker, read, argument)
        except _VENDOR_ERRORS as error:
            reason = self._reason(error)
            log.warning("github.unreadable", what=what, reason=reason)
            raise SourceError(f"GitHub {what}: {reason}") from None

    def _reason(self, error: Exception) -> str:
        """Why a call failed, in words for the user; never the token, never GitHub's raw body."""
        if isinstance(error, requests.Timeout):
            return "GitHub did not answer in time"
        if isinstance(error, requests.RequestException):
            return "could not reach GitHub"
        if not isinstance(error, GithubException):
            return "GitHub's answer could not be read"
        headers = {name.lower(): str(value) for name, value in (error.headers or {}).items()}
        if _is_rate_limit(error, headers):
            return _rate_limit_reason(headers)
        if error.status == 404:
            if self._has_token:
                return "not found, or not readable with this GITHUB_TOKEN"
            return "not found, or private (GITHUB_TOKEN is not set)"
        if error.status == 401:
            return "no access: GitHub did not accept GITHUB_TOKEN"
        if error.status == 403:
            return "no access with this GITHUB_TOKEN"
        return f"GitHub answered HTTP {error.status}"


class _Retry(github.GithubRetry):
    """PyGithub's retry, where a `Retry-After` longer than `max_rate_limit_wait` fails at once.

    PyGithub 2.10 caps the wait for a primary limit's reset and its own secondary-limit pause with
    `max_rate_limit_wait`, but lets urllib3 sleep through a rate limit's `Retry-After` header.
    """

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: HTTPResponse | None = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> Retry:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if response is not None and response.status in (403, 429) and retry_after:
            wait = self.parse_retry_after(retry_after)
            if self.max_rate_limit_wait is not None and wait > self.max_rate_limit_wait:
                headers = dict(response.headers)
                raise RateLimitExceededExceedsMaxWait(response.status, None, headers, wait=wait)
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _is_rate_limit(error: GithubException, headers: dict[str, str]) -> bool:
    if isinstance(error, RateLimitExceededException) or error.status == 429:
        return True
    limited = headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers
    return error.status == 403 and limited


def _rate_limit_reason(headers: dict[str, str]) -> str:
    retry_after = headers.get("retry-after", "")
    reset = headers.get("x-ratelimit-reset", "")
    if retry_after.isdigit():
        return f"GitHub rate limit reached (try again in {retry_after} s)"
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        at = datetime.fromtimestamp(int(reset), UTC).strftime("%H:%M UTC")
        return f"GitHub rate limit reached (resets at {at})"
    return "GitHub rate limit reached"


def _refuse(what: str, problem: str | None) -> None:
    """A reference that could reach outside its repository is refused before any request."""
    if problem is not None:
        log.warning("github.refused", what=what, reason=problem)
        raise SourceError(f"GitHub {what}: not requested, {problem}")


def _describe(reference: GitHubReference) -> str:
    """The reference in a few words, to name it in a failure."""
    name = reference.full_name
    if reference.kind == "pull":
        return f"pull request {name}#{reference.number}"
    if reference.kind == "issue":
        return f"issue {name}#{reference.number}"
    if reference.kind == "commit":
        return f"commit {name}@{(reference.ref or '')[:12]}"
    if reference.kind in ("file", "tree"):
        at = f" at {reference.ref}" if reference.ref else ""
        return f"{reference.kind} {name}/{reference.path or ''}{at}"
    return f"repository {name}"


# --- what runs in a worker thread: PyGithub calls in, plain data out ---


class _Change(NamedTuple):
    """One changed file of a pull request or a commit."""

    path: str
    status: str
    additions: int
    deletions: int
    changes: int
    patch: str | None
    previous_path: str | None


def _repository(client: github.Github, full_name: str) -> Repository:
    """`/repos/{owner}/{repo}`, each name percent-encoded here: PyGithub's `get_repo` puts its
    argument into the path as it is. Later calls encode their own parts: `get_contents` quotes
    the path (segments checked by `github_reference_problem`, `/` kept between them) and sends
    the ref in the query string; `get_commit` and `get_git_tree` quote the sha whole."""
    owner, repo = full_name.split("/")
    return client.get_repo(f"{quote(owner, safe='')}/{quote(repo, safe='')}")


def _is_private(client: github.Github, full_name: str) -> bool:
    return bool(_repository(client, full_name).private)


def _read(client: github.Github, reference: GitHubReference, *, private: bool) -> list[Fetched]:
    repo = _repository(client, reference.full_name)
    return [replace(one, private=private) for one in _READERS[reference.kind](repo, reference)]


def _read_pull(repo: Repository, reference: GitHubReference) -> list[Fetched]:
    pull = repo.get_pull(reference.number)  # type: ignore[arg-type]
    state = "merged" if pull.merged else f"{pull.state}{' (draft)' if pull.draft else ''}"
    changes = [_change(f) for f in islice(pull.get_files(), _MAX_CHANGED_FILES)]
    text = "\n".join(
        [
            f"Pull request #{pull.number}: {pull.title}",
            f"State: {state}",
            f"Author: {_login(pull.user)}",
            f"Branches: {pull.base.ref} ← {pull.head.ref}",
            f"Review comments: {pull.review_comments}",
            "",
            cap_body(pull.body) or "(no description)",
            "",
            _changes_text(changes, total=pull.changed_files),
        ]
    )
    title = f"{reference.full_name}#{pull.number}: {pull.title}"
    return [_fetched(reference.url, title, text, PRIORITY_PRIMARY, pull.head.sha)]


def _read_issue(repo: Repository, reference: GitHubReference) -> list[Fetched]:
    issue = repo.get_issue(reference.number)  # type: ignore[arg-type]
    comments = _latest_comments(issue)
    skipped = issue.comments - len(comments)
    lines = [
        f"Issue #{issue.number}: {issue.title}",
        f"State: {issue.state}",
        f"Author: {_login(issue.user)}",
        f"Labels: {', '.join(label.name for label in issue.labels) or 'none'}",
        "",
        cap_body(issue.body) or "(no description)",
    ]
    if comments:
        earlier = f"; {skipped} earlier ones not shown" if skipped > 0 else ""
        lines += ["", f"Comments ({issue.comments}, oldest first{earlier}):"]
        lines += [f"\n{author} wrote:\n{body}" for author, body in comments]
    title = f"{reference.full_name}#{issue.number}: {issue.title}"
    revision = issue.updated_at.isoformat()
    return [_fetched(reference.url, title, "\n".join(lines), PRIORITY_DETAIL, revision)]


def _read_contents(repo: Repository, reference: GitHubReference) -> list[Fetched]:
    """A file (or its lines), or a folder's listing, at `ref` or the default branch."""
    found = repo.get_contents(reference.path or "", ref=reference.ref or NotSet)
    priority = PRIORITY_DETAIL if reference.kind == "file" else PRIORITY_BACKGROUND
    at = f" at {reference.ref}" if reference.ref else ""
    if isinstance(found, list):
        title = f"{reference.full_name}/{reference.path or ''}{at}"
        text = "\n".join(_entry_name(entry.name, entry.type) for entry in found)
        revision = _digest(f"{entry.path} {entry.sha}" for entry in found)
        return [_fetched(reference.url, title, text, priority, revision)]
    lines = reference.lines
    span = f", lines {lines[0]}–{lines[1]}" if lines else ""
    title = f"{reference.full_name}/{found.path}{span}{at}"
    return [_fetched(reference.url, title, _file_text(found, lines), priority, found.sha)]


def _read_commit(repo: Repository, reference: GitHubReference) -> list[Fetched]:
    commit = repo.get_commit(reference.ref or "")
    git = commit.commit  # completes the commit; its first page of files comes with it
    user = f" ({commit.author.login})" if commit.author else ""
    stats = commit.stats
    changes = [_change(f) for f in islice(commit.files, _MAX_CHANGED_FILES)]
    text = "\n".join(
        [
            f"Commit {commit.sha}",
            f"Author: {git.author.name}{user}, {git.author.date.isoformat()}",
            f"Stats: +{stats.additions} −{stats.deletions} in {len(changes)} files",
            "",
            cap_body(git.message),
            "",
            _changes_text(changes, total=len(changes)),
        ]
    )
    title = f"{reference.full_name}@{commit.sha[:7]}: {git.message.splitlines()[0]}"
    return [_fetched(reference.url, title, text, PRIORITY_DETAIL, commit.sha)]


def _read_repo(repo: Repository, reference: GitHubReference) -> list[Fetched]:
    """README, top-level entries and service topology, in at most 3 + `_MAX_MANIFESTS` calls."""
    branch = repo.default_branch
    fetched = []
    readme = _readme(repo)
    if readme is not None:
        text = cap_body(_decoded(readme) or "(not text)", _MAX_README_CHARS)
        title = f"{repo.full_name}: {readme.path}"
        fetched.append(_fetched(readme.html_url, title, text, PRIORITY_README, readme.sha))
    tree = repo.get_git_tree(branch, recursive=True)
    entries = [(entry.path, entry.type) for entry in tree.tree]
    tree_url = f"{repo.html_url}/tree/{branch}"
    top = [_entry_name(path, kind) for path, kind in entries if "/" not in path]
    about = f"{repo.full_name}: {repo.description or 'no description'} ({repo.language or '?'})"
    overview = f"{about}\nDefault branch: {branch}\n\nTop-level entries:\n" + "\n".join(top)
    title = f"{repo.full_name}: top-level files"
    fetched.append(_fetched(tree_url, title, overview, PRIORITY_BACKGROUND, tree.sha))
    topology = _topology_text(repo, branch, entries)
    if topology:
        title = f"{repo.full_name}: service topology"
        fetched.append(_fetched(tree_url, title, topology, PRIORITY_BACKGROUND, tree.sha))
    return fetched


_READERS: dict[str, Callable[[Repository, GitHubReference], list[Fetched]]] = {
    "repo": _read_repo,
    "pull": _read_pull,
    "issue": _read_issue,
    "file": _read_contents,
    "tree": _read_contents,
    "commit": _read_commit,
}


def _fetched(source: str, title: str, text: str, priority: int, revision: str) -> Fetched:
    item = ContextItem(source=source, title=title, text=text)
    return Fetched(item=item, priority=priority, revision=revision)


def _login(user: NamedUser | Organization | None) -> str:
    return user.login if user is not None else "(deleted user)"


def _change(file: File) -> _Change:
    return _Change(
        path=file.filename,
        status=file.status,
        additions=file.additions,
        deletions=file.deletions,
        changes=file.changes,
        patch=file.patch,
        previous_path=file.previous_filename,
    )


def _changes_text(changes: list[_Change], *, total: int) -> str:
    """Changed files largest first, with their patches while they fit; the others noted."""
    ordered = sorted(changes, key=lambda change: change.changes, reverse=True)
    count = f"{len(ordered)} of {total}" if total > len(ordered) else str(len(ordered))
    parts = [f"Changed files ({count}), largest first:"]
    budget = _MAX_DIFF_CHARS
    for change in ordered:
        note = _change_note(change, budget)
        if note is not None:
            parts.append(f"\n{change.path}: {note}")
            continue
        counts = f"{change.status}, +{change.additions} −{change.deletions}"
        patch = redact(change.patch or "", path=change.path).text  # a `.env` diff as a `.env`
        parts.append(f"\n{change.path} ({counts}):\n{patch}")
        budget -= len(change.patch or "")
    return "\n".join(parts)


def _change_note(change: _Change, budget: int) -> str | None:
    """Why a file's patch is not shown, or None when it is."""
    if change.patch is None and change.changes == 0:
        if change.status == "renamed":
            return f"renamed from {change.previous_path}, content unchanged"
        return "binary file, not shown"
    if change.patch is None or len(change.patch) > _MAX_PATCH_CHARS:
        return f"{change.changes:,} lines changed, patch too large to include"
    if len(change.patch) > budget:
        return f"{change.changes:,} lines changed, not included (the diff is too large)"
    return None


def _latest_comments(issue: Issue) -> list[tuple[str, str]]:
    """The newest `_MAX_COMMENTS` comments, oldest first, reading only the pages they are on."""
    total = issue.comments
    if total == 0:
        return []
    pages = issue.get_comments()
    first_page = max(total - _MAX_COMMENTS, 0) // _PER_PAGE
    comments = [
        c for page in range(first_page, math.ceil(total / _PER_PAGE)) for c in pages.get_page(page)
    ]
    return [(_login(c.user), cap_body(c.body)) for c in comments[-_MAX_COMMENTS:]]


def _file_text(file: ContentFile, lines: tuple[int, int] | None) -> str:
    if lines is None and file.size > _MAX_FILE_BYTES:
        return (
            f"{file.path}: {file.size:,} bytes, too large to include; link a line range "
            "(#L10-L80) to read part of it"
        )
    text = _decoded(file)
    if text is None:
        return f"{file.path}: binary file, not shown"
    numbered = text.splitlines()
    first, last = lines or (1, len(numbered))
    if first > len(numbered):
        return f"{file.path} has only {len(numbered)} lines"
    last = min(last, len(numbered))
    width = len(str(last))
    lines_text = "\n".join(f"{n:>{width}} | {numbered[n - 1]}" for n in range(first, last + 1))
    return cap_body(lines_text, _MAX_FILE_BYTES)


def _decoded(file: ContentFile) -> str | None:
    """A file's text, or None when it is binary or GitHub sent no content (over 1 MB)."""
    if file.encoding != "base64":
        return None
    data = file.decoded_content
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _entry_name(path: str, kind: str) -> str:
    """A listing line: folders end with "/" (git trees say "tree", contents say "dir")."""
    return f"{path}/" if kind in ("tree", "dir") else path


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def _readme(repo: Repository) -> ContentFile | None:
    try:
        return repo.get_readme()
    except UnknownObjectException:
        return None


def _topology_text(repo: Repository, branch: str, entries: list[tuple[str, str]]) -> str:
    """The manifests and telling folders near the top of the tree, each manifest capped."""
    shallow = [
        (path, kind)
        for path, kind in entries
        if path.count("/") <= _MANIFEST_DEPTH and _SKIPPED_FOLDERS.isdisjoint(path.split("/"))
    ]
    folders = [
        f"{path}/"
        for path, kind in shallow
        if kind == "tree" and path.rsplit("/", 1)[-1] in _TOPOLOGY_FOLDERS
    ]
    manifests = sorted(
        (path for path, kind in shallow if kind == "blob" and _is_manifest(path)),
        key=lambda path: (path.count("/"), path.endswith(".proto"), path),
    )
    if not folders and not manifests:
        return ""
    parts = [f"How {repo.full_name} is built and deployed ({branch}):"]
    if folders:
        parts.append(f"Folders: {', '.join(folders)}")
    parts += [
        f"\n--- {path}\n{_manifest_text(repo, path, branch)}" for path in manifests[:_MAX_MANIFESTS]
    ]
    if len(manifests) > _MAX_MANIFESTS:
        parts.append(f"\nAlso present, not read: {', '.join(manifests[_MAX_MANIFESTS:])}")
    return "\n".join(parts)


def _manifest_text(repo: Repository, path: str, branch: str) -> str:
    found = repo.get_contents(path, ref=branch)
    small = isinstance(found, ContentFile) and found.size <= _MAX_FILE_BYTES
    text = _decoded(found) if small else None  # type: ignore[arg-type]
    if not text:
        return "(binary or too large, not shown)"
    return redact(cap_body(text, _MAX_MANIFEST_CHARS), path=path).text  # YAML read as YAML


def _is_manifest(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name in _MANIFEST_NAMES or any(fnmatch.fnmatchcase(name, p) for p in _MANIFEST_PATTERNS)
