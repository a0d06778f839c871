"""The store on SQLite and PostgreSQL: atomic claims, states, thread memory, feedback, schema."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import DBAPIError

from bot.context.models import Fetched
from bot.core.answer import Answer
from bot.core.conversation import ContextItem
from bot.store import LinkRecord, NewRequest, Quota, RateLimited, RequestRecord, Store
from bot.store.database import connect
from bot.store.tables import Base, Claim, Request, RequestTransition
from tests.fakes.openai_api import VALID_ANSWER

ANSWER = Answer.model_validate(VALID_ANSWER)


def _new(claim_key: str = "event:Ev1", **changes) -> NewRequest:
    fields = dict(
        claim_key=claim_key,
        kind="mention",
        team_id="T111",
        channel_id="C111",
        user_id="W111",
        thread_ts="1700000000.000100",
        persona="backend-engineer",
        question="Review the retry design.",
    )
    fields.update(changes)
    return NewRequest(**fields)


async def _count(store: Store, table: type) -> int:
    return await store._database.run(
        lambda session: session.scalar(select(func.count()).select_from(table))
    )


@pytest.fixture
async def store(database_url):
    opened = await Store.open(database_url)
    yield opened
    await opened.close()


async def test_migrations_match_the_tables(store):
    diff = await store._database.run(
        lambda session: compare_metadata(
            MigrationContext.configure(session.connection()), Base.metadata
        )
    )
    assert diff == []


async def test_opening_twice_migrates_once(database_url):
    first = await Store.open(database_url)
    await first.close()
    second = await Store.open(database_url)
    assert await second.ping()
    await second.close()


async def test_claim_is_exactly_once_even_when_concurrent(store):
    results = await asyncio.gather(*(store.claim_request(_new()) for _ in range(8)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].state == "received"
    assert await store.claim_request(_new()) is None
    assert await store.claim_request(_new("event:Ev2")) is not None


async def test_states_and_transitions_are_stored(store):
    request = await store.claim_request(_new())
    for state in ("gathering", "thinking"):
        await store.transition(request.id, state)
    await store.transition(request.id, "failed", detail="LLM timeout")
    record = await store.get_request(request.id)
    assert record.state == "failed" and record.error == "LLM timeout"
    states = await store._database.run(
        lambda session: session.scalars(
            select(RequestTransition.state)
            .where(RequestTransition.request_id == request.id)
            .order_by(RequestTransition.id)
        ).all()
    )
    assert states == ["received", "gathering", "thinking", "failed"]


async def test_reopen_failed_wins_once(store):
    request = await store.claim_request(_new())
    assert await store.reopen_failed(request.id) is None  # not failed: nothing to retry
    await store.transition(request.id, "failed", detail="boom")
    results = await asyncio.gather(*(store.reopen_failed(request.id) for _ in range(4)))
    reopened = [r for r in results if r is not None]
    assert len(reopened) == 1 and reopened[0].state == "received" and reopened[0].error is None


async def test_a_burst_of_claims_is_written_in_a_few_transactions(store):
    commits = []

    def count(_: object) -> None:
        commits.append(1)

    keys = [f"event:burst{n}" for n in range(200)]
    event.listen(Engine, "commit", count)  # every engine's, whichever runs the claims
    try:
        results = await asyncio.gather(
            *(store.claim_request(_new(key)) for key in keys + keys[:20])
        )
    finally:
        event.remove(Engine, "commit", count)
    records = [r for r in results if r is not None]
    assert sorted(r.claim_key for r in records) == sorted(keys)  # each once, retries refused
    assert len({r.id for r in records}) == 200
    assert len(commits) <= 5, "220 claims waiting together share a few transactions"
    stored = await asyncio.gather(*(store.get_request(r.id) for r in records[::37]))
    assert all(s is not None and s.state == "received" for s in stored)
    assert await _count(store, RequestTransition) == 200


async def test_a_failed_claim_batch_fails_every_ack_waiting_and_writes_nothing(store):
    await store._database.run(
        lambda session: session.execute(text("DROP TABLE request_transitions"))
    )
    results = await asyncio.gather(
        *(store.claim_request(_new(f"event:E{n}")) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(result, DBAPIError) for result in results)
    assert await _count(store, Claim) == 0
    assert await _count(store, Request) == 0


async def test_thread_ts_and_reply_ts(store):
    request = await store.claim_request(_new(thread_ts=None, kind="command"))
    memory = await store.open_thread(
        "T111", "C111", "1700000000.000200", "backend-engineer", request_id=request.id
    )
    await store.transition(request.id, "gathering", reply_ts="1700000000.000300")
    record = await store.get_request(request.id)
    assert (record.thread_ts, record.reply_ts) == ("1700000000.000200", "1700000000.000300")
    assert record.state == "gathering" and memory.thread.thread_ts == record.thread_ts


async def test_a_request_knows_when_it_was_asked_in_utc(store):
    before = datetime.now(UTC)
    request = await store.claim_request(_new())
    stored = await store.get_request(request.id)
    assert before <= request.created_at == stored.created_at <= datetime.now(UTC)


async def test_thread_memory_keeps_persona_and_turns_in_order(store):
    assert await store.find_thread("T111", "C111", "1.0") is None
    thread = (await store.open_thread("T111", "C111", "1.0", "backend-engineer")).thread
    again = (await store.open_thread("T111", "C111", "1.0", "someone-else")).thread
    assert again == thread and again.persona == "backend-engineer"
    assert await store.find_thread("T111", "C222", "1.0") is None
    for n in (1, 2):
        request = await store.claim_request(_new(f"event:Ev{n}", question=f"question {n}"))
        await store.record_answer(request, thread.id, ANSWER, day="2026-11-26", tokens=10)
    await store.record_answer(request, thread.id, ANSWER, day="2026-11-26", tokens=10)  # resumed
    history = (await store.open_thread("T111", "C111", "1.0", "backend-engineer")).history
    assert [turn.question for turn in history] == ["question 1", "question 2"]
    assert json.loads(history[0].answer.model_dump_json()) == VALID_ANSWER


async def test_feedback_latest_vote_wins(store):
    request = await store.claim_request(_new())
    await store.record_feedback(request.id, "W111", "up")
    await store.record_feedback(request.id, "W111", "down")
    await store.record_feedback(request.id, "W222", "up")
    assert await store.feedback(request.id) == {"W111": "down", "W222": "up"}


async def test_ping_is_false_when_the_database_is_unreachable():
    store = Store(connect("postgresql+asyncpg://nobody@127.0.0.1:9/none"))
    assert await store.ping() is False
    await store.close()


async def test_plain_claim_is_once(store):
    assert await store.claim("message:C1:1.0") is True
    assert await store.claim("message:C1:1.0") is False
    assert await store.claim_request(_new("message:C1:1.0")) is None


async def test_channel_default_persona(store):
    assert await store.channel_persona("T111", "C111") is None
    await store.set_channel_persona("T111", "C111", "backend-engineer")
    await store.set_channel_persona("T111", "C111", "sre")
    assert await store.channel_persona("T111", "C111") == "sre"
    assert await store.channel_persona("T111", "C222") is None


async def test_links_are_per_channel(store):
    repo = LinkRecord(kind="github", target="acme/payments")
    team = LinkRecord(kind="linear", target="PAY")
    assert await store.add_link("T111", "C111", repo, linked_by="W111") is True
    assert await store.add_link("T111", "C111", repo, linked_by="W222") is False
    assert await store.add_link("T111", "C111", team, linked_by="W111") is True
    assert await store.links("T111", "C111") == [repo, team]
    assert await store.links("T111", "C222") == []
    assert await store.remove_link("T111", "C111", repo) is True
    assert await store.remove_link("T111", "C111", repo) is False
    assert await store.links("T111", "C111") == [team]


async def test_context_cache_is_per_thread_and_keeps_order(store):
    thread = (await store.open_thread("T111", "C111", "1.0", "backend-engineer")).thread
    await store.add_link("T111", "C111", LinkRecord("github", "acme/infra"), linked_by="W111")
    other = await store.open_thread("T111", "C111", "2.0", "backend-engineer")
    readme = Fetched(ContextItem(source="https://x/readme", title="README", text="hi"), 3, "r1")
    tree = Fetched(ContextItem(source="https://x/tree", title="tree", text="src/"), 2, "r1")
    request = await store.claim_request(_new())
    gathered = {"github:acme/payments": [readme, tree]}
    await store.record_gathered_and_think(request.id, thread.id, gathered)
    memory = await store.open_thread("T111", "C111", "1.0", "backend-engineer")
    assert memory.cached == {"github:acme/payments": [readme, tree]}
    assert memory.links == other.links == [LinkRecord("github", "acme/infra")]
    assert (await store.open_thread("T111", "C111", "2.0", "backend-engineer")).cached == {}
    assert (await store.get_request(request.id)).state == "thinking"


@pytest.fixture
async def replica(database_url, store):
    """A second process's store on the same database, holding leases of its own."""
    other = await Store.open(database_url, owner="replica-2", lease_seconds=60)
    yield other
    await other.close()


