"""The statements every question runs, shared by the store and its claim batcher."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update

from bot.store.tables import (
    ChannelLink,
    ContextCacheEntry,
    Request,
    RequestTransition,
    Thread,
    table,
)

# What every question runs, built once and run with its values: building and keying a statement,
# and the ORM's bookkeeping around it, took longer than SQLite takes to run it.
_requests, _threads, _links_table = table(Request), table(Thread), table(ChannelLink)
SET_REQUEST = update(_requests).where(_requests.c.id == bindparam("request_id"))
ADD_REQUESTS = insert(_requests)
ADD_TRANSITIONS = insert(table(RequestTransition))
ADD_CACHE_ENTRIES = insert(table(ContextCacheEntry))
THREAD = select(_threads).where(
    _threads.c.team_id == bindparam("team_id"),
    _threads.c.channel_id == bindparam("channel_id"),
    _threads.c.thread_ts == bindparam("thread_ts"),
)
LINKS = (
    select(_links_table.c.kind, _links_table.c.target)
    .where(
        _links_table.c.team_id == bindparam("team_id"),
        _links_table.c.channel_id == bindparam("channel_id"),
    )
    .order_by(_links_table.c.kind, _links_table.c.target)
)
