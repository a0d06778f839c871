"""The gatherer over real HTTP against the local GitHub and Linear: which references are read,
concurrently and within their timeouts, and what becomes a missingContext line."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.context.gather import ContextGatherer, Links, Reach
from bot.context.github import GitHubSource
from bot.context.linear import LinearSource
from bot.core.persona import load_personas
from tests.fakes.github_api import FakeGitHub
from tests.fakes.linear_api import FakeLinear

PERSONA = load_personas().get("backend-engineer")


@pytest.fixture
async def make_gatherer(fake_github: FakeGitHub, fake_linear: FakeLinear):
    """Gatherers on the local fakes, closed after the test."""
    opened: list[ContextGatherer] = []

    def make(**overrides: Any) -> ContextGatherer:
        options: dict[str, Any] = dict(
            github=GitHubSource(
                token=fake_github.token, api_url=fake_github.api_url, timeout_seconds=5
            ),
            linear=LinearSource(
                api_key=fake_linear.api_key, api_url=fake_linear.api_url, timeout_seconds=5
            ),
            timeout_seconds=5,
            token_budget=8000,
        )
        options.update(overrides)
        gatherer = ContextGatherer(**options)
        opened.append(gatherer)
        return gatherer

    yield make
    for gatherer in opened:
        await gatherer.aclose()


@pytest.fixture
def gatherer(make_gatherer) -> ContextGatherer:
    return make_gatherer()


@pytest.fixture
def data(fake_github: FakeGitHub, fake_linear: FakeLinear) -> None:
    fake_github.add_repo("acme", "payments", readme="# payments\nCharges cards.")
    fake_linear.add_team("PAY", "Payments")
    fake_linear.add_team("OPS", "Operations")
    fake_linear.add_issue("PAY-1", title="Duplicate charges")
    fake_linear.add_issue("OPS-2", title="Pager noise")


async def test_bare_keys_are_read_only_for_linked_teams(gatherer, data, fake_linear):
    gathered = await gatherer.gather(
        reach=Reach.TOKENS,
        text="see PAY-1 and OPS-2",
        persona=PERSONA,
        links=Links(linear_teams=["PAY"]),
    )
    text = "\n".join(item.text for item in gathered.items)
    assert "Duplicate charges" in text and "Pager noise" not in text
    everything = await gatherer.gather(
        reach=Reach.TOKENS, text="see PAY-1 and OPS-2", persona=PERSONA, links=Links()
    )
    assert "Pager noise" in "\n".join(item.text for item in everything.items)


async def test_linked_repository_and_team_are_read_when_not_named(gatherer, data):
    gathered = await gatherer.gather(
        reach=Reach.TOKENS,
        text="how does this service work?",
        persona=PERSONA,
        links=Links(repositories=["acme/payments"], linear_teams=["PAY"]),
    )
    titles = [citation.title for citation in gathered.citations]
    assert any("README" in title for title in titles)
    assert any("PAY" in title for title in titles)
    assert gathered.missing == []
    assert set(gathered.fetched) == {"github:repo:acme/payments:", "linear:team:PAY"}


async def test_sources_are_read_concurrently(gatherer, data, fake_github, fake_linear):
    """Both sources are held until both have been asked: sequential reading would time out."""
    fake_github.hold("/api/v3/repos")
    fake_linear.hold()
    task = asyncio.create_task(
        gatherer.gather(
            reach=Reach.TOKENS,
            text="PAY-1",
            persona=PERSONA,
            links=Links(repositories=["acme/payments"]),
        )
    )
    await asyncio.to_thread(fake_github.requests.wait_for, 1)
    await asyncio.to_thread(fake_linear.requests.wait_for, 1)
    fake_github.release()
    fake_linear.release()
    gathered = await task
    assert gathered.missing == []


async def test_a_source_past_its_timeout_becomes_a_missing_line(make_gatherer, data, fake_linear):
    fake_linear.hold()
    gatherer = make_gatherer(timeout_seconds=0.3)
    try:
        gathered = await gatherer.gather(
            reach=Reach.TOKENS,
            text="PAY-1",
            persona=PERSONA,
            links=Links(repositories=["acme/payments"]),
        )
    finally:
        fake_linear.release()
    assert gathered.missing == ["Could not read Linear issue PAY-1: no answer within 0.3s"]
    assert any("README" in citation.title for citation in gathered.citations)


async def test_a_persona_reads_only_its_connections(gatherer, data, fake_github):
    github_only = PERSONA.model_copy(
        update={"connections": PERSONA.connections.model_copy(update={"sources": ["github"]})}
    )
    gathered = await gatherer.gather(
        reach=Reach.TOKENS, text="PAY-1", persona=github_only, links=Links()
    )
    assert gathered.items == [] and gathered.missing == []


async def test_allow_lists_refuse_with_a_reason(make_gatherer, data):
    gatherer = make_gatherer(allowed_github_orgs=["other"], allowed_linear_teams=["OPS"])
    gathered = await gatherer.gather(
        reach=Reach.TOKENS,
        text="PAY-1 OPS-2",
        persona=PERSONA,
        links=Links(repositories=["acme/payments"]),
    )
    assert "Did not read Linear issue PAY-1: PAY-1 is outside OI_LINEAR_ALLOWED_TEAMS" in (
        gathered.missing
    )
    assert any("OI_GITHUB_ALLOWED_ORGS" in line for line in gathered.missing)
    assert "Pager noise" in "\n".join(item.text for item in gathered.items)


async def test_cached_references_are_not_read_again(gatherer, data, fake_linear):
    first = await gatherer.gather(reach=Reach.TOKENS, text="PAY-1", persona=PERSONA, links=Links())
    asked = len(fake_linear.requests)
    again = await gatherer.gather(
        reach=Reach.TOKENS,
        text="and the fix?",
        persona=PERSONA,
        links=Links(),
        cached=first.fetched,
    )
    assert len(fake_linear.requests) == asked
    assert again.fetched == {}
    assert "Duplicate charges" in "\n".join(item.text for item in again.items)


async def test_a_linked_team_the_thread_named_is_not_read_whole_in_a_follow_up(
    gatherer, data, fake_linear
):
    """The question named PAY-1, so PAY counts as named for the thread, as it did for it."""
    links = Links(linear_teams=["PAY"])
    first = await gatherer.gather(
        reach=Reach.CONVERSATION, text="PAY-1", persona=PERSONA, links=links
    )
    asked = len(fake_linear.requests)
    again = await gatherer.gather(
        reach=Reach.CONVERSATION, text="and?", persona=PERSONA, links=links, cached=first.fetched
    )
    assert len(fake_linear.requests) == asked and again.fetched == {}


async def test_everything_left_out_is_said(make_gatherer, data, fake_github):
    fake_github.add_repo("acme", "big", readme="# big\n" + "lorem ipsum\n" * 20000)
    gatherer = make_gatherer(token_budget=600)
    gathered = await gatherer.gather(
        reach=Reach.TOKENS, text="", persona=PERSONA, links=Links(repositories=["acme/big"])
    )
    assert gathered.items[-1].title == "Left out for space"
