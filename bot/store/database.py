"""Where the store's transactions run: SQLite in a thread of its own, PostgreSQL on the event loop.

The store's work is plain synchronous SQLAlchemy, a function of a `Session` run as one
transaction. SQLite's driver is synchronous: through aiosqlite every statement was three or four
hops between its thread and a busy event loop (~40 a question), so one process answered about 17
questions a second. Here a whole transaction is one hop, to the thread that owns the one
connection (SQLite writes one transaction at a time anyway), and claims go first, since every ack
waits for its claim. asyncpg speaks to PostgreSQL from the event loop itself: there the same
functions run through SQLAlchemy's greenlet bridge (`AsyncSession.run_sync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
Work = Callable[[Session], T]

_TIMEOUT_SECONDS = 30  # connecting, waiting for a pooled connection or SQLite's lock, a statement
_CLAIMS, _OTHERS, _CLOSING = 0, 1, 2  # the SQLite thread's order of work


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
    """One connection, owned by one thread that runs the transactions in turn, claims first."""

    dialect = "sqlite"

    def __init__(self, url: URL) -> None:
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(
            url.set(drivername="sqlite"),  # `sqlite+aiosqlite://` URLs name the same file
            pool_size=1,
            max_overflow=0,
            connect_args={"timeout": _TIMEOUT_SECONDS},
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._work: queue.PriorityQueue[tuple[int, int, Work[Any] | None, Future[Any] | None]]
        self._work = queue.PriorityQueue()
        self._order = itertools.count()  # first come, first served within a priority
        self._thread = threading.Thread(target=self._serve, name="oi-sqlite", daemon=True)
        self._thread.start()

    async def run(self, work: Work[T], *, claims: bool = False) -> T:
        done: Future[T] = Future()
        self._work.put((_CLAIMS if claims else _OTHERS, next(self._order), work, done))
        # Cancelled before its turn, the work is skipped; once started, it runs to its end.
        return await asyncio.wrap_future(done)

    async def close(self) -> None:
        """After the work already waiting; the connection is closed by the thread that owns it."""
        self._work.put((_CLOSING, next(self._order), None, None))
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        while True:
            _, _, work, done = self._work.get()
            if work is None or done is None:
                break
            if not done.set_running_or_notify_cancel():
                continue
            try:
                with self._sessions() as session, session.begin():
                    result = work(session)
            except BaseException as error:  # delivered to the caller, as if raised there
                done.set_exception(error)
            else:
                done.set_result(result)
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
    # pre-ping replaces connections a database restart or a network drop killed
    return create_async_engine(
        url,
        **pool,
        pool_pre_ping=True,
        pool_timeout=_TIMEOUT_SECONDS,
        connect_args={"timeout": _TIMEOUT_SECONDS, "command_timeout": _TIMEOUT_SECONDS},
    )


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    """WAL lets readers and the writer proceed together; foreign keys are off by default.

    `synchronous=NORMAL` (SQLite's advice for WAL) syncs to disk at checkpoints, not at every
    commit (about 1 ms each here, most of a question's store time): a crash of the process
    loses nothing, a power cut may lose the last commits. PostgreSQL is the durable choice.

    WAL is a property of the file: when several processes open a new database at once, one
    switches it and the others may find it locked meanwhile, which is fine.
    """
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_TIMEOUT_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    with contextlib.suppress(sqlite3.OperationalError):
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
