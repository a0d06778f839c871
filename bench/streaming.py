"""Live answers: how soon the answer's first words reach Slack, and what one answer costs in calls.

Each question is an `@oi` mention naming a PR and a Linear ticket (so the stream shows steps), in
a channel where the ticket's team is linked. The fake model streams a long answer (`--answer-chars`)
over `--stream-seconds`, in OpenAI's server-sent events. Figures per answer:

- first words: from the moment the model's stream holds the answer's first whole word to the
  moment Slack receives a `markdown_text` chunk with it (target: under 500 ms);
- Slack calls on the answer's message: chat.startStream, chat.appendStream, chat.stopStream and
  the final chat.update (target: about 30 at most), and the assistant status calls beside them;
- the bot's CPU time for the question, which must not grow with the square of the answer's
  length (`--answer-chars 40000`: once the streamed draft is cut, later drafts are not rendered).

    python -m bench.streaming [--questions 5] [--stream-seconds 4] [--answer-chars 3000] [--json]
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import (  # noqa: E402
    Latency,
    is_answer,
    link_in_channels,
    machine,
    ms,
    parser,
    percentile,
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
from tests.slack_bot import mention_event  # noqa: E402

CHANNEL = "CSTREAM"
ON_THE_MESSAGE = ("chat.startStream", "chat.appendStream", "chat.stopStream", "chat.update")
FIRST_WORD = "Retries"


def _long_answer(chars: int) -> dict[str, Any]:
    line = "Retries replay writes unless an idempotency key makes them safe to repeat. "
    return {**VALID_ANSWER, "rationale": [line] * max(1, chars // len(line))}


def _first_words_at(content: str, pieces: list[str], chunk_times: list[float]) -> float:
    """When the stream first held the summary's first word and the space after it: the role
    chunk goes first, then one chunk per piece."""
    target = f'"summary": "{FIRST_WORD} '
    so_far = ""
    for index, piece in enumerate(pieces):
        so_far += piece
        if target in so_far:
            return chunk_times[index + 1]
    raise AssertionError(f"{target!r} is not in the streamed content {content[:80]!r}")


async def run(questions: int, stream_seconds: float, answer_chars: int) -> list[dict[str, Any]]:
    latency = Latency(llm=0.0)
    answer = _long_answer(answer_chars)
    content = json.dumps(answer)
    pieces = openai_api.stream_pieces(content)
    gap = stream_seconds / len(pieces)
    rows = []
    with running(latency, OI_SLACK_STREAMING="on", OI_USER_RATE_PER_MINUTE=1000) as (
        fakes,
        bot,
    ):
        add_data(fakes.github, fakes.linear)
        async with session() as client:
            await link_in_channels(client, bot.url, fakes, [CHANNEL], "linear PAY")
            pr = f"{fakes.github.web_url}/acme/payments/pull/42"
            for number in range(questions):
                fakes.openai.script(openai_api.spaced(openai_api.answer(answer), gap))
                sent_before = len(fakes.openai.requests)
                calls_before = len(fakes.slack.calls)
                cpu_before = bot.cpu_seconds()
                ts = f"1700001000.{number:06d}"
                event = mention_event(f"<@UBOT> review <{pr}> for PAY-1", ts=ts, channel=CHANNEL)
                body = event_body(event, event_id=f"EvS{number}")
                status, _, _ = await post(client, bot.url, body)
                assert status == 200, status
                done = await wait_until(
                    lambda since=calls_before: any(
                        is_answer(call) for call in fakes.slack.calls[since:]
                    ),
                    timeout=60,
                    every=0.05,
                )
                assert done and len(fakes.openai.requests) > sent_before, "not answered"
                row = _figures(fakes, calls_before, content, pieces, number)
                rows.append({**row, "bot CPU (ms)": ms(bot.cpu_seconds() - cpu_before)})
    return rows


def _figures(
    fakes: Any, calls_before: int, content: str, pieces: list[str], number: int
) -> dict[str, Any]:
    timed = fakes.slack.timed_calls()[calls_before:]
    first_text_at = next(
        at
        for at, call in timed
        if call.method in ("chat.startStream", "chat.appendStream")
        and FIRST_WORD in json.dumps(call.args.get("chunks") or [])
    )
    chunk_times = fakes.openai.chunk_times[-(len(pieces) + 3) :]
    produced_at = _first_words_at(content, pieces, chunk_times)
    on_message = [call for _, call in timed if call.method in ON_THE_MESSAGE]
    return {
        "question": number + 1,
        "first words (ms)": ms(first_text_at - produced_at),
        "calls on the message": len(on_message),
        "appends": sum(1 for c in on_message if c.method == "chat.appendStream"),
        "status calls": sum(1 for _, c in timed if c.method == "assistant.threads.setStatus"),
    }


async def main() -> None:
    command = parser(__doc__.splitlines()[0])
    command.add_argument("--questions", type=int, default=5)
    command.add_argument("--stream-seconds", type=float, default=4.0)
    command.add_argument("--answer-chars", type=int, default=3000)
    args = command.parse_args()
    rows = await run(args.questions, args.stream_seconds, args.answer_chars)
    first_words = [row["first words (ms)"] for row in rows]
    calls = [row["calls on the message"] for row in rows]
    report(
        f"Live answers ({args.answer_chars} characters streamed over {args.stream_seconds:g} s)",
        rows,
        as_json=args.json,
        first_words_p50_ms=percentile(first_words, 50),
        first_words_max_ms=max(first_words),
        calls_on_the_message_max=max(calls),
        bot_cpu_p50_ms=percentile([row["bot CPU (ms)"] for row in rows], 50),
        targets_met={
            "first words in Slack within 500 ms": max(first_words) < 500,
            "at most about 30 Slack calls on the message": max(calls) <= 30,
        },
        machine=machine(),
    )


if __name__ == "__main__":
    asyncio.run(main())
