"""A local GitHub REST API, served under `/api/v3` the way GitHub Enterprise serves it.

PyGithub talks to it as to GitHub: `Github(base_url=fake.api_url)`. Tests set up repositories,
pull requests, issues and commits through small methods; the routes are the read-only ones the bot
uses (all in the vendored `tests/vendor/github/rest-subset.json`), and every body has the fields
GitHub's own description requires of it (full-repository, pull-request, diff-entry, issue,
issue-comment, content-file, content-directory, git-tree, commit, rate-limit-overview,
basic-error). Lists are paginated with `per_page`/`page` and a `Link` header shaped like
GitHub's; every response carries GitHub's `x-ratelimit-*` headers. Failures are injected the way
GitHub shows them (https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api):
a spent primary rate limit (403 or 429, `x-ratelimit-remaining: 0`), a secondary limit with
`retry-after`, a repository the token may not read (403), a bad token (401), and `hold()` for an
endpoint that does not answer until the test says so. Every request is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiohttp import web

from tests.fakes._server import RequestLog, ThreadedServer

API_PREFIX = "/api/v3"
TOKEN = "ghp_fake0123456789abcdefFAKEtoken000000"
DOCS = "https://docs.github.com/rest"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
RATE_LIMIT = 5000
TIMESTAMP = "2026-11-20T10:00:00Z"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Recorded:
    """One request: `path` is under the API root (`/repos/acme/payments/pulls/42`), decoded;
    `raw_path` is the same as it came on the wire, percent-escapes and `..` untouched."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_path: str = ""


