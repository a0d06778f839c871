"""Back-pressure: a cap on concurrent LLM calls with a bounded queue behind it.

Past the queue a question is refused at once (the user is told the bot is busy) instead of
waiting without end while memory grows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class BusyError(Exception):
    """Every slot is taken and the queue is full."""


class ConcurrencyLimit:
    """At most `max_running` holders at once, and at most `max_waiting` queued for a slot."""

    def __init__(self, *, max_running: int, max_waiting: int) -> None:
        self._slots = asyncio.Semaphore(max_running)
        self._max_waiting = max_waiting
        self._waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self._waiting >= self._max_waiting:
            raise BusyError
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
