"""Overhead: request → the answer landing in Slack, minus the vendor latency injected on the path.

Questions are `/oi` commands sent at a modest rate; "landed" is the fake Slack recording the
chat.update that replaces the placeholder with the answer. Subtracted: the LLM's latency (2 s) and,
for the questions that name a Linear ticket, that one read (150 ms). What is left is the bot's own
time: signature check, claim, ack, posting the question and placeholder, the store's writes, the
prompt, parsing the answer, rendering it. Targets: p50 < 30 ms, p99 < 150 ms.

    python -m bench.overhead [--questions 200] [--rate 5] [--json]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import (  # noqa: E402
    QUESTION,
    Latency,
    answers_by_channel,
    channel_of,
    link_in_channels,
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

SCENARIOS = {
    # name: (question, vendor reads on the critical path besides the LLM: (vendor, count))
    "no references": (QUESTION, ()),
    "one Linear ticket": ("is PAY-1 safe to ship with retries on POST /charges?", (("linear", 1),)),
}


async def scenario(name: str, questions: int, rate: float, latency: Latency) -> dict:
    text, reads = SCENARIOS[name]
    injected = latency.llm + sum(getattr(latency, vendor) * n for vendor, n in reads)
    with running(latency, OI_USER_RATE_PER_MINUTE=1_000_000) as (fakes, bot):
        fakes.linear.add_team("PAY", "Payments")
        fakes.linear.add_issue("PAY-1", title="Duplicate charges", description="Seen on timeouts.")
        sent_at: dict[int, float] = {}
        async with session() as client:
            if reads:
                channels = [channel_of(n) for n in range(questions)]
                await link_in_channels(client, bot.url, fakes, channels, "linear PAY")
            linking_reads = len(fakes.linear.requests)

            async def send(n: int) -> tuple[int, str, float]:
                sent_at[n] = time.perf_counter()
                return await post(client, bot.url, slash_question(n, text))

            results, _ = await open_loop(rate, questions / rate, send)
        channels = {channel_of(n): n for n in range(questions)}
        await wait_until(lambda: channels.keys() <= answers_by_channel(fakes).keys(), timeout=60)
        answered = answers_by_channel(fakes)
        reads_seen = len(fakes.linear.requests) - linking_reads
    overheads = [
        answered[channel][0] - sent_at[n] - injected
        for channel, n in channels.items()
        if answered.get(channel)
    ]
    return {
        "scenario": name,
        "questions": questions,
        "answered": len(overheads),
        "subtracted ms": ms(injected),
        "p50 ms": ms(percentile(overheads, 50)),
        "p99 ms": ms(percentile(overheads, 99)),
        "max ms": ms(max(overheads)) if overheads else float("nan"),
        "min ms": ms(min(overheads)) if overheads else float("nan"),
        "acks not 200": len([r for r in results if r[0] != 200 or r[1].strip()]),
        "linear reads": reads_seen,
    }


async def main() -> None:
    command = parser(__doc__.splitlines()[0])
    command.add_argument("--questions", type=int, default=200, help="questions per scenario")
    command.add_argument("--rate", type=float, default=5, help="questions per second")
    command.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    args = command.parse_args()
    rows = []
    for name in args.scenarios.split(","):
        rows.append(await scenario(name, args.questions, args.rate, Latency()))
    targets = {
        "p50 < 30 ms": all(r["p50 ms"] < 30 for r in rows),
        "p99 < 150 ms": all(r["p99 ms"] < 150 for r in rows),
    }
    report(
        f"Overhead at {args.rate:g} questions/s (end to end minus injected vendor latency)",
        rows,
        as_json=args.json,
        targets_met=targets,
        machine=machine(),
    )


if __name__ == "__main__":
    asyncio.run(main())