@dataclass
class _Repo:
    owner: str
    name: str
    id: int
    default_branch: str
    refs: dict[str, dict[str, bytes]]
    private: bool = False
    forbidden: bool = False
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    pull_files: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class FakeGitHub:
    """The server and its data; `requests` holds every request received, in order."""

    def __init__(self, *, token: str = TOKEN) -> None:
        self.token = token
        self.requests: RequestLog[Recorded] = RequestLog()
        self._repos: dict[str, _Repo] = {}
        self._held: list[str] = []
        self._released = asyncio.Event()
        self._in_flight_lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._rate_limit: tuple[int, int] | None = None  # (status, reset epoch)
        self._secondary_limit: tuple[int, int] | None = None  # (status, retry-after seconds)
        app = web.Application(middlewares=[self._middleware])
        # The routes served, named as in GitHub's REST description.
        self.routes: dict[str, _Handler] = {
            "/rate_limit": self._get_rate_limit,
            "/repos/{owner}/{repo}": self._get_repo,
            "/repos/{owner}/{repo}/pulls/{pull_number}": partial(
                self._get_numbered, "pulls", "pull_number"
            ),
            "/repos/{owner}/{repo}/pulls/{pull_number}/files": partial(
                self._get_numbered, "pull_files", "pull_number"
            ),
            "/repos/{owner}/{repo}/issues/{issue_number}": partial(
                self._get_numbered, "issues", "issue_number"
            ),
            "/repos/{owner}/{repo}/issues/{issue_number}/comments": partial(
                self._get_numbered, "comments", "issue_number"
            ),
            "/repos/{owner}/{repo}/contents/{path}": self._get_contents,
            "/repos/{owner}/{repo}/readme": self._get_readme,
            "/repos/{owner}/{repo}/git/trees/{tree_sha}": self._get_tree,
            "/repos/{owner}/{repo}/commits/{ref}": self._get_commit,
        }
        for template, handler in self.routes.items():
            app.router.add_get(API_PREFIX + _pattern(template), handler)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._server = ThreadedServer(app)

    # --- lifecycle and addresses ---

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(before=self._release)

    @property
    def api_url(self) -> str:
        """What GITHUB_API_URL is set to."""
        return self._server.url + API_PREFIX

    @property
    def web_url(self) -> str:
        return self._server.url

    @property
    def web_host(self) -> str:
        return f"127.0.0.1:{self._server.port}"

    # --- data (call after start(): bodies carry the server's address) ---

    def add_repo(
        self,
        owner: str,
        repo: str,
        *,
        default_branch: str = "main",
        files: dict[str, str | bytes] | None = None,
        readme: str | None = None,
        private: bool = False,
    ) -> None:
        """A repository, public unless `private` (the token reads both, as an org's would)."""
        contents = {path: _bytes(content) for path, content in (files or {}).items()}
        if readme is not None:
            contents["README.md"] = readme.encode()
        self._repos[f"{owner}/{repo}".lower()] = _Repo(
            owner=owner,
            name=repo,
            id=_number(f"{owner}/{repo}"),
            default_branch=default_branch,
            refs={default_branch: contents},
            private=private,
        )

    def add_ref(self, owner: str, repo: str, ref: str, files: dict[str, str | bytes]) -> None:
        """Another branch, tag or commit sha of the repository, with its own files."""
        self._repo(owner, repo).refs[ref] = {path: _bytes(c) for path, c in files.items()}

    def add_pull(
        self,
        owner: str,
        repo: str,
        number: int,
        *,
        title: str,
        body: str | None = "",
        files: list[dict[str, Any]],
        head_sha: str,
        head_ref: str = "feature",
        base_ref: str = "main",
        state: str = "open",
        merged: bool = False,
        author: str = "octocat",
        review_comments: int = 0,
    ) -> None:
        """`files`: filename, status, additions, deletions, changes and `patch` (None: binary)."""
        entry = self._repo(owner, repo)
        repo_body = self._repository(entry)
        pull_url = f"{self._repo_api(entry)}/pulls/{number}"
        issue_url = f"{self._repo_api(entry)}/issues/{number}"
        html_url = f"{self._repo_web(entry)}/pull/{number}"

        def part(ref: str, sha: str) -> dict[str, Any]:
            return {
                "label": f"{entry.owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "user": self._user(entry.owner),
                "repo": repo_body,
            }

        diff_entries = [self._diff_entry(entry, head_sha, f) for f in files]
        entry.pull_files[number] = diff_entries
        entry.pulls[number] = {
            "url": pull_url,
            "id": _number(pull_url),
            "node_id": _node_id("PR", pull_url),
            "html_url": html_url,
            "diff_url": f"{html_url}.diff",
            "patch_url": f"{html_url}.patch",
            "issue_url": issue_url,
            "commits_url": f"{pull_url}/commits",
            "review_comments_url": f"{pull_url}/comments",
            "review_comment_url": f"{self._repo_api(entry)}/pulls/comments{{/number}}",
            "comments_url": f"{issue_url}/comments",
            "statuses_url": f"{self._repo_api(entry)}/statuses/{head_sha}",
            "number": number,
            "state": state,
            "locked": False,
            "title": title,
            "user": self._user(author),
            "body": body,
            "labels": [],
            "milestone": None,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "closed_at": TIMESTAMP if state == "closed" else None,
            "merged_at": TIMESTAMP if merged else None,
            "merge_commit_sha": None,
            "assignee": None,
            "head": part(head_ref, head_sha),
            "base": part(base_ref, "0" * 40),
            "_links": {
                name: {"href": href}
                for name, href in {
                    "self": pull_url,
                    "html": html_url,
                    "issue": issue_url,
                    "comments": f"{issue_url}/comments",
                    "review_comments": f"{pull_url}/comments",
                    "review_comment": f"{self._repo_api(entry)}/pulls/comments{{/number}}",
                    "commits": f"{pull_url}/commits",
                    "statuses": f"{self._repo_api(entry)}/statuses/{head_sha}",
                }.items()
            },
            "author_association": "OWNER" if author == entry.owner else "CONTRIBUTOR",
            "auto_merge": None,
            "draft": False,
            "merged": merged,
            "mergeable": None,
            "mergeable_state": "unknown",
            "merged_by": None,
            "comments": 0,
            "review_comments": review_comments,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": sum(f["additions"] for f in files),
            "deletions": sum(f["deletions"] for f in files),
            "changed_files": len(files),
        }

    def add_issue(
        self,
        owner: str,
        repo: str,
        number: int,
        *,
        title: str,
        body: str | None = "",
        comments: list[str] | None = None,
        labels: list[str] | None = None,
        state: str = "open",
        author: str = "octocat",
        comment_author: str = "hubot",
        updated_at: str = TIMESTAMP,
    ) -> None:
        entry = self._repo(owner, repo)
        url = f"{self._repo_api(entry)}/issues/{number}"
        html_url = f"{self._repo_web(entry)}/issues/{number}"
        entry.comments[number] = [
            self._comment(entry, url, html_url, index, comment_author, text)
            for index, text in enumerate(comments or [], start=1)
        ]
        entry.issues[number] = {
            "id": _number(url),
            "node_id": _node_id("I", url),
            "url": url,
            "repository_url": self._repo_api(entry),
            "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": html_url,
            "number": number,
            "state": state,
            "state_reason": "completed" if state == "closed" else None,
            "title": title,
            "body": body,
            "user": self._user(author),
            "labels": [self._label(entry, name) for name in labels or []],
            "assignee": None,
            "milestone": None,
            "locked": False,
            "comments": len(entry.comments[number]),
            "closed_at": updated_at if state == "closed" else None,
            "created_at": TIMESTAMP,
            "updated_at": updated_at,
            "author_association": "OWNER" if author == entry.owner else "CONTRIBUTOR",
        }

    def add_commit(
        self,
        owner: str,
        repo: str,
        sha: str,
        *,
        message: str,
        files: list[dict[str, Any]],
        author: str = "octocat",
        author_name: str = "The Octocat",
        parents: list[str] | None = None,
    ) -> None:
        entry = self._repo(owner, repo)
        url = f"{self._repo_api(entry)}/commits/{sha}"
        git_user = {"name": author_name, "email": f"{author}@example.com", "date": TIMESTAMP}
        tree_sha = _sha(f"tree {sha}")
        additions = sum(f["additions"] for f in files)
        deletions = sum(f["deletions"] for f in files)
        entry.commits[sha] = {
            "url": url,
            "sha": sha,
            "node_id": _node_id("C", url),
            "html_url": f"{self._repo_web(entry)}/commit/{sha}",
            "comments_url": f"{url}/comments",
            "commit": {
                "url": f"{self._repo_api(entry)}/git/commits/{sha}",
                "author": git_user,
                "committer": git_user,
                "message": message,
                "comment_count": 0,
                "tree": {"sha": tree_sha, "url": f"{self._repo_api(entry)}/git/trees/{tree_sha}"},
            },
            "author": self._user(author),
            "committer": self._user(author),
            "parents": [
                {
                    "sha": parent,
                    "url": f"{self._repo_api(entry)}/commits/{parent}",
                    "html_url": f"{self._repo_web(entry)}/commit/{parent}",
                }
                for parent in parents or []
            ],
            "stats": {
                "additions": additions,
                "deletions": deletions,
                "total": additions + deletions,
            },
            "files": [self._diff_entry(entry, sha, f) for f in files],
        }

    # --- failure injection ---

    def rate_limit_exhausted(self, reset_epoch: int, *, status: int = 403) -> None:
        """Every request but `/rate_limit` fails: the primary limit is spent until `reset_epoch`."""
        self._rate_limit = (status, reset_epoch)

    def secondary_rate_limited(self, retry_after: int, *, status: int = 403) -> None:
        self._secondary_limit = (status, retry_after)

    def forbid(self, owner: str, repo: str) -> None:
        """The token may see that the repository exists but not read it (403, no rate limit)."""
        self._repo(owner, repo).forbidden = True

    def hold(self, path_prefix: str) -> None:
        """Requests whose API path starts with `path_prefix` wait until `release()` or `stop()`."""
        self._held.append(path_prefix)

    def release(self) -> None:
        self._server.call(self._release)

    async def _release(self) -> None:
        self._released.set()

    # --- the HTTP side ---

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        path = request.path.removeprefix(API_PREFIX)
        self.requests.append(
            Recorded(
                request.method,
                path,
                dict(request.query),
                dict(request.headers),
                raw_path=request.raw_path.split("?", 1)[0].removeprefix(API_PREFIX),
            )
        )
        with self._in_flight_lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if any(path.startswith(prefix) for prefix in self._held):
                await self._released.wait()
            response = self._refusal(request, path) or await handler(request)
        except _Refused as refused:
            response = refused.response
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
        response.headers.update(self._rate_headers())
        return response

    def _refusal(self, request: web.Request, path: str) -> web.Response | None:
        """GitHub's answer when it will not serve this request at all, else None."""
        authorization = request.headers.get("Authorization")
        if authorization is not None and authorization not in (
            f"token {self.token}",
            f"Bearer {self.token}",
        ):
            return _error(401, "Bad credentials")
        if path == "/rate_limit":
            return None
        if self._rate_limit is not None:
            status, _ = self._rate_limit
            who = "user ID 1" if authorization else request.remote
            return _error(status, f"API rate limit exceeded for {who}.", RATE_LIMIT_DOCS)
        if self._secondary_limit is not None:
            status, retry_after = self._secondary_limit
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                "try again."
            )
            response = _error(status, message, RATE_LIMIT_DOCS)
            response.headers["retry-after"] = str(retry_after)
            return response
        return None

    def _rate_headers(self) -> dict[str, str]:
        remaining, reset = self._remaining_and_reset()
        return {
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-used": str(RATE_LIMIT - remaining),
            "x-ratelimit-resource": "core",
            "x-github-api-version-selected": "2022-11-28",
        }

    def _remaining_and_reset(self) -> tuple[int, int]:
        if self._rate_limit is not None:
            return 0, self._rate_limit[1]
        return RATE_LIMIT - len(self.requests), int(time.time()) + 3600

    async def _not_found(self, request: web.Request) -> web.Response:
        return _error(404, "Not Found")

    async def _get_rate_limit(self, request: web.Request) -> web.Response:
        remaining, reset = self._remaining_and_reset()
        used = RATE_LIMIT - remaining
        core = {"limit": RATE_LIMIT, "remaining": remaining, "reset": reset, "used": used}
        search = {"limit": 30, "remaining": 30, "reset": reset, "used": 0}
        return _json({"resources": {"core": core, "search": search}, "rate": core})

    async def _get_repo(self, request: web.Request) -> web.Response:
        entry = self._readable(request)
        return _json(self._repository(entry))

    async def _get_numbered(self, table: str, parameter: str, request: web.Request) -> web.Response:
        """A pull request or an issue (an object), or its files or comments (a paginated list)."""
        entry = self._readable(request)
        found = _found(getattr(entry, table), int(request.match_info[parameter]))
        return _paginated(request, found) if isinstance(found, list) else _json(found)

    async def _get_contents(self, request: web.Request) -> web.Response:
        entry = self._readable(request)
        ref = request.query.get("ref", entry.default_branch)
        files = self._files_at(entry, ref)
        path = request.match_info["path"].strip("/")
        if path in files:
            return _json(self._content_file(entry, ref, path, files[path]))
        listing = _children(files, path)
        if not listing:
            raise _Refused(404)
        return _json([self._content_entry(entry, ref, p, kind, files) for p, kind in listing])

    async def _get_readme(self, request: web.Request) -> web.Response:
        entry = self._readable(request)
        ref = request.query.get("ref", entry.default_branch)
        files = self._files_at(entry, ref)
        readme = next((p for p in sorted(files) if p.lower().startswith("readme")), None)
        if readme is None:
            raise _Refused(404)
        return _json(self._content_file(entry, ref, readme, files[readme]))

    async def _get_tree(self, request: web.Request) -> web.Response:
        entry = self._readable(request)
        sha = request.match_info["tree_sha"]
        ref = next((r for r in entry.refs if sha in (r, _tree_sha(entry, r, ""))), None)
        if ref is None:
            raise _Refused(404)
        files = entry.refs[ref]
        recursive = "recursive" in request.query
        paths = _all_paths(files) if recursive else _children(files, "")
        tree = [self._tree_entry(entry, ref, path, kind, files) for path, kind in paths]
        url = f"{self._repo_api(entry)}/git/trees/{_tree_sha(entry, ref, '')}"
        return _json(
            {"sha": _tree_sha(entry, ref, ""), "url": url, "tree": tree, "truncated": False}
        )

    async def _get_commit(self, request: web.Request) -> web.Response:
        entry = self._readable(request)
        ref = request.match_info["ref"]
        sha = next(
            (s for s in entry.commits if s == ref or (len(ref) >= 7 and s.startswith(ref))), None
        )
        if sha is None:
            raise _Refused(422, f"No commit found for SHA: {ref}")
        return _json(entry.commits[sha])

    # --- helpers ---

    def _repo(self, owner: str, repo: str) -> _Repo:
        return self._repos[f"{owner}/{repo}".lower()]

    def _readable(self, request: web.Request) -> _Repo:
        """The repository of the route, or GitHub's 404 / 403 when it may not be read."""
        entry = self._repos.get(
            f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        )
        if entry is None:
            raise _Refused(404)
        if entry.forbidden:
            raise _Refused(403, "Resource not accessible by personal access token")
        return entry

    def _files_at(self, entry: _Repo, ref: str) -> dict[str, bytes]:
        if ref not in entry.refs:
            raise _Refused(404, f"No commit found for the ref {ref}")
        return entry.refs[ref]

    def _repo_api(self, entry: _Repo) -> str:
        return f"{self.api_url}/repos/{entry.full_name}"

    def _repo_web(self, entry: _Repo) -> str:
        return f"{self.web_url}/{entry.full_name}"

    def _user(self, login: str) -> dict[str, Any]:
        url = f"{self.api_url}/users/{login}"
        return {
            "login": login,
            "id": _number(login),
            "node_id": _node_id("U", login),
            "avatar_url": f"{self.web_url}/avatars/u/{_number(login)}?v=4",
            "gravatar_id": "",
            "url": url,
            "html_url": f"{self.web_url}/{login}",
            "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events",
            "type": "User",
            "site_admin": False,
        }

    def _repository(self, entry: _Repo) -> dict[str, Any]:
        """A full-repository body (also a valid `repository`, as in a pull request's head)."""
        api, web_url = self._repo_api(entry), self._repo_web(entry)
        host = self.web_host
        return {
            "id": entry.id,
            "node_id": _node_id("R", entry.full_name),
            "name": entry.name,
            "full_name": entry.full_name,
            "private": entry.private,
            "visibility": "private" if entry.private else "public",
            "owner": self._user(entry.owner),
            "html_url": web_url,
            "description": f"The {entry.name} service.",
            "fork": False,
            "url": api,
            **{f"{name}_url": f"{api}{suffix}" for name, suffix in _REPO_URLS.items()},
            "git_url": f"git://{host}/{entry.full_name}.git",
            "ssh_url": f"git@{host}:{entry.full_name}.git",
            "clone_url": f"{web_url}.git",
            "svn_url": web_url,
            "mirror_url": None,
            "homepage": None,
            "language": "Python",
            "size": sum(len(c) for c in entry.refs[entry.default_branch].values()) // 1024,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "forks_count": 0,
            "forks": 0,
            "open_issues_count": len(entry.issues),
            "open_issues": len(entry.issues),
            "default_branch": entry.default_branch,
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "license": None,
            "pushed_at": TIMESTAMP,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "network_count": 0,
            "subscribers_count": 0,
        }

    def _label(self, entry: _Repo, name: str) -> dict[str, Any]:
        url = f"{self._repo_api(entry)}/labels/{name}"
        return {
            "id": _number(url),
            "node_id": _node_id("LA", url),
            "url": url,
            "name": name,
            "description": None,
            "color": "d73a4a",
            "default": False,
        }

    def _comment(
        self, entry: _Repo, issue_url: str, issue_html: str, index: int, author: str, text: str
    ) -> dict[str, Any]:
        comment_id = _number(f"{issue_url}#{index}")
        return {
            "id": comment_id,
            "node_id": _node_id("IC", f"{issue_url}#{index}"),
            "url": f"{self._repo_api(entry)}/issues/comments/{comment_id}",
            "html_url": f"{issue_html}#issuecomment-{comment_id}",
            "issue_url": issue_url,
            "body": text,
            "user": self._user(author),
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "author_association": "CONTRIBUTOR",
        }

    def _diff_entry(self, entry: _Repo, commit_sha: str, file: dict[str, Any]) -> dict[str, Any]:
        name = file["filename"]
        body = {
            "sha": _sha(f"{commit_sha}:{name}"),
            "filename": name,
            "status": file["status"],
            "additions": file["additions"],
            "deletions": file["deletions"],
            "changes": file["changes"],
            "blob_url": f"{self._repo_web(entry)}/blob/{commit_sha}/{name}",
            "raw_url": f"{self._repo_web(entry)}/raw/{commit_sha}/{name}",
            "contents_url": f"{self._repo_api(entry)}/contents/{name}?ref={commit_sha}",
        }
        if file.get("patch") is not None:
            body["patch"] = file["patch"]
        if "previous_filename" in file:
            body["previous_filename"] = file["previous_filename"]
        return body

    def _content_entry(
        self, entry: _Repo, ref: str, path: str, kind: str, files: dict[str, bytes]
    ) -> dict[str, Any]:
        """One item of a content-directory; a file's fields without its content."""
        is_file = kind == "file"
        sha = _blob_sha(files[path]) if is_file else _tree_sha(entry, ref, path)
        url = f"{self._repo_api(entry)}/contents/{path}?ref={ref}"
        html = f"{self._repo_web(entry)}/{'blob' if is_file else 'tree'}/{ref}/{path}"
        git = f"{self._repo_api(entry)}/git/{'blobs' if is_file else 'trees'}/{sha}"
        download = f"{self.web_url}/raw/{entry.full_name}/{ref}/{path}" if is_file else None
        return {
            "type": kind,
            "size": len(files[path]) if is_file else 0,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": url,
            "git_url": git,
            "html_url": html,
            "download_url": download,
            "_links": {"self": url, "git": git, "html": html},
        }

    def _content_file(self, entry: _Repo, ref: str, path: str, content: bytes) -> dict[str, Any]:
        encoded = base64.b64encode(content).decode()
        lines = [encoded[i : i + 60] for i in range(0, len(encoded), 60)]
        return {
            **self._content_entry(entry, ref, path, "file", {path: content}),
            "content": "".join(f"{line}\n" for line in lines),
            "encoding": "base64",
        }

    def _tree_entry(
        self, entry: _Repo, ref: str, path: str, kind: str, files: dict[str, bytes]
    ) -> dict[str, Any]:
        if kind == "file":
            sha = _blob_sha(files[path])
            url = f"{self._repo_api(entry)}/git/blobs/{sha}"
            return {
                "path": path,
                "mode": "100644",
                "type": "blob",
                "sha": sha,
                "size": len(files[path]),
                "url": url,
            }
        sha = _tree_sha(entry, ref, path)
        url = f"{self._repo_api(entry)}/git/trees/{sha}"
        return {"path": path, "mode": "040000", "type": "tree", "sha": sha, "url": url}


