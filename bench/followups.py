"""Follow-ups: what the 5th follow-up in a thread costs compared with the 1st.

One `@oi` question names a PR and a Linear ticket; five replies in its thread follow. For each
turn: the prompt the fake LLM received (tokens counted as the fake counts them, 4 characters a
token; the bot is billed the same figure as `usage.prompt_tokens`), how many earlier turns it
carried, whether the context was in it, and the GitHub and Linear requests the turn made. Answers
are scripted long (`--answer-chars`) so the history outgrows OI_HISTORY_TOKEN_BUDGET (6,000
tokens) within five turns. Expected: the history is trimmed to the budget (the first turn and the
newest that fit), the context is reused from the thread's cache, never fetched again.

    python -m bench.followups [--follow-ups 5] [--answer-chars 6000] [--json]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import (  # noqa: E402
    Latency,
    is_answer,
    link_in_channels,
    machine,
    parser,
    post,
    report,
    running,
    session,
    wait_until,
)
from bench.context import add_data  # noqa: E402
from tests.fakes import openai_api  # noqa: E402
from tests.fakes.openai_api import VALID_ANSWER  # noqa: E402
from tests.fakes.slack_requests import event_body  # noqa: E402
from tests.slack_bot import mention_event, message_event  # noqa: E402

CHANNEL = "CFOLLOW"
THREAD = "1700000100.000100"
FOLLOW_UPS = [
    "what if the provider times out after charging?",
    "how long should idempotency keys live?",
    "who should own the migration?",
    "what do we monitor after the rollout?",
    "summarise the plan in three steps",
]


def long_answer(turn: int, chars: int) -> dict:
    """A valid Answer about `chars` characters long (its rationale carries the length)."""
    line = f"Turn {turn}: retries replay writes unless the key makes them idempotent. "
    count = max(1, chars // len(line))
    return {**VALID_ANSWER, "rationale": [line] * count}


def prompt_tokens(request: dict) -> int:
    """As the fake LLM counts them (and bills the bot): characters / 4, plus one."""
    return sum(len(str(m.get("content") or "")) for m in request["messages"]) // 4 + 1


async def run(follow_ups: int, answer_chars: int, latency: Latency) -> list[dict]:
    with running(latency, OI_USER_RATE_PER_MINUTE=1000) as (fakes, bot):
        add_data(fakes.github, fakes.linear)
        for turn in range(follow_ups + 1):
            fakes.openai.script(openai_api.answer(long_answer(turn, answer_chars)))
        pr = f"{fakes.github.web_url}/acme/payments/pull/42"
        bodies = [
            event_body(
                mention_event(f"<@UBOT> review <{pr}> for PAY-1", ts=THREAD, channel=CHANNEL),
                event_id="EvF0",
            )
        ]
        for turn, text in enumerate(FOLLOW_UPS[:follow_ups], start=1):
            ts = f"1700000100.{100 + turn * 100:06d}"
            event = message_event(text, ts=ts, thread_ts=THREAD, channel=CHANNEL)
            bodies.append(event_body(event, event_id=f"EvF{turn}"))
        rows = []

        def answers() -> int:
            return sum(1 for call in fakes.slack.calls_to("chat.update") if is_answer(call))

        async with session() as client:
            await link_in_channels(client, bot.url, fakes, [CHANNEL], "linear PAY")
            for turn, body in enumerate(bodies):
                github_before, linear_before = (
                    len(fakes.github.requests),
                    len(fakes.linear.requests),
                )
                status, _, _ = await post(client, bot.url, body)
                assert status == 200, status
                if not await wait_until(lambda t=turn: answers() > t, timeout=60, every=0.05):
                    raise RuntimeError(f"turn {turn} was not answered")
                request = fakes.openai.requests[turn]
                messages = request["messages"]
                rows.append(
                    {
                        "turn": "question" if turn == 0 else f"follow-up {turn}",
                        "prompt tokens": prompt_tokens(request),
                        "messages": len(messages),
                        "earlier turns": turn,
                        "earlier turns sent": sum(1 for m in messages if m["role"] == "assistant"),
                        "context in prompt": any(
                            m["content"].startswith("Context gathered") for m in messages
                        ),
                        "GitHub requests": len(fakes.github.requests) - github_before,
                        "Linear requests": len(fakes.linear.requests) - linear_before,
                    }
                )
    return rows


async def main() -> None:
    command = parser(__doc__.splitlines()[0])
    command.add_argument("--follow-ups", type=int, default=5, choices=range(1, 6))
    command.add_argument("--answer-chars", type=int, default=6000)
    command.add_argument("--llm-latency", type=float, default=2.0)
    args = command.parse_args()
    rows = await run(args.follow_ups, args.answer_chars, Latency(llm=args.llm_latency))
    first, last = rows[1], rows[-1]
    history_budget = 6000
    targets = {
        "no context re-fetched on follow-ups": all(
            r["GitHub requests"] == 0 and r["Linear requests"] == 0 for r in rows[1:]
        ),
        "context reused in every follow-up": all(r["context in prompt"] for r in rows[1:]),
        "history trimmed (last follow-up sends fewer turns than the thread has)": (
            last["earlier turns sent"] < len(rows) - 1
        ),
    }
    report(
        f"Follow-ups in one thread (answers ~{args.answer_chars} characters)",
        rows,
        as_json=args.json,
        last_vs_first_follow_up=round(last["prompt tokens"] / first["prompt tokens"], 2),
        history_token_budget=history_budget,
        targets_met=targets,
        machine=machine(),
    )


if __name__ == "__main__":
    asyncio.run(main())
