"""A small cache of answers that change rarely and are asked for in bursts (who a Slack user
is, whether a repository is private): each kept for `ttl_seconds`, the oldest dropped past
`max_entries` so that memory stays bounded whatever is asked."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

_T = TypeVar("_T")


class TimedCache(Generic[_T]):
    """Answers by key; a look-up that raises caches nothing, so it is asked again next time."""

    def __init__(self, *, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl_seconds = ttl_seconds
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, _T]] = OrderedDict()

    async def get(self, key: str, look_up: Callable[[], Awaitable[_T]]) -> _T:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self._ttl_seconds:
            return entry[1]
        value = await look_up()
        self._entries[key] = (now, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return value
