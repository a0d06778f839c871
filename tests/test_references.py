"""References in a message: each GitHub URL form, Linear URLs and bare keys, Slack's link markup."""

from __future__ import annotations

import pytest

from bot.context.models import GitHubKind, GitHubReference, LinearReference
from bot.context.references import find_references, unwrap_slack_links

HOSTS = {"github.com", "ghe.example.com", "127.0.0.1:8123"}
BASE = "https://github.com/acme/payments"


def _one(text: str) -> GitHubReference | LinearReference:
    [reference] = find_references(text, github_hosts=HOSTS)
    return reference


def _ours(kind: GitHubKind, suffix: str = "", **fields) -> GitHubReference:
    """A reference into acme/payments on github.com, its canonical URL `BASE + suffix`."""
    return GitHubReference(kind, "acme", "payments", BASE + suffix, **fields)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (BASE, _ours("repo")),
        (f"{BASE}.git", _ours("repo")),
        (f"{BASE}/", _ours("repo")),
        ("http://github.com/acme/payments", _ours("repo")),
        (f"{BASE}/actions/runs/9", _ours("repo")),
        (f"{BASE}/commits/main", _ours("repo")),
        (f"{BASE}/tree/main", _ours("tree", "/tree/main", ref="main")),
        (
            f"{BASE}/tree/main/src/api/",
            _ours("tree", "/tree/main/src/api", ref="main", path="src/api"),
        ),
        (f"{BASE}/pull/42", _ours("pull", "/pull/42", number=42)),
        (f"{BASE}/pull/42/files", _ours("pull", "/pull/42", number=42)),
        (f"{BASE}/pulls/42", _ours("pull", "/pull/42", number=42)),
        (f"{BASE}/issues/7#issuecomment-1", _ours("issue", "/issues/7", number=7)),
        (f"{BASE}/commit/0a1b2c3d", _ours("commit", "/commit/0a1b2c3d", ref="0a1b2c3d")),
        (f"{BASE}/commits/0a1b2c3d4e", _ours("commit", "/commit/0a1b2c3d4e", ref="0a1b2c3d4e")),
        (
            f"{BASE}/blob/main/src/retry.py",
            _ours("file", "/blob/main/src/retry.py", path="src/retry.py", ref="main"),
        ),
        (
            f"{BASE}/blob/v2/a.py#L10",
            _ours("file", "/blob/v2/a.py#L10", path="a.py", ref="v2", lines=(10, 10)),
        ),
        (
            f"{BASE}/blob/main/a.py#L10-L40",
            _ours("file", "/blob/main/a.py#L10-L40", path="a.py", ref="main", lines=(10, 40)),
        ),
        (
            f"{BASE}/blob/main/a.py#L10-40",
            _ours("file", "/blob/main/a.py#L10-L40", path="a.py", ref="main", lines=(10, 40)),
        ),
        (
            f"{BASE}/blob/main/a.py#L10C3-L12C9",
            _ours("file", "/blob/main/a.py#L10-L12", path="a.py", ref="main", lines=(10, 12)),
        ),
        (
            f"{BASE}/blob/main/my%20notes.md",
            _ours("file", "/blob/main/my%20notes.md", path="my notes.md", ref="main"),
        ),
    ],
)
def test_github_url_forms(url, expected):
    assert _one(f"please look at {url} today") == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://ghe.example.com/Platform/ledger/pull/3",
            GitHubReference(
                "pull",
                "Platform",
                "ledger",
                "https://ghe.example.com/Platform/ledger/pull/3",
                number=3,
            ),
        ),
        (
            "http://127.0.0.1:8123/acme/payments/blob/main/README.md#L1-L5",
            GitHubReference(
                "file",
                "acme",
                "payments",
                "https://127.0.0.1:8123/acme/payments/blob/main/README.md#L1-L5",
                path="README.md",
                ref="main",
                lines=(1, 5),
            ),
        ),
    ],
)
def test_other_github_hosts(url, expected):
    assert _one(url) == expected


def test_branch_with_a_slash_takes_its_first_segment_as_the_ref():
    reference = _one(f"{BASE}/blob/release/v2/src/app.py")
    assert (reference.ref, reference.path) == ("release", "v2/src/app.py")


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme",
        "https://github.com/orgs/acme/teams",
        "https://github.com/settings/tokens",
        "https://github.com/marketplace/actions/checkout",
        "https://github.com/features/actions",
        "https://github.com/topics/python",
        "https://github.com/sponsors/someone",
        "https://github.com/apps/dependabot",
        "https://github.com/notifications/beta",
        "https://github.com/explore/repos",
        "https://github.com/login/oauth",
        "https://github.com/about/careers",
        "https://github.com/pricing/plans",
        "https://github.com/search/advanced",
        "https://gitlab.com/acme/payments",
        "https://example.com/acme/payments/pull/1",
    ],
)
def test_pages_that_are_not_in_a_repository_are_ignored(url):
    assert find_references(url, github_hosts=HOSTS) == []


