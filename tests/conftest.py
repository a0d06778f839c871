"""Shared fixtures: the local vendor fakes, each started on loopback for one test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest

from bot.config import Settings
from tests.databases import fresh_postgres_url, sqlite_url
from tests.fakes.github_api import FakeGitHub
from tests.fakes.linear_api import FakeLinear
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tests.slack_bot import RunningBot, bot_settings, running_bot

_Fake = TypeVar("_Fake", FakeOpenAI, FakeSlack, FakeGitHub, FakeLinear)


def _running(server: _Fake) -> Iterator[_Fake]:
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    yield from _running(FakeOpenAI())


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    yield from _running(FakeSlack())


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    yield from _running(FakeGitHub())


@pytest.fixture
def fake_linear() -> Iterator[FakeLinear]:
    yield from _running(FakeLinear())


@pytest.fixture(autouse=True)
def _no_ambient_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """Tests see only the variables they set: no developer's real keys, no stray `.env`."""
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_MODEL",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "GITHUB_TOKEN",
        "LINEAR_API_KEY",
        "OI_PERSONAS_DIR",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "DATABASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Every store test runs on SQLite and, where one is reachable, on PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return await fresh_postgres_url()


@pytest.fixture
def settings_for(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    fake_github: FakeGitHub,
    fake_linear: FakeLinear,
    tmp_path,
) -> Callable[..., Settings]:
    """oi-bot's settings with every vendor on its local fake and a fresh SQLite store."""

    def make(**overrides: Any) -> Settings:
        return bot_settings(
            fake_slack=fake_slack,
            fake_openai=fake_openai,
            fake_github=fake_github,
            fake_linear=fake_linear,
            database_url=sqlite_url(tmp_path),
            **overrides,
        )

    return make


@pytest.fixture
async def slack_bot(
    settings_for: Callable[..., Settings], fake_slack: FakeSlack
) -> AsyncIterator[RunningBot]:
    """oi-bot in HTTP mode on a free port, every vendor on its local fake, SQLite store."""
    async with running_bot(settings_for(), fake_slack) as bot:
        yield bot
