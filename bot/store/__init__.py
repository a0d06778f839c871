"""Persistence: the only package that talks to the database."""

from bot.store.store import LinkRecord, NewRequest, RequestRecord, Store, ThreadRecord

__all__ = ["LinkRecord", "NewRequest", "RequestRecord", "Store", "ThreadRecord"]
