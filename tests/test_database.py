"""Where the store's transactions run: SQLite's own thread, in turn, claims first."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.store import Store
from bot.store.database import SQLiteDatabase, connect
from bot.store.tables import Claim
from tests.databases import sqlite_url

_WAIT = 10  # seconds: only ever reached when the thread is stuck, which fails the test


@pytest.fixture
async def database(tmp_path):
    await (await Store.open(sqlite_url(tmp_path))).close()  # the schema
    opened = connect(sqlite_url(tmp_path))
    assert isinstance(opened, SQLiteDatabase)
    yield opened
    await opened.close()


async def test_claims_go_before_the_work_already_waiting_and_cancelled_work_is_skipped(database):
    busy, go_on = threading.Event(), threading.Event()
    ran: list[str] = []

    def hold(_: Session) -> None:
        busy.set()
        go_on.wait(_WAIT)
        ran.append("held")

    def note(name: str):
        return lambda _: ran.append(name)

    held = asyncio.ensure_future(database.run(hold))
    assert await asyncio.to_thread(busy.wait, _WAIT)
    waiting = [
        asyncio.ensure_future(database.run(note("answer 1"))),
        asyncio.ensure_future(database.run(note("cancelled"))),
        asyncio.ensure_future(database.run(note("answer 2"))),
        asyncio.ensure_future(database.run(note("claims"), claims=True)),
    ]
    await asyncio.sleep(0)  # each task runs up to its wait: all four are queued, in this order
    waiting[1].cancel()
    go_on.set()
    await asyncio.gather(held, *waiting, return_exceptions=True)
    assert ran == ["held", "claims", "answer 1", "answer 2"]
    assert waiting[1].cancelled()


async def test_an_error_rolls_the_whole_transaction_back_and_reaches_the_caller(database):
    def half_done(session: Session) -> None:
        session.add(Claim(key="event:E1", claimed_at=datetime.now(UTC)))
        session.flush()
        raise LookupError("stopped half-way")

    with pytest.raises(LookupError, match="half-way"):
        await database.run(half_done)
    count = select(func.count()).select_from(Claim)
    assert await database.run(lambda session: session.scalar(count)) == 0


async def test_closing_runs_the_work_already_waiting_then_stops_the_thread(tmp_path):
    await (await Store.open(sqlite_url(tmp_path))).close()
    database = connect(sqlite_url(tmp_path))
    assert isinstance(database, SQLiteDatabase)
    written = asyncio.ensure_future(
        database.run(lambda session: session.add(Claim(key="k", claimed_at=datetime.now(UTC))))
    )
    await asyncio.sleep(0)  # queued before the close
    await database.close()
    await written
    assert not database._thread.is_alive()
    reopened = connect(sqlite_url(tmp_path))
    keys = await reopened.run(lambda session: list(session.scalars(select(Claim.key))))
    await reopened.close()
    assert keys == ["k"]


async def test_an_aiosqlite_url_of_earlier_releases_opens_the_same_file(tmp_path):
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'oi.sqlite3'}")
    assert await store.claim("event:E1") is True
    await store.close()
    store = await Store.open(sqlite_url(tmp_path))
    assert await store.claim("event:E1") is False
    await store.close()
