"""A request's lease, held while a process answers it.

The store grants it (`Store.claim_request`, `acquire`), renews it and takes it back
(`release`); while this process holds it, no other process resumes the request. Renewed every
third of a lease, a lease survives two failed renewals (a database blip); if it was lost anyway
(no renewal for a whole lease), another process may be answering, so this one stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

from bot.store import Store

log = structlog.get_logger(__name__)


@asynccontextmanager
async def held_lease(store: Store, request_id: str) -> AsyncIterator[None]:
    """Renew the request's lease while the body runs; cancel the body when it was lost to
    another process while the request is still unfinished."""
    answering = asyncio.current_task()
    assert answering is not None

    async def renew() -> None:
        while True:
            await asyncio.sleep(store.lease_seconds / 3)
            try:
                if await store.renew(request_id):
                    continue
                current = await store.get_request(request_id)
            except Exception:  # a database blip: the next renewal may well succeed
                log.warning("request.lease_renewal_failed", exc_info=True)
                continue
            if current is not None and current.state not in ("answered", "failed"):
                log.warning("request.lease_lost")
                answering.cancel()
            return

    renewing = asyncio.create_task(renew(), name=f"lease-{request_id}")
    try:
        yield
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