_REPO_URLS = {
    "forks": "/forks",
    "keys": "/keys{/key_id}",
    "collaborators": "/collaborators{/collaborator}",
    "teams": "/teams",
    "hooks": "/hooks",
    "issue_events": "/issues/events{/number}",
    "events": "/events",
    "assignees": "/assignees{/user}",
    "branches": "/branches{/branch}",
    "tags": "/tags",
    "blobs": "/git/blobs{/sha}",
    "git_tags": "/git/tags{/sha}",
    "git_refs": "/git/refs{/sha}",
    "trees": "/git/trees{/sha}",
    "statuses": "/statuses/{sha}",
    "languages": "/languages",
    "stargazers": "/stargazers",
    "contributors": "/contributors",
    "subscribers": "/subscribers",
    "subscription": "/subscription",
    "commits": "/commits{/sha}",
    "git_commits": "/git/commits{/sha}",
    "comments": "/comments{/number}",
    "issue_comment": "/issues/comments{/number}",
    "contents": "/contents/{+path}",
    "compare": "/compare/{base}...{head}",
    "merges": "/merges",
    "archive": "/{archive_format}{/ref}",
    "downloads": "/downloads",
    "issues": "/issues{/number}",
    "pulls": "/pulls{/number}",
    "milestones": "/milestones{/number}",
    "notifications": "/notifications{?since,all,participating}",
    "labels": "/labels{/name}",
    "releases": "/releases{/id}",
    "deployments": "/deployments",
}