async def test_a_live_lease_keeps_a_request_from_other_replicas(store, replica):
    request = await store.claim_request(_new())
    assert request.attempts == 1
    assert await replica.acquire(request.id) is None
    assert await replica.renew(request.id) is False
    assert await store.renew(request.id) is True
    assert await store.resumable() == []


async def test_an_expired_or_released_lease_is_resumed_once(database_url, replica):
    dead = await Store.open(database_url, owner="dead", lease_seconds=-1)  # never renewed
    request = await dead.claim_request(_new())
    assert await replica.resumable() == [request.id]
    taken = await asyncio.gather(*(replica.acquire(request.id) for _ in range(3)))
    [resumed] = [r for r in taken if r is not None]
    assert (resumed.attempts, resumed.interruptions) == (1, 1)  # it had not started: no blame
    await replica.release(request.id)
    assert await replica.resumable() == [request.id]
    await dead.close()


async def _thread_id(store: Store) -> int:
    return (await store.open_thread("T111", "C111", "1.0", "backend-engineer")).thread.id


async def _died_while(dead: Store, request_id: str, step: str) -> None:
    """Bring a request `dead` holds to `step`, where its process then dies (its lease never
    renewed) or, for the two hand-backs, gives it back."""
    if step in ("gathering", "thinking", "finishing"):
        await dead.transition(request_id, "gathering", reply_ts="1.1")
    if step in ("thinking", "finishing"):
        await dead.record_gathered_and_think(request_id, await _thread_id(dead), {})
    if step == "finishing":
        request = await dead.get_request(request_id)
        thread_id = await _thread_id(dead)
        await dead.record_answer(request, thread_id, ANSWER, day="2026-01-01", tokens=0)
    if step == "handed back at shutdown":
        await dead.release(request_id)
    if step == "handed back failed":
        await dead.release(request_id, failed=True)


