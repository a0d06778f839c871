"""Hostile GitHub and Linear URLs, asked through the real bot: no request leaves the repository
(or the Linear operation) that was admitted, and each refused URL is said in missingContext.

The bot runs over signed HTTP with `OI_GITHUB_ALLOWED_ORGS=acme`; the local GitHub also holds a
private `other/secret` that the token could read. Assertions are on the raw paths the fake
GitHub received, before any decoding, and on the documents and variables the fake Linear
received. (Host case is varied in tests/test_references.py: the local GitHub's host is an IP.)
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable

import pytest
from graphql import print_ast

from bot.context.linear import ISSUE_QUERY, TEAM_IN_PROGRESS_QUERY, TEAM_QUERY
from bot.context.references import (
    BAD_HOST,
    CONTROL,
    DOT_SEGMENT,
    DOUBLE_ENCODED,
    LONG_SEGMENT,
    LOOK_ALIKE,
    NOT_UTF8,
    SLASH,
    TOO_LONG,
    USERINFO,
)
from tests.fakes.github_api import FakeGitHub, add_payments_sample
from tests.fakes.slack_requests import event_body, slash_command_body
from tests.slack_bot import RunningBot, answer_updates, mention_event, running_bot

SECRET = "other-secret-creds-0123456789"
README = "# payments\nCharges cards."
OWNER_RULE = "is not a GitHub owner name"
REPO_RULE = "is not a GitHub repository name"
REF_RULE = "is not a git branch, tag or commit name"
LINEAR_KEY_RULE = "is not a Linear issue key"
LINEAR_WORKSPACE_RULE = "is not a Linear workspace name"
TRAVERSAL = "../../../../repos/other/secret/contents/creds.txt"

# Each URL (its host is filled in) and the reason it must be refused with.
HOSTILE_GITHUB: dict[str, list[tuple[str, str]]] = {
    "traversal": [
        (f"http://{{host}}/acme/payments/blob/main/{TRAVERSAL}", DOT_SEGMENT),
        ("http://{host}/acme/payments/blob/main/./README.md", DOT_SEGMENT),
        ("http://{host}/acme/payments/blob/../../other/secret/creds.txt", DOT_SEGMENT),
        ("http://{host}/acme/payments/tree/main/../../../other/secret", DOT_SEGMENT),
        ("http://{host}/acme/payments/pull/42/../../../other/secret", DOT_SEGMENT),
        ("http://{host}/acme/../other/secret", DOT_SEGMENT),
        ("http://{host}/../other/secret", DOT_SEGMENT),
        ("http://{host}/acme/payments/tree/..", DOT_SEGMENT),
    ],
    "percent-encoded": [
        ("http://{host}/acme/payments/blob/main/%2e%2e/%2E%2E/other/secret/x", DOT_SEGMENT),
        ("http://{host}/acme/payments/blob/main/.%2e/.%2E/other/secret/x", DOT_SEGMENT),
        ("http://{host}/acme/%2e%2e/other/secret", DOT_SEGMENT),
        ("http://{host}/%2e%2e/other/secret", DOT_SEGMENT),
        ("http://{host}/acme/payments/tree/%2e%2e/x", DOT_SEGMENT),
        ("http://{host}/acme/payments/blob/main/%252e%252e/%252e%252e/x", DOUBLE_ENCODED),
        ("http://{host}/acme/payments/blob/main/a%252F..%252Fb", DOUBLE_ENCODED),
        ("http://{host}/acme/payments/blob/main/%C0%AE%C0%AE/x", NOT_UTF8),
    ],
    "slashes": [
        ("http://{host}/acme/payments/blob/main/a%2F..%2F..%2F..%2Fother%2Fsecret", SLASH),
        ("http://{host}/acme/payments/blob/main%2F..%2F..%2Fx/README.md", SLASH),
        ("http://{host}/acme%2Fpayments/blob/main/README.md", SLASH),
        ("http://{host}/acme/payments%2F..%2F..%2Fother%2Fsecret", SLASH),
        ("http://{host}/acme/payments/blob/main/a%5C..%5C..%5Cother", SLASH),
        ("http://{host}/acme/payments/blob/main/..\\..\\other\\secret", SLASH),
        ("http://{host}/acme/payments\\..\\..\\other\\secret", SLASH),
    ],
    "userinfo-and-hosts": [
        ("http://evil@{host}/acme/payments/blob/main/README.md", USERINFO),
        ("http://user:pass@{host}/acme/payments", USERINFO),
        ("http://{host}@evil.example/acme/payments", USERINFO),
        ("http://{host}\\@evil.example/acme/payments", USERINFO),
        ("http://127.0.0.1\\evil.example/acme/payments", BAD_HOST),
        ("http://127.0.0.1:99999/acme/payments", BAD_HOST),
        ("http://127.0.0.1:port/acme/payments", BAD_HOST),
        ("http://127.0.0.1／acme/payments", BAD_HOST),
        ("http://１２７.０.０.１：{port}/acme/payments", BAD_HOST),
        ("http://{host}.evil.example/other/secret", BAD_HOST),
    ],
    "look-alikes": [
        ("http://{host}/acme/payments/blob/main/．．/．．/other/secret", LOOK_ALIKE),
        ("http://{host}/acme/payments/blob/main/\u2025/\u2025/other/secret", LOOK_ALIKE),
        ("http://{host}/acme/payments/blob/main/\u2024/README.md", LOOK_ALIKE),
        ("http://{host}/acme/payments/blob/main/\ufe52\ufe52/x", LOOK_ALIKE),
        ("http://{host}/acme/payments/blob/main/a／..／..／other", LOOK_ALIKE),
        ("http://{host}/acme/payments/blob/main/a＼..＼other", LOOK_ALIKE),
        ("http://{host}/acme/payments/blob/main/％２ｅ％２ｅ/x", LOOK_ALIKE),
        ("http://{host}/ａｃｍｅ/payments", OWNER_RULE),
        ("http://{host}/acme/ｐａｙｍｅｎｔｓ", REPO_RULE),
    ],
    "names": [
        ("http://{host}/-acme/payments", OWNER_RULE),
        ("http://{host}/ac--me/payments", OWNER_RULE),
        ("http://{host}/ac_me/payments", OWNER_RULE),
        ("http://{host}/acme/pay%3Fments", REPO_RULE),
        ("http://{host}/acme/pay%23ments/blob/main/x", REPO_RULE),
        ("http://{host}/acme/..git", REPO_RULE),
        ("http://{host}/acme/payments/blob/ma..in/README.md", REF_RULE),
        ("http://{host}/acme/payments/blob/.hidden/README.md", REF_RULE),
        ("http://{host}/acme/payments/tree/main%3A..", REF_RULE),
    ],
    "control-and-length": [
        ("http://{host}/acme/payments/blob/main/README.md%00/../../other", CONTROL),
        ("http://{host}/acme/payments/blob/main/a\x00b", CONTROL),
        ("http://{host}/acme/payments/blob/main/%0D%0AHost:evil", CONTROL),
        ("http://{host}/acme/payments/blob/main/\u202etxt.md", CONTROL),
        ("http://{host}/acme/payments/blob/main/" + "a" * 300, LONG_SEGMENT),
        ("http://{host}/acme/payments/blob/main/" + "ab/" * 1000, TOO_LONG),
        ("http://{host}/acme/" + "p" * 101, REPO_RULE),
        ("http://{host}/" + "o" * 40 + "/payments", OWNER_RULE),
    ],
}

# Read, because what they name is inside acme/payments; what they add changes nothing.
HARMLESS_GITHUB = [
    "http://{host}/acme/payments/blob/main/README.md?ref=../../../other/secret",
    "http://{host}/acme/payments/blob/main/README.md#/../../../../other/secret",
    "http://{host}/acme/payments/pull/42?path=%2e%2e%2f%2e%2e%2fother%2fsecret",
    "http://{host}/Acme/Payments/blob/main/README.md",
    "http://{host}/ACME/payments/tree/main",
]

# Not this GitHub at all: neither read nor reported.
OTHER_SITES = [
    "http://127.0.0.1.evil.example/other/secret",
    "http://evil.example/{host}/other/secret",
    "http://127.0.0.1:1/other/secret",
]


@pytest.fixture
async def bot(
    settings_for: Callable[..., object], fake_slack, fake_github: FakeGitHub
) -> AsyncIterator[RunningBot]:
    """The bot with the acme allow-list; the token could read `other/secret` too."""
    add_payments_sample(fake_github, files={"src/app.py": "print(1)\n"}, readme=README)
    fake_github.add_repo("other", "secret", files={"creds.txt": SECRET}, private=True)
    settings = settings_for(oi_github_allowed_orgs="acme", oi_link_policy="anyone")
    async with running_bot(settings, fake_slack) as running:  # type: ignore[arg-type]
        yield running


def _filled(url: str, fake_github: FakeGitHub) -> str:
    return url.format(host=fake_github.web_host, port=fake_github.web_host.rsplit(":", 1)[1])


async def _ask(bot: RunningBot, text: str) -> list[str]:
    """Ask in a channel; the answer's missingContext lines."""
    await bot.send(event_body(mention_event(f"<@UBOT> review {text}"), event_id="Ev-hostile"))
    await bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
    [answer] = answer_updates(bot.fake_slack)
    shown = "\n".join(
        block["text"]["text"] for block in answer.args["blocks"] if block.get("text")
    )
    section = shown[shown.index("*Missing context*") :]
    return [line.removeprefix("• ") for line in section.splitlines() if line.startswith("• ")]


