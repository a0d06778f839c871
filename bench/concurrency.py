"""Concurrency: 1,000 conversations in flight at once in one process (the LLM takes 10 s).

1,000 `/oi` questions, each in its own channel, are sent open-loop faster than the LLM answers,
so all of them wait on it together (the fake LLM counts how many it holds at once). Then: every
question answered exactly once (one question message, one placeholder, one answer, no failure),
and the bot's peak resident memory (VmHWM) under 400 MB.

    python -m bench.concurrency [--conversations 1000] [--llm-latency 10] [--json]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import (  # noqa: E402
    QUESTION,
    Latency,
    channel_of,
    is_answer,
    is_failure,
    machine,
    ms,
    open_loop,
    parser,
    percentile,
    post,
    report,
    running,
    session,
    slash_question,
    wait_until,
)


async def run(conversations: int, llm_latency: float, send_rate: float) -> dict:
    with running(
        Latency(llm=llm_latency),
        OI_USER_RATE_PER_MINUTE=1_000_000,
        OI_MAX_CONCURRENCY=conversations,
        OI_QUEUE_LIMIT=conversations,
        OI_REQUEST_DEADLINE_SECONDS=600,
    ) as (fakes, bot):
        idle = bot.memory_kb()
        started = time.perf_counter()
        async with session() as client:

            async def send(n: int) -> tuple[int, str, float]:
                return await post(client, bot.url, slash_question(n, QUESTION), timeout=30)

            results, _ = await open_loop(send_rate, conversations / send_rate, send)
        sent_in = time.perf_counter() - started

        def answered() -> int:
            return sum(1 for call in fakes.slack.calls_to("chat.update") if is_answer(call))

        await wait_until(lambda: answered() >= conversations, timeout=llm_latency + 240)
        all_answered_in = time.perf_counter() - started
        await asyncio.sleep(2)  # anything posted twice would show up by now
        memory = bot.memory_kb()
        calls = fakes.slack.calls
        peak_llm = fakes.openai.peak_in_flight
        llm_requests = len(fakes.openai.requests)
    answers = Counter(c.args["channel"] for c in calls if is_answer(c))
    failures = Counter(c.args["channel"] for c in calls if is_failure(c))
    posts = Counter(c.args["channel"] for c in calls if c.method == "chat.postMessage")
    channels = [channel_of(n) for n in range(conversations)]
    exactly_once = sum(
        1
        for c in channels
        if answers[c] == 1 and failures[c] == 0 and posts[c] == 2  # question + placeholder
    )
    acks = [elapsed for status, body, elapsed in results if status == 200 and not body.strip()]
    return {
        "conversations": conversations,
        "acked": len(acks),
        "ack p99 ms": ms(percentile(acks, 99)),
        "peak LLM calls in flight": peak_llm,
        "LLM requests": llm_requests,
        "answered exactly once": exactly_once,
        "lost": sum(1 for c in channels if answers[c] == 0),
        "duplicated": sum(1 for c in channels if answers[c] > 1),
        "failures shown": sum(failures.values()),
        "all acked in s": round(sent_in, 1),
        "all answered in s": round(all_answered_in, 1),
        "idle RSS MB": round(idle["VmRSS"] / 1024, 1),
        "peak RSS MB (VmHWM)": round(memory["VmHWM"] / 1024, 1),
    }


async def main() -> None:
    command = parser(__doc__.splitlines()[0])
    command.add_argument("--conversations", type=int, default=1000)
    command.add_argument("--llm-latency", type=float, default=10.0)
    command.add_argument("--send-rate", type=float, default=250, help="questions per second")
    args = command.parse_args()
    row = await run(args.conversations, args.llm_latency, args.send_rate)
    targets = {
        "all in flight at once": row["peak LLM calls in flight"] >= args.conversations,
        "all answered exactly once": row["answered exactly once"] == args.conversations,
        "peak RSS < 400 MB": row["peak RSS MB (VmHWM)"] < 400,
    }
    report(
        f"Concurrency: {args.conversations} conversations, LLM {args.llm_latency:g} s",
        [row],
        as_json=args.json,
        targets_met=targets,
        machine=machine(),
    )


if __name__ == "__main__":
    asyncio.run(main())
