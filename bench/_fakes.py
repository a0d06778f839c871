"""The test fakes with vendor latency, for benchmarks only (the tests' fakes are unchanged).

Each fake gets an aiohttp middleware that sleeps `latency` seconds before answering, which is
how a remote vendor looks from the bot; the fake then behaves exactly as in the tests. The Slack
fake also timestamps every call it records (`perf_counter`, the clock the benches send with), so
"the answer landed in Slack" has a time, and the LLM fake counts how many requests it holds at
once, and when each chunk of a streamed answer went out.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from aiohttp import web

from tests.fakes.github_api import FakeGitHub
from tests.fakes.linear_api import FakeLinear
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack


def _add_latency(fake: Any, latency: float) -> None:
    """Sleep `latency` seconds in front of every request the fake serves (before it starts)."""

    @web.middleware
    async def slow(request: web.Request, handler: Any) -> web.StreamResponse:
        if latency > 0:
            await asyncio.sleep(latency)
        return await handler(request)

    fake._server._app.middlewares.insert(0, slow)


class SlowOpenAI(FakeOpenAI):
    """The LLM fake answering after `latency` seconds; `peak_in_flight` is the most it held."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0

        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            with self._lock:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                return await handler(request)
            finally:
                with self._lock:
                    self.in_flight -= 1

        _add_latency(self, latency)
        self._server._app.middlewares.insert(0, count)  # outermost: the latency counts as held
        self.chunk_times: list[float] = []  # when each streamed chunk went out, in order

    async def _pace(self, scripted: Any, *, due: float) -> None:
        await super()._pace(scripted, due=due)
        self.chunk_times.append(time.perf_counter())


class SlowGitHub(FakeGitHub):
    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency
        _add_latency(self, latency)


class SlowLinear(FakeLinear):
    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency
        _add_latency(self, latency)


class TimedSlack(FakeSlack):
    """FakeSlack whose `call_times[i]` is when `calls[i]` was recorded (`time.perf_counter()`)."""

    def __init__(self, latency: float = 0.0) -> None:
        super().__init__()
        self.call_times: list[float] = []
        _add_latency(self, latency)

    def _record(self, method: str, args: dict[str, Any], request: web.Request, reply: Any) -> None:
        super()._record(method, args, request, reply)  # under the fake's lock: indices align
        self.call_times.append(time.perf_counter())

    def timed_calls(self) -> list[tuple[float, Any]]:
        with self._condition:
            return list(zip(self.call_times, self._calls, strict=True))
