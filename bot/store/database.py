"""Where the store's transactions run: both SQLite and PostgreSQL from the event loop.

The store's work is plain synchronous SQLAlchemy, a function of a `Session` run as one
transaction. SQLite's driver is synchronous: through aiosqlite every statement was three or four
hops between its thread and a busy event loop (~40 a question), so one process answered about 17
questions a second; SQLite work now runs on the loop itself (see `SQLiteDatabase`). asyncpg
speaks to PostgreSQL from the event loop: there the same functions run through SQLAlchemy's
greenlet bridge (`AsyncSession.run_sync`), with a connection of its own for claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
Work = Callable[[Session], T]

_TIMEOUT_SECONDS = 30  # connecting, waiting for a pooled connection or SQLite's lock, a statement
# Pauses before trying a transaction again while another process holds SQLite's write lock.
_LOCKED_PAUSES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


class Database(ABC):
    """Runs the store's work, each call one transaction: committed, or rolled back on an error."""

    dialect: str

    @abstractmethod
    async def run(self, work: Work[T], *, claims: bool = False) -> T:
        """`claims`: work an ack waits for, which must not queue behind the answers' work."""

    @abstractmethod
    async def close(self) -> None: ...

    async def ping(self) -> bool:
        try:
            await self.run(lambda session: session.execute(text("SELECT 1")))
        except Exception:  # any failure to reach the database means "not ready"
            return False
        return True


def connect(database_url: str) -> Database:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return SQLiteDatabase(url)
    return ServerDatabase(url)


class SQLiteDatabase(Database):
    """One connection, used from the event loop itself, one transaction at a time.

    A transaction here is a fraction of a millisecond of work on a local file, less than handing
    it to a thread costs once the loop is busy: a thread waits for the GIL at every statement
    (up to 5 ms each). Only another process holding SQLite's write lock would make the loop
    wait, so the wait is not SQLite's own (which would block the loop): a locked transaction is
    rolled back and tried again after an asynchronous pause, for up to 30 seconds. Nothing
    queues for the connection, so claims need none of their own.
    """

    dialect = "sqlite"

    def __init__(self, url: URL) -> None:
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(
            url.set(drivername="sqlite"),  # `sqlite+aiosqlite://` URLs name the same file
            pool_size=1,
            max_overflow=0,
            connect_args={"timeout": 0},  # locked: say so at once, see `run`
            hide_parameters=True,  # see `_server_engine`
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    async def run(self, work: Work[T], *, claims: bool = False) -> T:
        pauses = itertools.chain(_LOCKED_PAUSES, itertools.repeat(_LOCKED_PAUSES[-1]))
        waited = 0.0
        while True:
            try:
                with self._sessions() as session, session.begin():
                    return work(session)
            except OperationalError as error:
                if not _locked(error) or waited >= _TIMEOUT_SECONDS:
                    raise
            pause = next(pauses)
            await asyncio.sleep(pause)
            waited += pause

    async def close(self) -> None:
        self.engine.dispose()


class ServerDatabase(Database):
    """PostgreSQL through asyncpg, with a connection of its own for claims."""

    def __init__(self, url: URL) -> None:
        self.dialect = url.get_backend_name()
        self.engine = _server_engine(url)
        self.claims_engine = _server_engine(url, connections=1)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._claim_sessions = async_sessionmaker(self.claims_engine, expire_on_commit=False)

    async def run(self, work: Work[T], *, claims: bool = False) -> T:
        sessions = self._claim_sessions if claims else self._sessions
        async with sessions() as session, session.begin():
            return await session.run_sync(work)

    async def close(self) -> None:
        await self.claims_engine.dispose()
        await self.engine.dispose()


def _server_engine(url: URL, *, connections: int | None = None) -> AsyncEngine:
    """An engine and its pool: `connections` at most (SQLAlchemy's default pool without)."""
    pool = {} if connections is None else {"pool_size": connections, "max_overflow": 0}
    # pre-ping replaces connections a database restart or a network drop killed; an error (or a
    # log line) names a failing statement but not its parameters: they hold people's questions
    return create_async_engine(
        url,
        **pool,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_timeout=_TIMEOUT_SECONDS,
        connect_args={"timeout": _TIMEOUT_SECONDS, "command_timeout": _TIMEOUT_SECONDS},
    )


def _locked(error: OperationalError) -> bool:
    """SQLite's "database is locked" (SQLITE_BUSY, and its extended codes)."""
    code = getattr(error.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    """WAL lets readers and the writer proceed together; foreign keys are off by default.

    `synchronous=NORMAL` (SQLite's advice for WAL) syncs to disk at checkpoints, not at every
    commit (about 1 ms each here, most of a question's store time): a crash of the process
    loses nothing, a power cut may lose the last commits. PostgreSQL is the durable choice.

    WAL is a property of the file: when several processes open a new database at once, one
    switches it and the others may find it locked meanwhile, which is fine.
    """
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    with contextlib.suppress(sqlite3.OperationalError):
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