@pytest.mark.parametrize(
    ("step", "attempts", "interruptions"),
    [
        ("received", 1, 1),  # waiting for its turn to start
        ("gathering", 2, 0),  # reading what it refers to: its own work
        ("thinking", 1, 1),  # waiting for a concurrency slot, or on the model
        ("finishing", 2, 0),  # turning the model's reply into messages
        ("handed back at shutdown", 1, 0),
        ("handed back failed", 2, 0),
    ],
)
async def test_an_attempt_counts_only_when_the_request_was_at_risk(
    database_url, replica, step, attempts, interruptions
):
    dead = await Store.open(database_url, owner="dead", lease_seconds=-1)
    request = await dead.claim_request(_new())
    await _died_while(dead, request.id, step)
    resumed = await replica.acquire(request.id)
    assert (resumed.attempts, resumed.interruptions) == (attempts, interruptions)
    await replica.release(request.id)
    again = await dead.acquire(request.id)
    assert (again.attempts, again.interruptions) == (attempts, interruptions)  # counted once
    await dead.close()


async def test_a_healthy_request_keeps_its_attempts_while_one_at_risk_uses_them_up(
    database_url,
):
    """Ten crashes in a row: the request waiting on the model is never blamed; the one being
    read each time is, once per crash."""
    dead = await Store.open(database_url, owner="dead", lease_seconds=-1)
    waiting = await dead.claim_request(_new("event:waiting"))
    culprit = await dead.claim_request(_new("event:culprit"))
    for _ in range(10):
        await _died_while(dead, waiting.id, "thinking")
        await _died_while(dead, culprit.id, "gathering")
        waiting, culprit = await dead.acquire(waiting.id), await dead.acquire(culprit.id)
    assert (waiting.attempts, waiting.interruptions) == (1, 10)
    assert (culprit.attempts, culprit.interruptions) == (11, 0)
    await dead.close()


