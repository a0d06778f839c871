"""Run an aiohttp application on loopback in a background thread, for sync and async tests alike."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

_T = TypeVar("_T")


class RequestLog(list[_T]):
    """The requests a fake received, in order; tests wait for them without sleeping.

    A list, so tests index and compare it; `wait_for` blocks, so async tests call it through
    `asyncio.to_thread` while the bot runs on their loop.
    """

    def __init__(self) -> None:
        super().__init__()
        self._arrived = threading.Condition()

    def append(self, item: _T) -> None:
        with self._arrived:
            super().append(item)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[_T]:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self) >= count, timeout=timeout):
                raise AssertionError(f"{len(self)} requests after {timeout}s, not {count}")
            return list(self)


class ThreadedServer:
    """An aiohttp app served on 127.0.0.1 at a random port, on its own event loop and thread."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self.call(self._start)

    def stop(self, before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Stop serving; again (a test took the vendor down, then teardown) is a no-op."""
        if self._loop.is_closed():
            return
        if before is not None:
            self.call(before)
        self.call(self._stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def call(self, coroutine_function: Callable[[], Awaitable[None]]) -> None:
        """Run a coroutine on the server's loop and wait for it."""
        future = asyncio.run_coroutine_threadsafe(_wrap(coroutine_function), self._loop)
        future.result(timeout=10)

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def _wrap(coroutine_function: Callable[[], Awaitable[None]]) -> None:
    await coroutine_function()