def _assert_stayed_in_acme_payments(fake_github: FakeGitHub) -> None:
    assert fake_github.requests, "the admitted reference was not read: the test proves nothing"
    for request in fake_github.requests:
        raw = request.raw_path.lower()
        assert raw == "/repos/acme/payments" or raw.startswith("/repos/acme/payments/"), raw
        assert "secret" not in raw and ".." not in raw and "%2e" not in raw, raw
        assert "%2f" not in raw and "%5c" not in raw and "\\" not in raw, raw
        assert request.method == "GET"


@pytest.mark.parametrize("category", sorted(HOSTILE_GITHUB))
async def test_hostile_github_urls_are_refused_and_said(bot, fake_github, fake_openai, category):
    hostile = [(_filled(url, fake_github), reason) for url, reason in HOSTILE_GITHUB[category]]
    admitted = _filled("http://{host}/acme/payments/blob/main/README.md", fake_github)
    missing = await _ask(bot, " ".join([url for url, _ in hostile] + [admitted]))

    _assert_stayed_in_acme_payments(fake_github)
    assert "Charges cards." in json.dumps(fake_openai.requests[0])
    assert SECRET not in json.dumps(fake_openai.requests + bot.fake_slack.calls, default=str)
    refused = [line for line in missing if line.startswith("Did not read ")]
    assert len(refused) == len(hostile), "\n".join(missing)
    for line, (_, reason) in zip(refused, hostile, strict=True):
        assert reason in line.replace("&amp;", "&"), line
    assert not any(line.startswith("Could not read") for line in missing), missing