async def test_finished_requests_are_never_resumed(store):
    for n, state in enumerate(("answered", "failed")):
        request = await store.claim_request(_new(f"event:E{n}"))
        await store.release(request.id)
        await store.transition(request.id, state)
        assert await store.acquire(request.id) is None
    assert await store.resumable() == []


async def test_continuations_are_remembered(store):
    request = await store.claim_request(_new())
    await store.set_continuation_ts(request.id, ["1.1", "1.2"])
    assert (await store.get_request(request.id)).continuation_ts == ("1.1", "1.2")


async def test_a_burst_past_the_rate_is_refused_exactly(database_url, store, replica):
    # SQLite serves one process; PostgreSQL serializes authors across replicas too
    stores = [store] if database_url.startswith("sqlite") else [store, replica]
    claims = [
        stores[n % len(stores)].claim_request(_new(f"event:E{n}"), quota=_RATE_ONLY)
        for n in range(10)
    ]
    results = await asyncio.gather(*claims, return_exceptions=True)
    assert sum(isinstance(r, RequestRecord) for r in results) == 3
    assert sum(isinstance(r, RateLimited) for r in results) == 7
    other = await store.claim_request(_new("event:other", user_id="W999"), quota=_RATE_ONLY)
    assert other is not None


_RATE_ONLY = Quota(per_minute=3, in_flight=100)


async def test_questions_being_answered_are_capped_per_person(store):
    quota = Quota(per_minute=100, in_flight=2)
    first = await store.claim_request(_new("event:A"), quota=quota)
    await store.claim_request(_new("event:B"), quota=quota)
    with pytest.raises(RateLimited) as refused:
        await store.claim_request(_new("event:C"), quota=quota)
    assert refused.value.busy and refused.value.in_flight == 2
    await store.transition(first.id, "answered")
    assert await store.claim_request(_new("event:C"), quota=quota) is not None


async def test_a_retry_counts_toward_its_askers_rate(store):
    quota = Quota(per_minute=2, in_flight=100)
    failed = await store.claim_request(_new("event:A"), quota=quota)
    await store.transition(failed.id, "failed", detail="boom")
    await store.claim_request(_new("event:B"), quota=quota)
    with pytest.raises(RateLimited) as refused:
        await store.reopen_failed(failed.id, quota=quota)
    assert not refused.value.busy and refused.value.asked == 2
    assert (await store.get_request(failed.id)).state == "failed"  # nothing changed


async def test_reservations_never_pass_a_spent_budget_together(store, replica):
    reservations = await asyncio.gather(
        *(s.reserve_tokens("T111", "2026-11-26", 400, budget=1000) for s in [store, replica] * 5)
    )
    assert sum(reservations) == 3  # 0, 400, 800 were under 1,000; 1,200 is not
    await store.add_tokens("T111", "2026-11-26", -400)
    assert await store.tokens_used("T111", "2026-11-26") == 800


async def _answered(store, thread, n: int, tokens: int, day: str = "2026-11-26") -> None:
    request = await store.claim_request(_new(f"event:tokens{n}"))
    await store.record_answer(request, thread.id, ANSWER, day=day, tokens=tokens)


async def test_daily_tokens(store):
    thread = (await store.open_thread("T111", "C111", "1.0", "backend-engineer")).thread
    await _answered(store, thread, 1, 100)
    await _answered(store, thread, 2, 50)
    await _answered(store, thread, 3, 7, day="2026-11-25")
    assert await store.tokens_used("T111", "2026-11-26") == 150
    assert await store.tokens_used("T111", "2026-11-27") == 0


async def test_concurrent_token_counts_never_collide(store, replica):
    thread = (await store.open_thread("T111", "C111", "1.0", "backend-engineer")).thread
    await asyncio.gather(*(_answered(s, thread, n, 10) for n, s in enumerate([store, replica] * 5)))
    assert await store.tokens_used("T111", "2026-11-26") == 100


async def test_replicas_starting_together_migrate_once(database_url):
    stores = await asyncio.gather(*(Store.open(database_url) for _ in range(3)))
    assert all([await store.ping() for store in stores])
    for store in stores:
        await store.close()
