"""Persistence: the only package that talks to the database."""

from bot.store.store import NewRequest, RequestRecord, Store, ThreadRecord

__all__ = ["NewRequest", "RequestRecord", "Store", "ThreadRecord"]