async def test_harmless_variants_are_read_inside_the_repository_only(
    bot, fake_github, fake_openai
):
    urls = [_filled(url, fake_github) for url in HARMLESS_GITHUB]
    missing = await _ask(bot, " ".join(urls))

    _assert_stayed_in_acme_payments(fake_github)
    paths = {request.raw_path for request in fake_github.requests}
    assert {"/repos/Acme/Payments/contents/README.md", "/repos/acme/payments/pulls/42"} & paths
    assert not any(line.startswith(("Did not read", "Could not read")) for line in missing)


async def test_other_sites_are_neither_read_nor_reported(bot, fake_github, fake_openai):
    urls = [_filled(url, fake_github) for url in OTHER_SITES]
    admitted = _filled("http://{host}/acme/payments/blob/main/README.md", fake_github)
    missing = await _ask(bot, " ".join([*urls, admitted]))

    _assert_stayed_in_acme_payments(fake_github)
    assert not any(line.startswith(("Did not read", "Could not read")) for line in missing)


async def test_allow_list_and_request_agree_on_the_repository(bot, fake_github, fake_openai):
    """What the allow-list checked (acme/…) is what is requested; other/secret is refused by
    name, and its path is never requested even though the token could read it."""
    other = _filled("http://{host}/other/secret/blob/main/creds.txt", fake_github)
    admitted = _filled("http://{host}/ACME/payments/blob/main/README.md", fake_github)
    missing = await _ask(bot, f"{other} {admitted}")

    _assert_stayed_in_acme_payments(fake_github)
    assert any("other/secret is outside OI_GITHUB_ALLOWED_ORGS" in line for line in missing)


