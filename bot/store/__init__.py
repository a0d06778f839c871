"""Persistence: the only package that talks to the database."""

from bot.store.records import (
    LinkKind,
    LinkRecord,
    NewRequest,
    Quota,
    RateLimited,
    RequestKind,
    RequestRecord,
    RequestState,
    ThreadMemory,
    ThreadRecord,
    Vote,
)
from bot.store.store import Store

__all__ = [
    "LinkKind",
    "LinkRecord",
    "NewRequest",
    "Quota",
    "RateLimited",
    "RequestKind",
    "RequestRecord",
    "RequestState",
    "Store",
    "ThreadMemory",
    "ThreadRecord",
    "Vote",
]
