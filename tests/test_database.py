"""Where the store's transactions run: SQLite from the event loop, waiting out other processes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.store import Store
from bot.store.database import SQLiteDatabase, connect
from bot.store.tables import Claim
from tests.databases import sqlite_url


@pytest.fixture
async def database(tmp_path):
    await (await Store.open(sqlite_url(tmp_path))).close()  # the schema
    opened = connect(sqlite_url(tmp_path))
    assert isinstance(opened, SQLiteDatabase)
    yield opened
    await opened.close()


async def test_a_write_waits_for_another_process_holding_the_lock_without_blocking_the_loop(
    database, tmp_path
):
    other_process = sqlite3.connect(tmp_path / "oi.sqlite3", isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")  # SQLite's write lock, held
    claimed = asyncio.ensure_future(database.run(_claim("event:E1")))
    await asyncio.sleep(0)  # the first try ran: locked, so it waits, and the loop goes on
    assert not claimed.done()
    other_process.execute("COMMIT")
    other_process.close()
    await claimed
    assert await database.run(_keys) == ["event:E1"]


async def test_an_error_rolls_the_whole_transaction_back_and_reaches_the_caller(database):
    def half_done(session: Session) -> None:
        _claim("event:E1")(session)
        session.flush()
        raise LookupError("stopped half-way")

    with pytest.raises(LookupError, match="half-way"):
        await database.run(half_done)
    assert await database.run(_keys) == []


async def test_an_aiosqlite_url_of_earlier_releases_opens_the_same_file(tmp_path):
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'oi.sqlite3'}")
    assert await store.claim("event:E1") is True
    await store.close()
    store = await Store.open(sqlite_url(tmp_path))
    assert await store.claim("event:E1") is False
    await store.close()


def _claim(key: str) -> Callable[[Session], None]:
    return lambda session: session.add(Claim(key=key, claimed_at=datetime.now(UTC)))


def _keys(session: Session) -> list[str]:
    return list(session.scalars(select(Claim.key)))
