"""The Linear source over real HTTP against the fake Linear, which holds it to Linear's schema."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from bot.config import Settings
from bot.context.linear import LATEST_COMMENTS, LinearSource
from bot.context.models import (
    PRIORITY_BACKGROUND,
    PRIORITY_PRIMARY,
    LinearReference,
    SourceError,
)
from tests.fakes.linear_api import FakeLinear

_ISSUE = LinearReference(kind="issue", key="PAY-123")
_TEAM = LinearReference(kind="team", key="PAY")


@pytest.fixture(autouse=True)
def _every_document_valid(fake_linear: FakeLinear) -> Iterator[None]:
    """Whatever a test checks, every document the source sent must fit Linear's schema."""
    yield
    assert fake_linear.invalid_requests == []


@pytest.fixture
async def source(fake_linear: FakeLinear) -> AsyncIterator[LinearSource]:
    source = _source(fake_linear, api_key=fake_linear.api_key)
    yield source
    await source.aclose()


def _source(fake: FakeLinear, *, api_key: str | None, timeout: float = 5) -> LinearSource:
    return LinearSource(api_key=api_key, api_url=fake.api_url, timeout_seconds=timeout)


def _add_payments(fake: FakeLinear) -> None:
    fake.add_team("PAY", "Payments")
    fake.add_issue("PAY-100", title="Harden the charge pipeline", state=("Todo", "unstarted"))
    fake.add_issue(
        "PAY-123",
        title="Retry POST /charges on timeout",
        description="We retry 3 times.\nNo idempotency key yet.",
        state=("In Review", "started"),
        priority=1,
        assignee="Ada Lovelace",
        labels=["bug", "payments"],
        project="Charge reliability",
        parent="PAY-100",
        comments=[
            ("Grace Hopper" if n % 2 else None, f"comment {n:02}", f"2026-11-{n:02}T09:00:00.000Z")
            for n in range(1, LATEST_COMMENTS + 3)
        ],
        updated_at="2026-11-21T08:30:00.000Z",
    )


async def test_an_issue_reads_every_field_and_the_latest_comments_in_order(
    fake_linear: FakeLinear, source: LinearSource
) -> None:
    _add_payments(fake_linear)

    [fetched] = await source.fetch(_ISSUE)

    assert fetched.priority == PRIORITY_PRIMARY
    assert fetched.revision == "2026-11-21T08:30:00.000Z"
    assert fetched.item.source == "https://linear.app/acme/issue/PAY-123"
    assert fetched.item.title == "PAY-123: Retry POST /charges on timeout"
    text = fetched.item.text
    for expected in (
        "PAY-123",
        "Retry POST /charges on timeout",
        "State: In Review (started)",
        "Priority: Urgent",
        "Assignee: Ada Lovelace",
        "Labels: bug, payments",
        "Project: Charge reliability",
        "Parent: PAY-100 Harden the charge pipeline",
        "We retry 3 times.\nNo idempotency key yet.",
        "- Grace Hopper, 2026-11-03T09:00:00.000Z:\n  comment 03",
        "- (no user), 2026-11-12T09:00:00.000Z:\n  comment 12",
    ):
        assert expected in text
    shown = [n for n in range(1, LATEST_COMMENTS + 3) if f"comment {n:02}" in text]
    assert shown == list(range(3, LATEST_COMMENTS + 3))
    assert [text.index(f"comment {n:02}") for n in shown] == sorted(
        text.index(f"comment {n:02}") for n in shown
    )


async def test_a_team_lists_its_issues_in_progress(
    fake_linear: FakeLinear, source: LinearSource
) -> None:
    _add_payments(fake_linear)
    fake_linear.add_issue("PAY-7", title="Refund webhooks", state=("In Progress", "started"))
    fake_linear.add_issue("PAY-8", title="Old cleanup", state=("Done", "completed"))
    fake_linear.add_team("OPS", "Operations")
    fake_linear.add_issue("OPS-1", title="Rotate certificates")

    [fetched] = await source.fetch(_TEAM)

    text = fetched.item.text
    assert "- PAY-123 Retry POST /charges on timeout [In Review] (Ada Lovelace)" in text
    assert "- PAY-7 Refund webhooks [In Progress] (unassigned)" in text
    assert not any(key in text for key in ("PAY-100", "PAY-8", "OPS-1"))
    assert fetched.priority == PRIORITY_BACKGROUND
    assert fetched.item.source == "https://linear.app/acme/team/PAY/active"

    [again] = await source.fetch(_TEAM)
    fake_linear.add_issue("PAY-9", title="Payout retries")
    [changed] = await source.fetch(_TEAM)
    assert again.revision == fetched.revision != changed.revision


