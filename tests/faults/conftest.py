"""Fixtures of the fault tests: a factory of `oi-bot` processes wired to this test's fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.github_api import FakeGitHub
from tests.fakes.linear_api import FakeLinear
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tests.faults.harness import Bots, environment


@pytest.fixture
def bots(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, fake_github: FakeGitHub, fake_linear: FakeLinear
) -> Iterator[Bots]:
    """Start `oi-bot` processes with `bots.start(database_url)`; none outlives the test, and a
    failing test shows their logs (printed at teardown, which pytest shows only on failure)."""
    started = Bots(environment(fake_slack, fake_openai, fake_github, fake_linear))
    yield started
    started.kill_all()
    for number, process in enumerate(started.started):
        print(f"--- oi-bot #{number} (exit {process.returncode}) ---\n{process}")