async def test_link_commands_cannot_walk_around_the_allow_list(bot, fake_github):
    """Refused by the grammar itself, with the reason, before anything is checked or read."""
    for number, target in enumerate(["acme/..", "../secret", "../..", "acme/.", ".../.."]):
        status, said = await bot.send(
            slash_command_body(
                f"link github {target}", response_url=bot.fake_slack.response_url(f"r{number}")
            )
        )
        assert status == 200 and f"'{target}' is not a repository" in said, said
    await bot.settle()
    assert bot.fake_slack.calls_to("response_url") == []
    assert fake_github.requests == []


# --- Linear: keys and URLs ---

LINEAR_ISSUE = re.compile(r"[A-Z][A-Z0-9]{0,9}-[0-9]{1,7}")
LINEAR_TEAM = re.compile(r"[A-Z][A-Z0-9]{0,9}")

HOSTILE_LINEAR: list[tuple[str, str]] = [
    ("https://linear.app/../issue/PAY-2", DOT_SEGMENT),
    ("https://linear.app/acme/issue/%2e%2e/PAY-3", DOT_SEGMENT),
    ("https://linear.app/acme/issue/PAY-4%2F..%2F..%2FPAY-5", SLASH),
    (  # `PAY-6") { viewer { id } }`, encoded
        "https://linear.app/acme/issue/PAY-6%22)%20%7B%20viewer%20%7B%20id%20%7D%20%7D",
        LINEAR_KEY_RULE,
    ),
    ("https://linear.app/acme/issue/PAY-７", LINEAR_KEY_RULE),
    ("https://linear.app/acme/issue/PAYMENTSTEAM-8", LINEAR_KEY_RULE),
    ("https://linear.app/ac$me/issue/PAY-9", LINEAR_WORKSPACE_RULE),
    ("https://evil@linear.app/acme/issue/PAY-10", USERINFO),
    ("https://linear.app@evil.example/acme/issue/PAY-11", USERINFO),
    ("https://linear.app/acme/issue/PAY-12%00", CONTROL),
    ("https://linear.app/acme/issue/PAY-13/．．", LOOK_ALIKE),
]


async def test_linear_gets_only_its_own_documents_with_validated_keys(
    bot, fake_slack, fake_linear, fake_openai
):
    fake_slack.add_channel("C111", name="payments-team", private=True)
    fake_linear.add_team("PAY", "Payments")
    for number in (1, 14, *range(2, 14)):
        fake_linear.add_issue(f"PAY-{number}", title=f"Ticket {number}", description="d")
    await bot.send(
        slash_command_body("link linear PAY", response_url=bot.fake_slack.response_url("l"))
    )
    [linked] = await bot.wait_for_calls("response_url", 1)
    assert linked.args["text"].startswith("Linked linear PAY")
    bare = 'PAY-14") { viewer { id } } PAY-１５ PAY-١٦'
    urls = " ".join(url for url, _ in HOSTILE_LINEAR)
    missing = await _ask(bot, f"https://linear.app/acme/issue/PAY-1/fine {urls} {bare}")

    documents = {
        print_ast(query.document) for query in (ISSUE_QUERY, TEAM_IN_PROGRESS_QUERY, TEAM_QUERY)
    }
    assert fake_linear.requests and fake_linear.invalid_requests == []
    asked = []
    for request in fake_linear.requests:
        assert request.query in documents
        if "id" in request.variables:
            assert LINEAR_ISSUE.fullmatch(request.variables["id"])
            asked.append(request.variables["id"])
        else:
            assert LINEAR_TEAM.fullmatch(request.variables["key"])
    assert sorted(asked) == ["PAY-1", "PAY-14"]
    refused = [line for line in missing if line.startswith("Did not read ")]
    assert len(refused) == len(HOSTILE_LINEAR), "\n".join(missing)
    for line, (_, reason) in zip(refused, HOSTILE_LINEAR, strict=True):
        assert reason in line.replace("&amp;", "&"), line