async def test_an_unknown_issue_or_team_is_not_found(
    fake_linear: FakeLinear, source: LinearSource
) -> None:
    fake_linear.add_team("PAY", "Payments")

    with pytest.raises(SourceError) as issue_error:
        await source.fetch(LinearReference(kind="issue", key="PAY-999"))
    with pytest.raises(SourceError) as team_error:
        await source.fetch(LinearReference(kind="team", key="NOPE"))

    assert str(issue_error.value) == "PAY-999 was not found, or this LINEAR_API_KEY cannot read it"
    assert str(team_error.value) == (
        "Linear team NOPE was not found, or this LINEAR_API_KEY cannot read it"
    )


async def test_a_rate_limit_is_said_at_once_without_retrying(
    fake_linear: FakeLinear, source: LinearSource
) -> None:
    _add_payments(fake_linear)
    fake_linear.rate_limited()

    with pytest.raises(SourceError, match="PAY-123 could not be read: Linear rate limit reached"):
        await source.fetch(_ISSUE)

    assert len(fake_linear.requests) == 1
    assert await source.fetch(_ISSUE)


async def test_an_outage_is_tried_again_twice_then_said(
    fake_linear: FakeLinear, source: LinearSource
) -> None:
    _add_payments(fake_linear)
    fake_linear.server_error(times=2)
    [fetched] = await source.fetch(_ISSUE)  # third time lucky
    assert "Retry POST /charges on timeout" in fetched.item.text
    assert len(fake_linear.requests) == 3

    fake_linear.server_error(times=3)
    with pytest.raises(SourceError, match="PAY-123 could not be read: Linear answered HTTP 503"):
        await source.fetch(_ISSUE)
    assert len(fake_linear.requests) == 6


async def test_a_refused_connection_is_said_as_such(fake_linear: FakeLinear) -> None:
    fake_linear.stop()
    source = _source(fake_linear, api_key=fake_linear.api_key)
    try:
        with pytest.raises(SourceError, match="could not connect to Linear"):
            await source.fetch(_ISSUE)
    finally:
        await source.aclose()


@pytest.mark.parametrize("key", ["lin_api_wrong", None])
async def test_a_rejected_key_is_said_and_never_shown(
    fake_linear: FakeLinear, key: str | None
) -> None:
    """A wrong key, and a right one Linear stopped accepting."""
    _add_payments(fake_linear)
    if key is None:
        fake_linear.reject_key()
    source = _source(fake_linear, api_key=key or fake_linear.api_key)

    with pytest.raises(SourceError) as error:
        await source.fetch(_ISSUE)
    await source.aclose()

    assert str(error.value) == "PAY-123 could not be read: LINEAR_API_KEY was not accepted"


async def test_a_linear_that_does_not_answer_fails_within_the_timeout(
    fake_linear: FakeLinear,
) -> None:
    _add_payments(fake_linear)
    fake_linear.hold()
    source = _source(fake_linear, api_key=fake_linear.api_key, timeout=0.2)

    started = time.perf_counter()
    with pytest.raises(SourceError, match="Linear did not answer in time"):
        await source.fetch(_ISSUE)
    await source.aclose()

    assert time.perf_counter() - started < 2


async def test_without_a_key_nothing_is_sent(fake_linear: FakeLinear) -> None:
    source = _source(fake_linear, api_key=None)

    with pytest.raises(SourceError, match="LINEAR_API_KEY is not set"):
        await source.fetch(_ISSUE)
    with pytest.raises(SourceError, match="LINEAR_API_KEY is not set"):
        await source.check_team("PAY")
    await source.aclose()

    assert fake_linear.requests == []


async def test_the_key_is_sent_as_linear_wants_it(
    fake_linear: FakeLinear,
) -> None:
    """Personal API keys go bare in `Authorization` (Bearer is for OAuth tokens)."""
    _add_payments(fake_linear)
    settings = Settings(linear_api_key=fake_linear.api_key, linear_api_url=fake_linear.api_url)
    source = LinearSource.from_settings(settings)

    await source.fetch(_ISSUE)
    await source.fetch(_TEAM)
    await source.aclose()

    assert [r.authorization for r in fake_linear.requests] == [fake_linear.api_key] * 2


async def test_check_team_accepts_a_readable_team_and_names_an_unknown_one(
    fake_linear: FakeLinear, source: LinearSource
) -> None:
    fake_linear.add_team("PAY", "Payments")

    await source.check_team("PAY")
    with pytest.raises(SourceError, match="Linear team OPS was not found"):
        await source.check_team("OPS")
