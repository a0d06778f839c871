"""Crafted text cannot stall the bot: redaction is linear in its input, and runs off the loop.

Before, 64 KB of `a-` took ~28 s to redact, on the event loop: `/healthz` stopped answering.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import threading
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from bot.context import redaction
from bot.context.redaction import MAX_BODY_CHARS, cap_body, redact, vendor_rules
from tests.fakes.github_api import FakeGitHub
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_requests import event_body
from tests.slack_bot import answer_updates, mention_event, running_bot

SIZE = 200_000


def _repeated(unit: str, size: int = SIZE) -> str:
    return (unit * (size // len(unit) + 1))[:size]


# Shapes that made backtracking regexes quadratic: long runs of name characters, separators and
# operators, openings never closed, prefixes repeated.
CRAFTED = {
    "a-": _repeated("a-"),
    "a": _repeated("a"),
    "a=": _repeated("a="),
    "a:": _repeated("a:"),
    "quoted keys": _repeated('"a":'),
    "spaces": " " * SIZE,
    "space before operator": "a" + " " * SIZE + "=",
    "open quote": 'password="' + _repeated("x\\"),
    "password=": _repeated("password="),
    "key = ": _repeated("key = "),
    "url schemes": _repeated("a://a:"),
    "https://": _repeated("https://"),
    "pem begin": _repeated("-----BEGIN PRIVATE KEY-----"),
    "pem end": "-----BEGIN PRIVATE KEY-----" + _repeated("-----END AAAA "),
    "sk-": _repeated("sk-"),
    "jwt start": _repeated("eyJaaaaaaaaa."),
    "curl -u": _repeated("curl -u "),
    "mysql -p": _repeated("mysql -p"),
    "flags": _repeated("--a"),
    "bearer": _repeated("bearer "),
    "base64": _repeated("Ab+/"),
    "env line": "A=" + " " * SIZE + "x",
    "gitleaks keywords": _repeated(
        " = ".join(k for rule in vendor_rules().rules for k in rule.keywords) + " = "
    ),
}


@pytest.mark.parametrize("path", [None, ".env", "deploy/values.yaml"])
@pytest.mark.parametrize("shape", CRAFTED)
def test_crafted_200_kb_is_redacted_quickly(shape, path):
    started = time.perf_counter()
    redact(CRAFTED[shape], path=path)
    assert time.perf_counter() - started < 2.0


def _keyword_shapes(keyword: str, size: int) -> list[str]:
    return [_repeated(keyword + unit, size) for unit in (" = ", "a-", "a", ":", '"')]


def test_each_vendored_rule_and_each_of_ours_is_linear_on_its_own_keywords():
    """Each pattern alone, on 50 KB of its keywords repeated: a quadratic one takes seconds."""
    size = 50_000
    ours = [value for value in vars(redaction).values() if isinstance(value, re.Pattern)]
    slow = []
    for rule in vendor_rules().rules:
        texts = [shape for keyword in rule.keywords[:2] for shape in _keyword_shapes(keyword, size)]
        for text in texts:
            started = time.perf_counter()
            sum(1 for _ in rule.pattern.finditer(text))
            if time.perf_counter() - started > 0.25:
                slow.append(rule.id)
    for pattern in ours:
        for text in CRAFTED.values():
            started = time.perf_counter()
            sum(1 for _ in pattern.finditer(text[:size]))
            if time.perf_counter() - started > 0.25:
                slow.append(pattern.pattern)
    assert slow == []


def test_the_excluded_vendor_rules_are_the_quadratic_ones():
    """Why `curl-auth-user` is left to our rules: on 20 KB of `curl -u` it already takes long."""
    rules = tomllib.loads(redaction.GITLEAKS_RULES.read_text())["rules"]
    go = next(rule["regex"] for rule in rules if rule["id"] == "curl-auth-user")
    pattern = re.compile(redaction._python_regex(go))
    started = time.perf_counter()
    sum(1 for _ in pattern.finditer(_repeated("curl -u a ", 20_000)))
    assert time.perf_counter() - started > 0.25


def test_bodies_are_cut_with_a_marker():
    body = CRAFTED["a-"]
    cut = cap_body(body)
    assert cut.startswith(body[:MAX_BODY_CHARS])
    assert cut.endswith(f"… (cut here: {SIZE:,} characters in all)")
    assert cap_body("short") == "short" and cap_body(None) == ""
    assert redact(body * 2).text.endswith(f"… (cut here: {2 * SIZE:,} characters in all)")


# --- through the real bot: /healthz answers while the largest allowed PR is redacted ---


@asynccontextmanager
async def probing(url: str) -> AsyncIterator[list[tuple[float, float, int]]]:
    """GET `/healthz` back to back from another thread, as a liveness probe would; yields the
    (start, end, status) of each request, latencies as seen from outside the process."""
    spans: list[tuple[float, float, int]] = []
    stop = threading.Event()
    host, port = url.removeprefix("http://").split(":")

    def probe() -> None:
        while not stop.is_set():
            connection = http.client.HTTPConnection(host, int(port), timeout=5)
            started = time.perf_counter()
            connection.request("GET", "/healthz")
            status = connection.getresponse().status
            spans.append((started, time.perf_counter(), status))
            connection.close()

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield spans
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 10)  # the bot shares this loop: never block it


def _crafted_pull(fake_github: FakeGitHub) -> None:
    """A PR at every cap: a 200 KB description, and patches filling the whole diff allowance."""
    shapes = [text for name, text in CRAFTED.items() if name != "a-"]
    files = [
        {
            "filename": f"crafted/{n}.env" if n % 2 else f"crafted/{n}.yaml",
            "status": "modified",
            "additions": 1,
            "deletions": 0,
            "changes": 19_000 - n,  # largest first, as the bot orders them
            "patch": shape[:19_000],
        }
        for n, shape in enumerate(shapes[:7])
    ]
    fake_github.add_repo("acme", "payments", readme="# payments")
    fake_github.add_pull(
        "acme", "payments", 7, title="Crafted", body=CRAFTED["a-"], files=files, head_sha="c" * 40
    )


async def _in_thread(wait: Callable[[], object]) -> None:
    await asyncio.to_thread(wait)


async def test_healthz_answers_within_100_ms_while_a_crafted_pr_is_redacted(
    settings_for, fake_slack, fake_github: FakeGitHub, fake_openai: FakeOpenAI
):
    _crafted_pull(fake_github)
    held = "/repos/acme/payments/pulls/7/files"
    fake_github.hold(held)
    # a budget for the whole PR, so the prompt shows it was read to its cut
    settings = settings_for(oi_context_token_budget=100_000)
    async with running_bot(settings, fake_slack) as slack_bot, probing(slack_bot.url) as spans:
        pr_url = f"{fake_github.web_url}/acme/payments/pull/7"
        await slack_bot.send(event_body(mention_event(f"<@UBOT> review {pr_url}"), event_id="Ev1"))
        await _in_thread(lambda: _wait_for_path(fake_github, held))
        released = time.perf_counter()
        fake_github.release()  # from here on the PR is read, cut, redacted and sent
        await _in_thread(lambda: fake_openai.requests.wait_for(1, timeout=30))
        prompted = time.perf_counter()
        await slack_bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)

    prompt = json.dumps(fake_openai.requests[0], ensure_ascii=False)
    assert f"(cut here: {SIZE:,} characters in all)" in prompt  # the body was read, and cut
    assert {status for _, _, status in spans} == {200}
    # However quickly the PR was redacted, a probe was in flight through all of it: a stalled loop
    # shows as a slow probe, a thread holding the GIL as a stretch with no probe at all.
    watched = [(start, end) for start, end, _ in spans if start <= prompted and end >= released]
    assert watched, (len(spans), prompted - released)
    unwatched = _longest_unwatched(watched, released, prompted)
    assert unwatched < 0.1, f"no probe ran for {unwatched * 1000:.0f} ms of the redaction"
    slowest = max(end - start for start, end, _ in spans)
    assert slowest < 0.1, f"/healthz took {slowest * 1000:.0f} ms"


def _longest_unwatched(spans: list[tuple[float, float]], start: float, end: float) -> float:
    """The longest part of [start, end] during which no probe was in flight."""
    longest, watched_until = 0.0, start
    for span_start, span_end in sorted(spans):
        longest = max(longest, span_start - watched_until)
        watched_until = max(watched_until, span_end)
    return max(longest, end - watched_until)


def _wait_for_path(fake_github: FakeGitHub, path: str) -> None:
    """Until the fake has received a request for `path` (each wait is on its next request)."""
    seen = 0
    while not any(request.path == path for request in fake_github.requests):
        seen += 1
        fake_github.requests.wait_for(seen)
