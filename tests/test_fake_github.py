"""The fake GitHub held to GitHub's published REST description, and driven by PyGithub.

Every GitHub test trusts this fake, so each body it serves is validated against the schema GitHub
documents for that route (the vendored `tests/vendor/github/rest-subset.json`), each route it
serves must be a documented one, and PyGithub itself must page through its lists and recognise
its failures: if the fake drifts from GitHub, this file fails, not a source test that quietly
passes against an API GitHub does not have.
"""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import github
import pytest
import requests
from github.GithubException import (
    BadCredentialsException,
    RateLimitExceededException,
    UnknownObjectException,
)
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.fakes.github_api import TOKEN, FakeGitHub

SPEC = json.loads((Path(__file__).parent / "vendor/github/rest-subset.json").read_text())
SPEC_URI = "urn:github:rest-subset"
HEAD = "a" * 40
COMMIT = "c0ffee" + "0" * 34


def _registry(spec: dict[str, Any]) -> Registry:
    return Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT4)
    )


def _allowing_known_quirks(spec: dict[str, Any]) -> dict[str, Any]:
    """GitHub sends `state_reason: null` on open issues; its description marks the field nullable
    but leaves null out of the enum, which an OAS 3.0 validator then rejects."""
    spec = copy.deepcopy(spec)
    spec["components"]["schemas"]["issue"]["properties"]["state_reason"]["enum"].append(None)
    return spec


REGISTRY = _registry(_allowing_known_quirks(SPEC))


def _validator(schema: str, registry: Registry = REGISTRY) -> OAS30Validator:
    ref = {"$ref": f"{SPEC_URI}#/components/schemas/{schema}"}
    return OAS30Validator(ref, registry=registry)


def _diff(index: int) -> dict[str, Any]:
    patch = f"@@ -1 +1 @@\n-old {index}\n+new {index}"
    return dict(
        filename=f"src/f{index}.py",
        status="modified",
        additions=1,
        deletions=1,
        changes=2,
        patch=patch,
    )


def _populate(fake: FakeGitHub) -> None:
    """One repository with something behind every route."""
    files = {"src/app.py": "print('hi')\n", "src/lib/util.py": "x = 1\n", "logo.png": b"\x89PNG\0"}
    fake.add_repo("acme", "payments", files=files, readme="# Payments\n")
    binary = dict(
        filename="logo.png", status="added", additions=0, deletions=0, changes=0, patch=None
    )
    fake.add_pull(
        "acme",
        "payments",
        42,
        title="Retry charges",
        files=[_diff(i) for i in range(44)] + [binary],
        head_sha=HEAD,
    )
    fake.add_issue(
        "acme", "payments", 7, title="Timeouts", comments=["first", "second"], labels=["bug"]
    )
    fake.add_issue("acme", "payments", 8, title="Done", state="closed")
    fake.add_commit("acme", "payments", COMMIT, message="Fix", files=[_diff(1)], parents=[HEAD])


def _get(fake: FakeGitHub, path: str, **headers: str) -> requests.Response:
    return requests.get(f"{fake.api_url}{path}", headers=headers, timeout=5)


