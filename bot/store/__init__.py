"""Persistence: the only package that talks to the database."""

from bot.store.store import (
    LinkRecord,
    NewRequest,
    Quota,
    RateLimited,
    RequestRecord,
    Store,
    ThreadMemory,
    ThreadRecord,
)

__all__ = [
    "LinkRecord",
    "NewRequest",
    "Quota",
    "RateLimited",
    "RequestRecord",
    "Store",
    "ThreadMemory",
    "ThreadRecord",
]