@pytest.mark.parametrize(
    "text",
    [
        f"see {BASE}/pull/42.",
        f"see {BASE}/pull/42, then",
        f"(see {BASE}/pull/42)",
        f"see {BASE}/pull/42!",
        f"*{BASE}/pull/42*",
        f"see <{BASE}/pull/42|the PR>.",
        f"see <{BASE}/pull/42>",
    ],
)
def test_punctuation_and_slack_markup_around_a_url_are_not_part_of_it(text):
    assert _one(text).url == f"{BASE}/pull/42"


def test_balanced_parentheses_stay_in_the_url():
    url = "https://github.com/acme/payments/blob/main/docs/a_(b).md"
    assert _one(f"({url})").path == "docs/a_(b).md"


def test_references_come_in_order_and_once():
    text = (
        f"PAY-1 and {BASE}/pull/42 (same as <{BASE}/pull/42/files|files>), "
        f"http://github.com/acme/payments/pulls/42, then {BASE} and PAY-1 again"
    )
    assert find_references(text, github_hosts=HOSTS) == [
        LinearReference("issue", "PAY-1"),
        GitHubReference("pull", "acme", "payments", f"{BASE}/pull/42", number=42),
        GitHubReference("repo", "acme", "payments", BASE),
    ]


def test_lines_are_part_of_what_a_file_reference_is():
    text = f"{BASE}/blob/main/a.py#L1-L5 vs {BASE}/blob/main/a.py#L9"
    assert [r.lines for r in find_references(text, github_hosts=HOSTS)] == [(1, 5), (9, 9)]


@pytest.mark.parametrize(
    "url",
    [
        "https://linear.app/acme/issue/PAY-123/retry-charges-safely",
        "https://linear.app/acme/issue/PAY-123",
        "https://linear.app/acme/issue/pay-123/",
    ],
)
def test_linear_issue_urls(url):
    expected_url = "https://linear.app/acme/issue/PAY-123"
    assert _one(f"ticket: <{url}|PAY-123>.") == LinearReference("issue", "PAY-123", expected_url)


def test_a_bare_key_and_its_url_are_one_reference_with_the_url():
    text = "PAY-123 is https://linear.app/acme/issue/PAY-123/retry"
    url = "https://linear.app/acme/issue/PAY-123"
    assert find_references(text, github_hosts=HOSTS) == [LinearReference("issue", "PAY-123", url)]


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("PAY-123 blocks CORE-7 and A1B2-45", ["PAY-123", "CORE-7", "A1B2-45"]),
        ("fixed in PAY-123.", ["PAY-123"]),
        ("(PAY-123)", ["PAY-123"]),
        ("pay-123 Pay-123 PAYMENTSTEAM-1 P-1", []),  # lower case, too long a prefix, too short
        ("PAY-12345678 x_PAY-1 PAY-1x", []),  # too many digits, inside a word
        ("UTF-8, SHA-256, ISO-8601, RFC-9110, HTTP-2, TLS-1.3, SSL-3, CVE-2024-1234", []),
        ("ECMA-262, PEP-8, GPT-4, AES-256, RSA-2048, MD-5, ES-2015, X86-64", []),
        ("branch https://github.com/acme/payments/tree/PAY-9-fix", []),
        ("jira.example.com/PAY-8", ["PAY-8"]),  # no scheme: not a URL, so the key is bare
    ],
)
def test_bare_linear_keys(text, keys):
    found = [r for r in find_references(text, github_hosts=HOSTS) if isinstance(r, LinearReference)]
    assert [r.key for r in found] == keys
    assert all(r.url is None for r in found)


def test_keys_inside_any_url_are_not_bare_keys():
    text = "https://jira.example.com/browse/PAY-8 and https://example.com/?t=CORE-1"
    assert find_references(text, github_hosts=HOSTS) == []


@pytest.mark.parametrize(
    ("text", "unwrapped"),
    [
        ("<https://github.com/a/b|a/b>", "https://github.com/a/b"),
        ("see <https://github.com/a/b>.", "see https://github.com/a/b."),
        ("<https://x.example/?a=1&amp;b=2|x>", "https://x.example/?a=1&b=2"),
        ("<mailto:dev@example.com|dev@example.com>", "mailto:dev@example.com"),
        ("<@U123> <#C123|payments> <!here> <!subteam^S1|@team>", None),
        ("a &lt;b&gt; c", None),
    ],
)
def test_unwrap_slack_links(text, unwrapped):
    assert unwrap_slack_links(text) == (text if unwrapped is None else unwrapped)
