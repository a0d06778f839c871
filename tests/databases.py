"""Database URLs for store tests: always SQLite; PostgreSQL too where one is reachable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_URL = os.environ.get(
    "OI_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


async def fresh_postgres_url() -> str:
    """An empty `public` schema on the test PostgreSQL, or a skip saying why there is none."""
    try:
        await empty_public_schema(POSTGRES_URL)
    except Exception as error:  # asyncpg raises its own types for refusals and auth
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {type(error).__name__}: {error}")
    return POSTGRES_URL


async def empty_public_schema(url: str) -> None:
    """Drop everything in the database's `public` schema: only ever on a scratch database."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'oi.sqlite3'}"