# Route parameters that may hold slashes, and numbers, in aiohttp's pattern syntax.
_PARAMETERS = {
    "{path}": "{path:.*}",
    "{tree_sha}": "{tree_sha:.+}",
    "{ref}": "{ref:.+}",
    "{pull_number}": "{pull_number:\\d+}",
    "{issue_number}": "{issue_number:\\d+}",
}


def _pattern(template: str) -> str:
    for name, pattern in _PARAMETERS.items():
        template = template.replace(name, pattern)
    return template


def _paginated(request: web.Request, items: list[dict[str, Any]]) -> web.Response:
    """One page of `items`, with a `Link` header ordered and shaped as GitHub sends it."""
    per_page = min(max(_int_query(request, "per_page", 30), 1), 100)
    page = max(_int_query(request, "page", 1), 1)
    last = max(math.ceil(len(items) / per_page), 1)
    rels = []
    if page > 1:
        rels.append(("prev", page - 1))
    if page < last:
        rels += [("next", page + 1), ("last", last)]
    if page > 1:
        rels.append(("first", 1))
    response = _json(items[(page - 1) * per_page : page * per_page])
    if rels:
        links = [f'<{request.url.update_query(page=str(n))}>; rel="{rel}"' for rel, n in rels]
        response.headers["Link"] = ", ".join(links)
    return response


