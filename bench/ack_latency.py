"""Ack latency: request → HTTP 200 for `/oi` questions sent open-loop at fixed rates.

Each rate gets a fresh bot and fakes; questions are sent on a schedule (never waiting for earlier
responses), each from its own user and channel with its own trigger_id, while earlier questions
are being answered (LLM 2 s). Afterwards every question must have been answered once.
Targets: p99 < 100 ms at 100/s; no ack over 3 s (Slack's limit).

    python -m bench.ack_latency [--rates 20,100,200] [--seconds 30] [--json]
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import (  # noqa: E402
    QUESTION,
    Latency,
    answers_by_channel,
    channel_of,
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


async def one_rate(rate: float, seconds: float, latency: Latency) -> dict:
    count = round(rate * seconds)
    with running(
        latency,
        OI_USER_RATE_PER_MINUTE=1_000_000,
        OI_MAX_CONCURRENCY=5_000,
        OI_QUEUE_LIMIT=10_000,
    ) as (fakes, bot):
        async with session() as client:

            async def send(n: int) -> tuple[int, str, float]:
                return await post(client, bot.url, slash_question(n, QUESTION))

            results, late = await open_loop(rate, seconds, send)
            async with client.get(f"{bot.url}/metrics") as response:
                metrics = await response.text()
        channels = {channel_of(n) for n in range(count)}
        await wait_until(lambda: channels <= answers_by_channel(fakes).keys(), timeout=60)
        answered = answers_by_channel(fakes)
    seconds_taken = [elapsed for status, _, elapsed in results]
    ok = [s for s, body, _ in results if s == 200 and not body.strip()]
    refused = [body for s, body, _ in results if s == 200 and body.strip()]
    return {
        "rate/s": rate,
        "sent": len(results),
        "acked 200": len([r for r in results if r[0] == 200]),
        "refused": len(refused),
        "errors": len([r for r in results if r[0] != 200]),
        "p50 ms": ms(percentile(seconds_taken, 50)),
        "p99 ms": ms(percentile(seconds_taken, 99)),
        "max ms": ms(max(seconds_taken)),
        "over 3s": len([s for s in seconds_taken if s > 3]),
        "server ≤100ms %": _server_share_within(metrics, 0.1),
        "answered once": sum(1 for c in channels if len(answered.get(c, [])) == 1),
        "sender late ms": ms(late),
        "_ok": len(ok),
    }


def _server_share_within(metrics: str, bound: float) -> float:
    """Share of acks the bot itself timed (`oi_ack_seconds`) at or under `bound` seconds."""
    buckets = dict(re.findall(r'oi_ack_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)', metrics))
    total = float(buckets.get("+Inf", 0))
    within = float(buckets.get(str(bound), 0))
    return round(100 * within / total, 1) if total else float("nan")


async def main() -> None:
    command = parser(__doc__.splitlines()[0])
    command.add_argument("--rates", default="20,100,200", help="comma-separated requests/s")
    command.add_argument("--seconds", type=float, default=30, help="seconds per rate")
    command.add_argument("--llm-latency", type=float, default=2.0)
    args = command.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    rows = []
    for rate in rates:
        row = await one_rate(rate, args.seconds, Latency(llm=args.llm_latency))
        row.pop("_ok")
        rows.append(row)
        if not args.json:
            print(f"rate {rate:g}/s done: p99 {row['p99 ms']} ms", file=sys.stderr)
    at_100 = next((r for r in rows if r["rate/s"] == 100), None)
    targets = {
        "p99 < 100 ms at 100/s": None if at_100 is None else at_100["p99 ms"] < 100,
        "no ack over 3 s": all(r["over 3s"] == 0 and r["errors"] == 0 for r in rows),
    }
    report(
        f"Ack latency, {args.seconds:g} s per rate (client-side, request sent → HTTP 200)",
        rows,
        as_json=args.json,
        targets_met=targets,
        machine=machine(),
    )


if __name__ == "__main__":
    asyncio.run(main())
