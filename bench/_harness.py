"""What every benchmark shares: the fakes with latency, one `oi-bot` process, signed requests,
an open-loop sender, percentiles and the table/JSON output.

The bot runs as a real process (`oi-bot` from this venv) with every vendor on a local fake
(loopback only) and a fresh SQLite store, configured through the same environment the fault
suite uses (tests/faults/harness.py), with production-like lease and LLM timeouts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench._fakes import SlowGitHub, SlowLinear, SlowOpenAI, TimedSlack
from tests.databases import empty_public_schema
from tests.fakes.slack_requests import signed_headers, slash_command_body
from tests.faults.harness import OI_BOT, BotProcess, environment
from tests.slack_bot import SIGNING_SECRET

# A scratch PostgreSQL database to run the bot on instead of SQLite; emptied before every start.
SCRATCH_POSTGRES_URL = "OI_BENCH_POSTGRES_URL"
TEAM = "T111"
BENCH_ADMIN = "WADMIN"
# The question the load benchmarks ask, with no references to read.
QUESTION = "review the retry design: we retry POST /charges 3 times on timeout"


def _database_url(folder: str) -> str:
    """A fresh SQLite file in `folder`, or the scratch PostgreSQL database, emptied."""
    url = os.environ.get(SCRATCH_POSTGRES_URL)
    if not url:
        return f"sqlite:///{folder}/oi.sqlite3"
    with ThreadPoolExecutor(1) as apart:  # the caller may be inside an event loop already
        apart.submit(asyncio.run, empty_public_schema(url)).result()
    return url


@dataclass(frozen=True)
class Latency:
    """Injected vendor latency, seconds."""

    llm: float = 2.0
    github: float = 0.15
    linear: float = 0.15
    slack: float = 0.0


class Fakes:
    """Slack, the LLM, GitHub and Linear on loopback, each with its latency."""

    def __init__(self, latency: Latency) -> None:
        self.latency = latency
        self.slack = TimedSlack(latency.slack)
        self.openai = SlowOpenAI(latency.llm)
        self.github = SlowGitHub(latency.github)
        self.linear = SlowLinear(latency.linear)

    def __enter__(self) -> Fakes:
        for fake in (self.slack, self.openai, self.github, self.linear):
            fake.start()
        return self

    def __exit__(self, *_: object) -> None:
        for fake in (self.linear, self.github, self.openai, self.slack):
            fake.stop()


# Production-like where the fault suite's settings are deliberately short.
BENCH_VARIABLES = {
    "OI_LEASE_SECONDS": "60",
    "OI_LLM_TIMEOUT_SECONDS": "60",
    "OI_CONTEXT_TIMEOUT_SECONDS": "15",
    "OI_SHUTDOWN_GRACE_SECONDS": "10",
    "LOG_LEVEL": "INFO",
    "OI_SLACK_STREAMING": "on",  # the default (the tests' settings turn it off)
}


@contextlib.contextmanager
def running(latency: Latency, **variables: Any) -> Iterator[tuple[Fakes, BotProcess]]:
    """Fakes and one `oi-bot` on them in a scratch folder (the fault suite's `BotProcess`),
    both stopped afterwards whatever happens. `keep_events` names the log events to keep;
    `OI_BENCH_BOT` runs another command instead of oi-bot (to compare a candidate fix)."""
    keep = variables.pop("keep_events", ())
    with Fakes(latency) as fakes, tempfile.TemporaryDirectory(prefix="oi-bench-") as folder:
        env = environment(fakes.slack, fakes.openai, fakes.github, fakes.linear)
        env.update(BENCH_VARIABLES)
        env["DATABASE_URL"] = _database_url(folder)
        env.update({name: str(value) for name, value in variables.items()})
        command = os.environ.get("OI_BENCH_BOT", str(OI_BOT)).split()
        bot = BotProcess(env, command=command, cwd=folder, keep_events=keep)
        try:
            bot.wait_started(timeout=60)
            yield fakes, bot
        finally:
            bot.stop_and_wait()


# --- requests


def slash_question(n: int, text: str, *, persona: str = "backend-engineer") -> str:
    """`/oi <persona> <text>` as question `n`: its own channel, user and trigger_id, so questions
    never share a thread or a rate limit, and every answer is found by its channel."""
    return slash_command_body(
        f"{persona} {text}",
        channel=channel_of(n),
        user=f"W{n:06d}",
        team=TEAM,
        trigger_id=f"bench.{n}.{time.time_ns()}",
    )


def channel_of(n: int) -> str:
    return f"CB{n:06d}"


async def link_in_channels(
    session: aiohttp.ClientSession, url: str, fakes: Any, channels: Sequence[str], link: str
) -> None:
    """`/oi link <link>` typed by an admin in each of `channels`, before measuring: a
    conversation reads Linear only where its team is linked. The channels are made private,
    so that no confirmation is asked."""
    fakes.slack.add_user(BENCH_ADMIN, is_admin=True)
    for channel in channels:
        fakes.slack.add_channel(channel, private=True)
    bodies = [
        slash_command_body(
            f"link {link}",
            channel=channel,
            user=BENCH_ADMIN,
            team=TEAM,
            response_url=fakes.slack.response_url(f"link/{channel}"),
        )
        for channel in channels
    ]
    await asyncio.gather(*(post(session, url, body) for body in bodies))
    linked = await wait_until(
        lambda: len(fakes.slack.calls_to("response_url")) >= len(channels), timeout=60
    )
    assert linked, "the links were not all made"


async def post(
    session: aiohttp.ClientSession, url: str, body: str, *, timeout: float = 10
) -> tuple[int, str, float]:
    """POST a signed body to /slack/events: (status, body, seconds to the response)."""
    headers = signed_headers(body, SIGNING_SECRET)
    started = time.perf_counter()
    try:
        async with session.post(
            f"{url}/slack/events",
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text()
            return response.status, text, time.perf_counter() - started
    except (TimeoutError, aiohttp.ClientError) as error:
        return 0, type(error).__name__, time.perf_counter() - started


async def open_loop(
    rate: float, seconds: float, send: Callable[[int], Awaitable[Any]]
) -> tuple[list[Any], float]:
    """Call `send(n)` on a fixed schedule, `rate` a second for `seconds`, without waiting for
    earlier calls; returns their results (in order) and the worst lateness against the schedule."""
    loop = asyncio.get_running_loop()
    count = max(1, round(rate * seconds))
    start = loop.time() + 0.05
    tasks = []
    late = 0.0
    for n in range(count):
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late = max(late, loop.time() - due)
        tasks.append(asyncio.create_task(send(n)))
    return list(await asyncio.gather(*tasks)), late


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


# --- what Slack shows


def is_answer(call: Any) -> bool:
    blocks = call.args.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return (
        call.method == "chat.update"
        and call.status == 200
        and call.error is None
        and bool(blocks)
        and blocks[0].get("type") == "header"
    )


def is_failure(call: Any) -> bool:
    return (
        call.method in ("chat.update", "chat.postMessage")
        and call.status == 200
        and "Try again" in json.dumps(call.args.get("blocks") or [])
    )


def answers_by_channel(fakes: Fakes) -> dict[str, list[float]]:
    """Channel → the times an answer replaced a placeholder there."""
    found: dict[str, list[float]] = {}
    for at, call in fakes.slack.timed_calls():
        if is_answer(call):
            found.setdefault(call.args["channel"], []).append(at)
    return found


async def wait_until(predicate: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(every)
    return predicate()


# --- figures and output


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def parser(description: str) -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(description=description)
    command.add_argument("--json", action="store_true", help="print the results as JSON")
    return command


def report(title: str, rows: list[dict[str, Any]], *, as_json: bool, **extra: Any) -> None:
    """A plain-text table (or JSON with --json) on stdout."""
    if as_json:
        print(json.dumps({"benchmark": title, "rows": rows, **extra}, indent=2))
        return
    print(f"\n{title}")
    if rows:
        columns = list(rows[0])
        cells = [[_cell(row.get(c)) for c in columns] for row in rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for row in cells:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    for name, value in extra.items():
        print(f"{name}: {_cell(value)}")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    memory = next(
        line.split(":", 1)[1].strip()
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "python": sys.version.split()[0],
    }