def _int_query(request: web.Request, name: str, default: int) -> int:
    value = request.query.get(name, "")
    return int(value) if value.isdigit() else default


def _children(files: dict[str, bytes], directory: str) -> list[tuple[str, str]]:
    """The (path, "file" | "dir") entries directly inside `directory` ("" for the root)."""
    prefix = f"{directory}/" if directory else ""
    entries: dict[str, str] = {}
    for path in files:
        if path.startswith(prefix):
            head, _, rest = path[len(prefix) :].partition("/")
            entries[prefix + head] = "dir" if rest else "file"
    return sorted(entries.items())


def _all_paths(files: dict[str, bytes]) -> list[tuple[str, str]]:
    """Every file and directory, as a recursive git tree lists them."""
    entries = {path: "file" for path in files}
    for path in files:
        parts = path.split("/")
        entries.update({"/".join(parts[:i]): "dir" for i in range(1, len(parts))})
    return sorted(entries.items())


def _found(table: dict[Any, Any], key: Any) -> Any:
    if key not in table:
        raise _Refused(404)
    return table[key]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, content_type="application/json")


def _error(status: int, message: str, docs: str = DOCS) -> web.Response:
    """GitHub's modern basic-error body."""
    return _json({"message": message, "documentation_url": docs, "status": str(status)}, status)


