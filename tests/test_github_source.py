"""The GitHub source over real HTTP against the local GitHub: what each reference reads, and how
each failure becomes a short, honest `SourceError` quickly."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.config import ConfigError, Settings
from bot.context.github import GitHubSource
from bot.context.models import (
    PRIORITY_BACKGROUND,
    PRIORITY_DETAIL,
    PRIORITY_PRIMARY,
    PRIORITY_README,
    GitHubReference,
    SourceError,
)
from tests.fakes.github_api import TIMESTAMP, TOKEN, FakeGitHub, add_payments_sample

HEAD = "a1" * 20
COMMIT = "c0ffee" * 6 + "abcd"


def _source(fake: FakeGitHub, **overrides: Any) -> GitHubSource:
    options: dict[str, Any] = dict(token=TOKEN, api_url=fake.api_url, timeout_seconds=5)
    options.update(overrides)
    return GitHubSource(**options)


@pytest.fixture
async def source(fake_github: FakeGitHub) -> AsyncIterator[GitHubSource]:
    opened = _source(fake_github)
    yield opened
    await opened.aclose()


def _ref(fake: FakeGitHub, kind: str, **fields: Any) -> GitHubReference:
    url = f"{fake.web_url}/acme/payments/{kind}"
    return GitHubReference(kind=kind, owner="acme", repo="payments", url=url, **fields)  # type: ignore[arg-type]


def _change(path: str, changes: int, patch: str | None, status: str = "modified") -> dict[str, Any]:
    additions = changes // 2
    return dict(
        filename=path,
        status=status,
        additions=additions,
        deletions=changes - additions,
        changes=changes,
        patch=patch,
    )


def _blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


async def test_pull_request_diff_largest_first_with_binary_and_huge_files_noted(
    fake_github, source
):
    fake_github.add_repo("acme", "payments")
    small = [_change(f"tests/t{i}.py", 2, f"@@ -1 +1 @@\n+t{i}") for i in range(101)]
    files = [
        _change("payments/retry.py", 40, "@@ -1,3 +1,40 @@\n+def retry(): ..."),
        _change("assets/logo.png", 0, None, status="added"),
        _change("fixtures/big.json", 1234, "+{}\n" * 7000),
        _change("vendor/lib.min.js", 900, None),
        _change("payments/old.py", 0, None, status="renamed") | {"previous_filename": "old.py"},
        *small,
    ]
    fake_github.add_pull(
        "acme",
        "payments",
        42,
        title="Retry charges",
        body="Retries POST /charges.",
        files=files,
        head_sha=HEAD,
        head_ref="retries",
        author="alice",
        review_comments=3,
    )
    [fetched] = await source.fetch(_ref(fake_github, "pull", number=42))
    assert fetched.priority == PRIORITY_PRIMARY
    assert fetched.revision == HEAD
    assert fetched.item.source == f"{fake_github.web_url}/acme/payments/pull"
    assert fetched.item.title == "acme/payments#42: Retry charges"
    text = fetched.item.text
    for line in ("State: open", "Author: alice", "Branches: main ← retries", "Review comments: 3"):
        assert line in text
    assert "Retries POST /charges." in text
    assert "Changed files (106), largest first:" in text
    assert "fixtures/big.json: 1,234 lines changed, patch too large to include" in text
    assert "vendor/lib.min.js: 900 lines changed, patch too large to include" in text
    assert "assets/logo.png: binary file, not shown" in text
    assert "payments/old.py: renamed from old.py, content unchanged" in text
    assert "payments/retry.py (modified, +20 −20):\n@@ -1,3 +1,40 @@" in text
    assert "+{}" not in text
    assert (
        text.index("fixtures/big.json")
        < text.index("payments/retry.py")
        < text.index("tests/t0.py")
    )
    assert "tests/t100.py (modified, +1 −1):\n@@ -1 +1 @@\n+t100" in text  # on the second page
    pages = [r.query for r in fake_github.requests if r.path.endswith("/files")]
    assert pages == [{"per_page": "100"}, {"per_page": "100", "page": "2"}]


async def test_pull_request_diffs_stop_at_the_size_limit(fake_github, source):
    fake_github.add_repo("acme", "payments")
    files = [_change(f"src/m{i}.py", 100 - i, "+" + "x" * 19_000) for i in range(9)]
    fake_github.add_pull("acme", "payments", 5, title="Big", files=files, head_sha=HEAD)
    [fetched] = await source.fetch(_ref(fake_github, "pull", number=5))
    text = fetched.item.text
    assert "src/m6.py (modified" in text  # seven patches of 19,001 characters fit in 150,000
    assert "src/m7.py: 93 lines changed, not included (the diff is too large)" in text


async def test_issue_with_its_latest_comments_reading_only_their_page(fake_github, source):
    fake_github.add_repo("acme", "payments")
    fake_github.add_issue(
        "acme",
        "payments",
        7,
        title="Charges time out",
        body="Under load.",
        labels=["bug", "payments"],
        comments=[f"comment {i}" for i in range(130)],
        author="bob",
        comment_author="carol",
        updated_at="2026-11-21T09:30:00Z",
    )
    [fetched] = await source.fetch(_ref(fake_github, "issue", number=7))
    assert fetched.priority == PRIORITY_DETAIL
    assert fetched.revision == "2026-11-21T09:30:00+00:00"
    assert fetched.item.title == "acme/payments#7: Charges time out"
    text = fetched.item.text
    for line in ("State: open", "Author: bob", "Labels: bug, payments", "Under load."):
        assert line in text
    assert "Comments (130, oldest first; 110 earlier ones not shown):" in text
    assert "comment 109\n" not in text
    assert "carol wrote:\ncomment 110" in text
    assert text.endswith("carol wrote:\ncomment 129")
    assert text.index("comment 110") < text.index("comment 129")
    pages = [r.query for r in fake_github.requests if r.path.endswith("/comments")]
    assert pages == [{"page": "2", "per_page": "100"}]


async def test_issue_without_comments_reads_no_comments(fake_github, source):
    fake_github.add_repo("acme", "payments")
    fake_github.add_issue("acme", "payments", 8, title="Quiet", body=None)
    [fetched] = await source.fetch(_ref(fake_github, "issue", number=8))
    assert "Labels: none\n\n(no description)" in fetched.item.text
    assert "Comments" not in fetched.item.text
    assert [r.path for r in fake_github.requests] == ["/repos/acme/payments/issues/8"]


async def test_file_lines_at_a_ref_with_line_numbers(fake_github, source):
    lines = "\n".join(f"line {n}" for n in range(1, 21)) + "\n"
    fake_github.add_repo("acme", "payments", files={"src/app.py": "old\n"})
    fake_github.add_ref("acme", "payments", "v2", {"src/app.py": lines})
    reference = _ref(fake_github, "file", path="src/app.py", ref="v2", lines=(9, 11))
    [fetched] = await source.fetch(reference)
    assert fetched.priority == PRIORITY_DETAIL
    assert fetched.revision == _blob_sha(lines.encode())
    assert fetched.item.title == "acme/payments/src/app.py, lines 9–11 at v2"
    assert fetched.item.text == " 9 | line 9\n10 | line 10\n11 | line 11"
    assert fake_github.requests[-1].query == {"ref": "v2"}


async def test_whole_file_on_the_default_branch(fake_github, source):
    fake_github.add_repo("acme", "payments", files={"src/app.py": "a = 1\nb = 2\n"})
    [fetched] = await source.fetch(_ref(fake_github, "file", path="src/app.py"))
    assert fetched.item.text == "1 | a = 1\n2 | b = 2"
    assert fake_github.requests[-1].query == {}


@pytest.mark.parametrize(
    ("content", "lines", "text"),
    [
        (b"\x89PNG\r\n\x1a\n\0\0", None, "logo.png: binary file, not shown"),
        (
            b"x\n" * 150_000,
            None,
            "logo.png: 300,000 bytes, too large to include; link a line range",
        ),
        (b"x\n" * 150_000, (2, 3), "2 | x\n3 | x"),
        (b"x\n" * 3, (5, 9), "logo.png has only 3 lines"),
    ],
)
async def test_files_that_are_not_shown_whole(fake_github, source, content, lines, text):
    fake_github.add_repo("acme", "payments", files={"logo.png": content})
    [fetched] = await source.fetch(_ref(fake_github, "file", path="logo.png", lines=lines))
    assert fetched.item.text.startswith(text)


async def test_a_folder_is_listed(fake_github, source):
    files = {"src/app.py": "", "src/lib/util.py": "", "README.md": ""}
    fake_github.add_repo("acme", "payments", files=files)
    [as_file] = await source.fetch(_ref(fake_github, "file", path="src"))
    [as_tree] = await source.fetch(_ref(fake_github, "tree", path="src", ref="main"))
    assert as_file.item.text == as_tree.item.text == "app.py\nlib/"
    assert as_file.priority == PRIORITY_DETAIL
    assert as_tree.priority == PRIORITY_BACKGROUND
    assert as_tree.item.title == "acme/payments/src at main"
    assert as_tree.revision == as_file.revision
    [root] = await source.fetch(_ref(fake_github, "tree"))
    assert root.item.text == "README.md\nsrc/"


async def test_commit_message_stats_and_patches(fake_github, source):
    fake_github.add_repo("acme", "payments")
    files = [_change("src/retry.py", 12, "@@ -1 +1,12 @@\n+retry"), _change("logo.png", 0, None)]
    fake_github.add_commit(
        "acme",
        "payments",
        COMMIT,
        message="Retry on timeout\n\nWith an idempotency key.",
        files=files,
        author="dana",
        author_name="Dana Scully",
    )
    [fetched] = await source.fetch(_ref(fake_github, "commit", ref=COMMIT))
    assert fetched.priority == PRIORITY_DETAIL
    assert fetched.revision == COMMIT
    assert fetched.item.title == f"acme/payments@{COMMIT[:7]}: Retry on timeout"
    text = fetched.item.text
    assert f"Author: Dana Scully (dana), {datetime.fromisoformat(TIMESTAMP).isoformat()}" in text
    assert "Stats: +6 −6 in 2 files" in text
    assert "Retry on timeout\n\nWith an idempotency key." in text
    assert "src/retry.py (modified, +6 −6):\n@@ -1 +1,12 @@\n+retry" in text
    assert "logo.png: binary file, not shown" in text
    assert len(fake_github.requests) == 1


async def test_repository_overview_readme_tree_and_topology(fake_github, source):
    files = {
        "pyproject.toml": "[project]\nname = 'payments'\n",
        "docker-compose.yml": "services:\n  api: {}\n  db: {}\n",
        "Dockerfile": "FROM python:3.12\n" + "RUN true\n" * 2000,
        "api/openapi.yaml": "openapi: 3.0.3\n",
        "services/billing/package.json": '{"name": "billing"}',
        "services/billing/go.mod": "module billing\n",
        "proto/charges.proto": 'syntax = "proto3";\n',
        "proto/refunds.proto": 'syntax = "proto3";\n',
        "proto/v1/ledger.proto": 'syntax = "proto3";\n',
        "db/migrations/0001_init.sql": "create table charges ();\n",
        "node_modules/left-pad/package.json": "{}",
        "a/b/c/deep/go.mod": "module deep\n",
        "src/payments/app.py": "print('hi')\n",
    }
    fake_github.add_repo("acme", "payments", files=files, readme="# Payments\n\nCharges cards.\n")
    fetched = await source.fetch(_ref(fake_github, "repo"))
    readme, overview, topology = fetched
    tree_url = f"{fake_github.web_url}/acme/payments/tree/main"

    assert readme.priority == PRIORITY_README
    assert readme.item.text == "# Payments\n\nCharges cards.\n"
    assert readme.item.source == f"{fake_github.web_url}/acme/payments/blob/main/README.md"
    assert readme.revision == _blob_sha(b"# Payments\n\nCharges cards.\n")

    assert overview.priority == PRIORITY_BACKGROUND
    assert overview.item.source == tree_url
    assert overview.item.text.endswith(
        "Top-level entries:\nDockerfile\nREADME.md\na/\napi/\ndb/\ndocker-compose.yml\n"
        "node_modules/\nproto/\npyproject.toml\nservices/\nsrc/"
    )
    assert "Default branch: main" in overview.item.text

    assert topology.priority == PRIORITY_BACKGROUND
    assert topology.item.title == "acme/payments: service topology"
    assert topology.revision == overview.revision
    text = topology.item.text
    assert "Folders: db/migrations/, proto/, services/" in text
    read = [line.removeprefix("--- ") for line in text.splitlines() if line.startswith("--- ")]
    assert read == [
        "Dockerfile",
        "docker-compose.yml",
        "pyproject.toml",
        "api/openapi.yaml",
        "proto/charges.proto",
        "proto/refunds.proto",
        "services/billing/go.mod",
        "services/billing/package.json",
    ]
    assert "services:\n  api: {}\n  db: {}" in text
    assert "… (cut here: 18,017 characters in all)" in text
    assert "Also present, not read: proto/v1/ledger.proto" in text
    assert "left-pad" not in text and "deep" not in text
    assert len(fake_github.requests) == 3 + 8


async def test_repository_without_readme_or_manifests(fake_github, source):
    fake_github.add_repo("acme", "payments", files={"src/app.py": ""})
    [overview] = await source.fetch(_ref(fake_github, "repo"))
    assert overview.item.title == "acme/payments: top-level files"


@pytest.mark.parametrize(
    ("setup", "token", "reference", "message"),
    [
        (
            None,
            TOKEN,
            {"kind": "pull", "number": 9},
            "GitHub pull request acme/payments#9: "
            "not found, or not readable with this GITHUB_TOKEN",
        ),
        (
            None,
            None,
            {"kind": "issue", "number": 9},
            "GitHub issue acme/payments#9: not found, or private (GITHUB_TOKEN is not set)",
        ),
        (
            None,
            TOKEN,
            {"kind": "file", "path": "nope.py", "ref": "main"},
            "GitHub file acme/payments/nope.py at main: "
            "not found, or not readable with this GITHUB_TOKEN",
        ),
        (
            lambda fake: fake.forbid("acme", "payments"),
            TOKEN,
            {"kind": "repo"},
            "GitHub repository acme/payments: no access with this GITHUB_TOKEN",
        ),
        (
            None,
            "ghp_revoked0123456789",
            {"kind": "commit", "ref": COMMIT},
            f"GitHub commit acme/payments@{COMMIT[:12]}: "
            "no access: GitHub did not accept GITHUB_TOKEN",
        ),
        (
            lambda fake: fake.secondary_rate_limited(60),
            TOKEN,
            {"kind": "repo"},
            "GitHub repository acme/payments: GitHub rate limit reached (try again in 60 s)",
        ),
        (
            lambda fake: fake.secondary_rate_limited(60, status=429),
            TOKEN,
            {"kind": "repo"},
            "GitHub repository acme/payments: GitHub rate limit reached (try again in 60 s)",
        ),
    ],
)
async def test_failures_say_what_and_why(fake_github, setup, token, reference, message):
    fake_github.add_repo("acme", "payments")
    if setup:
        setup(fake_github)
    source = _source(fake_github, token=token)
    try:
        with pytest.raises(SourceError) as raised:
            await source.fetch(_ref(fake_github, **reference))
    finally:
        await source.aclose()
    assert str(raised.value) == message
    assert len(fake_github.requests) == 1  # no retry of what a retry cannot fix


@pytest.mark.parametrize("status", [403, 429])
async def test_a_spent_rate_limit_fails_at_once_with_its_reset_time(fake_github, source, status):
    fake_github.add_repo("acme", "payments")
    reset = int(time.time()) + 3600
    fake_github.rate_limit_exhausted(reset, status=status)
    started = time.perf_counter()
    with pytest.raises(SourceError) as raised:
        await source.fetch(_ref(fake_github, "pull", number=1))
    assert time.perf_counter() - started < 2
    at = datetime.fromtimestamp(reset, UTC).strftime("%H:%M UTC")
    assert str(raised.value).endswith(f"GitHub rate limit reached (resets at {at})")
    assert len(fake_github.requests) == 1


async def test_a_slow_github_is_a_timeout(fake_github):
    fake_github.add_repo("acme", "payments")
    fake_github.hold("/repos/acme/payments")
    source = _source(fake_github, timeout_seconds=0.2)  # PyGithub rounds it up to a second
    started = time.perf_counter()
    try:
        with pytest.raises(SourceError) as raised:
            await source.fetch(_ref(fake_github, "repo"))
    finally:
        await source.aclose()
    assert time.perf_counter() - started < 3
    assert str(raised.value) == "GitHub repository acme/payments: GitHub did not answer in time"
    assert len(fake_github.requests) == 1


async def test_an_unreachable_github(fake_github):
    source = _source(fake_github, api_url="http://127.0.0.1:9/api/v3")  # discard: nothing listens
    try:
        with pytest.raises(SourceError) as raised:
            await source.check_repo("acme/payments")
    finally:
        await source.aclose()
    assert str(raised.value) == "GitHub repository acme/payments: could not reach GitHub"


async def test_the_token_is_sent_but_never_said(fake_github):
    fake_github.add_repo("acme", "payments")
    fake_github.forbid("acme", "payments")
    source = GitHubSource.from_settings(
        Settings(github_token=TOKEN, github_api_url=fake_github.api_url)
    )
    try:
        with capture_logs() as logs, pytest.raises(SourceError) as raised:
            await source.fetch(_ref(fake_github, "repo"))
    finally:
        await source.aclose()
    assert fake_github.requests[0].headers["Authorization"] == f"token {TOKEN}"
    assert TOKEN not in str(raised.value) and TOKEN not in repr(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert TOKEN not in str(logs)


def test_an_api_url_without_a_scheme_is_a_configuration_error():
    with pytest.raises(ConfigError, match="GITHUB_API_URL is not an http"):
        GitHubSource.from_settings(Settings(github_api_url="api.github.com"))


async def test_without_a_token_requests_are_anonymous(fake_github):
    fake_github.add_repo("acme", "payments")
    source = GitHubSource.from_settings(Settings(github_api_url=fake_github.api_url))
    try:
        await source.check_repo("acme/payments")
    finally:
        await source.aclose()
    assert "Authorization" not in fake_github.requests[0].headers


async def test_check_repo(fake_github, source):
    fake_github.add_repo("acme", "payments")
    await source.check_repo("acme/payments")
    with pytest.raises(SourceError, match="acme/gone: not found, or not readable with this"):
        await source.check_repo("acme/gone")
    fake_github.rate_limit_exhausted(int(time.time()) + 600)
    with pytest.raises(SourceError, match="rate limit reached"):
        await source.check_repo("acme/payments")


async def test_the_fetch_log_has_no_contents(fake_github, source):
    fake_github.add_repo("acme", "payments")
    fake_github.add_issue("acme", "payments", 3, title="Secret plans", body="the body")
    reference = _ref(fake_github, "issue", number=3)
    with capture_logs() as logs:
        await source.fetch(reference)
    [entry] = [e for e in logs if e["event"] == "github.fetched"]
    assert entry["url"] == reference.url and entry["items"] == 1 and entry["duration_ms"] >= 0
    assert "the body" not in str(logs) and "Secret plans" not in str(logs)


async def test_concurrent_fetches_are_bounded_by_the_pool_and_each_gets_its_own(fake_github):
    fake_github.add_repo("acme", "payments")
    for number in range(1, 6):
        files = [_change(f"src/pr{number}.py", 2, f"+pr {number}")]
        fake_github.add_pull(
            "acme", "payments", number, title=f"PR {number}", files=files, head_sha=f"{number}" * 40
        )
    fake_github.hold("/repos/acme/payments/pulls/")
    source = _source(fake_github, max_workers=2)
    try:
        fetches = [
            asyncio.create_task(source.fetch(_ref(fake_github, "pull", number=n)))
            for n in range(1, 6)
        ]
        await asyncio.to_thread(fake_github.requests.wait_for, 2)
        fake_github.release()
        results = await asyncio.gather(*fetches)
    finally:
        await source.aclose()
    assert fake_github.max_in_flight == 2
    for number, [fetched] in enumerate(results, start=1):
        assert fetched.item.title == f"acme/payments#{number}: PR {number}"
        assert fetched.revision == f"{number}" * 40
        assert f"+pr {number}" in fetched.item.text


async def test_aclose_lets_a_call_in_flight_finish(fake_github):
    fake_github.add_repo("acme", "payments")
    fake_github.hold("/repos/acme/payments")
    source = _source(fake_github)
    checking = asyncio.create_task(source.check_repo("acme/payments"))
    await asyncio.to_thread(fake_github.requests.wait_for, 1)
    closing = asyncio.create_task(source.aclose())
    fake_github.release()
    await asyncio.gather(checking, closing)
    with pytest.raises(RuntimeError):
        await source.check_repo("acme/payments")


@pytest.mark.parametrize(
    ("api_url", "hosts"),
    [
        ("https://api.github.com", {"github.com"}),
        ("https://api.github.com/", {"github.com"}),
        ("https://ghe.example.com/api/v3", {"ghe.example.com"}),
        ("https://api.acme.ghe.com", {"acme.ghe.com"}),
        ("http://127.0.0.1:8123/api/v3", {"127.0.0.1:8123"}),
    ],
)
async def test_web_hosts(api_url, hosts):
    source = GitHubSource(token=None, api_url=api_url, timeout_seconds=5)
    assert source.web_hosts == hosts
    await source.aclose()


async def test_web_host_of_the_fake(fake_github, source):
    assert source.web_hosts == {fake_github.web_host}


def _hostile(kind: str, owner: str = "acme", repo: str = "payments", **fields: Any) -> Any:
    url = f"https://github.com/{owner}/{repo}"
    return GitHubReference(kind, owner, repo, url, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reference",
    [
        _hostile("repo", owner="..", repo=".."),
        _hostile("repo", owner="acme", repo=".."),
        _hostile("repo", owner="acme/../other", repo="secret"),
        _hostile("repo", owner="acme", repo="payments?x=1"),
        _hostile("file", path="../../../other/secret/contents/creds.txt", ref="main"),
        _hostile("file", path="a/%2e%2e/b", ref="main"),
        _hostile("file", path="a/．．/b", ref="main"),
        _hostile("file", path="a\\..\\b", ref="main"),
        _hostile("tree", path="src", ref=".."),
        _hostile("commit", ref="../../other"),
    ],
)
async def test_a_reference_that_could_leave_its_repository_is_never_requested(
    fake_github, source, reference
):
    fake_github.add_repo("acme", "payments", files={"creds.txt": "x"})
    fake_github.add_repo("other", "secret", files={"creds.txt": "x"}, private=True)
    with pytest.raises(SourceError, match="not requested, "):
        await source.fetch(reference)
    assert fake_github.requests == []


@pytest.mark.parametrize("full_name", ["../..", "acme/..", "acme/../other/secret", "acme/x%2Fy"])
async def test_check_repo_requests_nothing_for_a_name_github_cannot_have(
    fake_github, source, full_name
):
    with pytest.raises(SourceError, match="not requested, "):
        await source.check_repo(full_name)
    assert fake_github.requests == []


async def test_url_characters_in_a_path_or_ref_stay_inside_their_segment(fake_github, source):
    name = "docs/a?b #1 100%;x=.md"
    fake_github.add_repo("acme", "payments")
    fake_github.add_ref("acme", "payments", "v1#2&x=y", {name: "hello\n"})
    reference = _ref(fake_github, "file", path=name, ref="v1#2&x=y")
    [fetched] = await source.fetch(reference)
    assert fetched.item.text == "1 | hello"
    [contents] = fake_github.requests
    assert contents.raw_path == "/repos/acme/payments/contents/docs/a%3Fb%20%231%20100%25%3Bx%3D.md"
    assert contents.query == {"ref": "v1#2&x=y"}


async def test_an_answer_pygithub_cannot_follow_is_a_source_error(fake_github: FakeGitHub):
    """GitHub's bodies name 127.0.0.1; addressed as localhost, PyGithub's same-host check fails."""
    add_payments_sample(fake_github, files={})
    api_url = fake_github.api_url.replace("127.0.0.1", "localhost")
    source = _source(fake_github, api_url=api_url)
    try:
        with pytest.raises(SourceError, match="could not be read"):
            await source.fetch(_ref(fake_github, "pull", number=42))
    finally:
        await source.aclose()