@pytest.mark.parametrize(
    ("path", "schema"),
    [
        ("/repos/acme/payments", "full-repository"),
        ("/repos/acme/payments/pulls/42", "pull-request"),
        ("/repos/acme/payments/pulls/42/files?per_page=50", "diff-entry"),
        ("/repos/acme/payments/issues/7", "issue"),
        ("/repos/acme/payments/issues/8", "issue"),
        ("/repos/acme/payments/issues/7/comments", "issue-comment"),
        ("/repos/acme/payments/contents/src/app.py", "content-file"),
        ("/repos/acme/payments/contents/src?ref=main", "content-directory"),
        ("/repos/acme/payments/readme", "content-file"),
        ("/repos/acme/payments/git/trees/main?recursive=1", "git-tree"),
        ("/repos/acme/payments/git/trees/main", "git-tree"),
        (f"/repos/acme/payments/commits/{COMMIT}", "commit"),
        ("/rate_limit", "rate-limit-overview"),
    ],
)
def test_each_body_matches_githubs_schema(fake_github, path, schema):
    _populate(fake_github)
    response = _get(fake_github, path, Authorization=f"token {TOKEN}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["x-ratelimit-limit"] == "5000"
    body = response.json()
    items = body if isinstance(body, list) and schema != "content-directory" else [body]
    assert items
    for item in items:
        _validator(schema).validate(item)


def test_the_issue_state_reason_quirk_is_the_only_one_allowed(fake_github):
    _populate(fake_github)
    body = _get(fake_github, "/repos/acme/payments/issues/7").json()
    errors = _validator("issue", _registry(SPEC)).iter_errors(body)
    assert [list(error.absolute_path) for error in errors] == [["state_reason"]]


@pytest.mark.parametrize(
    ("setup", "path", "status", "message"),
    [
        (lambda fake: None, "/repos/acme/missing", 404, "Not Found"),
        (lambda fake: None, "/repos/acme/payments/pulls/9", 404, "Not Found"),
        (lambda fake: None, "/nothing/here", 404, "Not Found"),
        (lambda fake: fake.forbid("acme", "payments"), "/repos/acme/payments", 403, "Resource not"),
        (
            lambda fake: fake.rate_limit_exhausted(2_000_000_000),
            "/repos/acme/payments",
            403,
            "API rate limit exceeded",
        ),
        (
            lambda fake: fake.secondary_rate_limited(60),
            "/repos/acme/payments",
            403,
            "You have exceeded a secondary",
        ),
    ],
)
def test_errors_are_githubs_basic_error(fake_github, setup, path, status, message):
    _populate(fake_github)
    setup(fake_github)
    response = _get(fake_github, path)
    assert response.status_code == status
    body = response.json()
    _validator("basic-error").validate(body)
    assert body["message"].startswith(message)
    assert body["documentation_url"].startswith("https://docs.github.com/")
    assert body["status"] == str(status)


def test_a_spent_rate_limit_looks_like_githubs(fake_github):
    _populate(fake_github)
    fake_github.rate_limit_exhausted(2_000_000_000)
    response = _get(fake_github, "/repos/acme/payments")
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-reset"] == "2000000000"
    assert _get(fake_github, "/rate_limit").json()["resources"]["core"]["remaining"] == 0


def test_every_route_is_documented(fake_github):
    assert set(fake_github.routes) <= set(SPEC["paths"])
    for path in fake_github.routes:
        assert "get" in SPEC["paths"][path]


def test_link_headers_are_shaped_like_githubs(fake_github):
    _populate(fake_github)
    files = f"{fake_github.api_url}/repos/acme/payments/pulls/42/files"
    first = _get(fake_github, "/repos/acme/payments/pulls/42/files?per_page=20")
    assert first.headers["Link"] == (
        f'<{files}?per_page=20&page=2>; rel="next", <{files}?per_page=20&page=3>; rel="last"'
    )
    middle = _get(fake_github, "/repos/acme/payments/pulls/42/files?per_page=20&page=2")
    assert re.findall(r'rel="(\w+)"', middle.headers["Link"]) == ["prev", "next", "last", "first"]
    last = _get(fake_github, "/repos/acme/payments/pulls/42/files?per_page=20&page=3")
    assert len(last.json()) == 5
    assert last.headers["Link"] == (
        f'<{files}?per_page=20&page=2>; rel="prev", <{files}?per_page=20&page=1>; rel="first"'
    )
    assert "Link" not in _get(fake_github, "/repos/acme/payments/issues/7/comments").headers


def _pygithub(fake: FakeGitHub, **options: Any) -> github.Github:
    return github.Github(
        base_url=fake.api_url,
        auth=github.Auth.Token(TOKEN),
        seconds_between_requests=None,
        **options,
    )


def test_pygithub_pages_through_a_45_file_pull_request(fake_github):
    _populate(fake_github)
    pull = _pygithub(fake_github, per_page=30).get_repo("acme/payments").get_pull(42)
    files = list(pull.get_files())
    assert len(files) == 45
    assert files[-1].filename == "logo.png" and files[-1].patch is None
    pages = [r.query for r in fake_github.requests if r.path.endswith("/files")]
    assert pages == [{}, {"page": "2"}]
    assert pull.get_files().totalCount == 45  # from the rel="last" link of a per_page=1 request
    assert [f.filename for f in pull.get_files().reversed][:2] == ["logo.png", "src/f43.py"]


def test_pygithub_reads_every_kind_of_body(fake_github):
    _populate(fake_github)
    repo = _pygithub(fake_github).get_repo("acme/payments")
    assert repo.default_branch == "main" and repo.owner.login == "acme"
    issue = repo.get_issue(7)
    assert [label.name for label in issue.labels] == ["bug"]
    assert [(c.user.login, c.body) for c in issue.get_comments()] == [
        ("hubot", "first"),
        ("hubot", "second"),
    ]
    assert repo.get_contents("src/app.py").decoded_content == b"print('hi')\n"
    assert [(c.name, c.type) for c in repo.get_contents("src")] == [
        ("app.py", "file"),
        ("lib", "dir"),
    ]
    assert repo.get_readme().decoded_content == b"# Payments\n"
    tree = repo.get_git_tree("main", recursive=True)
    assert [(e.path, e.type) for e in tree.tree] == [
        ("README.md", "blob"),
        ("logo.png", "blob"),
        ("src", "tree"),
        ("src/app.py", "blob"),
        ("src/lib", "tree"),
        ("src/lib/util.py", "blob"),
    ]
    commit = repo.get_commit(COMMIT)
    assert commit.commit.message == "Fix" and commit.stats.total == 2
    assert [f.filename for f in commit.files] == ["src/f1.py"]


@pytest.mark.parametrize(
    ("setup", "token", "error"),
    [
        (lambda fake: None, TOKEN, UnknownObjectException),
        (lambda fake: None, "ghp_wrong", BadCredentialsException),
        (
            lambda fake: fake.rate_limit_exhausted(int(time.time()) + 3600),
            TOKEN,
            RateLimitExceededException,
        ),
        (lambda fake: fake.secondary_rate_limited(60), TOKEN, RateLimitExceededException),
    ],
)
def test_pygithub_recognises_the_failures(fake_github, setup, token, error):
    _populate(fake_github)
    setup(fake_github)
    client = github.Github(base_url=fake_github.api_url, auth=github.Auth.Token(token), retry=None)
    with pytest.raises(error):
        client.get_repo("acme/missing" if error is UnknownObjectException else "acme/payments")