class _Refused(Exception):
    """Raised by a handler to answer with GitHub's error body instead."""

    def __init__(self, status: int, message: str = "Not Found") -> None:
        super().__init__(message)
        self.response = _error(status, message)


def _bytes(content: str | bytes) -> bytes:
    return content.encode() if isinstance(content, str) else content


def _number(text: str) -> int:
    return zlib.crc32(text.encode()) % 1_000_000_000 + 1


def _node_id(kind: str, text: str) -> str:
    return f"{kind}_{base64.b64encode(text.encode()).decode()[:16]}"


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _blob_sha(content: bytes) -> str:
    """The git blob id, as GitHub reports it."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _tree_sha(entry: _Repo, ref: str, path: str) -> str:
    return _sha(f"tree {entry.full_name}@{ref}:{path}")


RETRY_PATCH = (
    "@@ -1,3 +1,5 @@\n def charge(request):\n+    for attempt in range(3):\n+        retry()"
)


def add_payments_sample(
    fake: FakeGitHub, *, files: dict[str, str | bytes], readme: str = "# payments\nCharges cards."
) -> None:
    """acme/payments with pull request #42, which adds retries to charging (`RETRY_PATCH`)."""
    fake.add_repo("acme", "payments", files=files, readme=readme)
    fake.add_pull(
        "acme",
        "payments",
        42,
        title="Retry charges on timeout",
        body="Adds retries.",
        files=[
            {
                "filename": "payments/charge.py",
                "status": "modified",
                "additions": 2,
                "deletions": 0,
                "changes": 2,
                "patch": RETRY_PATCH,
            }
        ],
        head_sha="a" * 40,
    )
