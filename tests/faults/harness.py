"""`oi-bot` as real processes against the local vendors, and what Slack received from them.

A process gets every vendor on its local fake (nothing else is reachable), a free port that it
names in its own `server.started` log line, and a short lease, so a killed process's work is free
for another within seconds. Its JSON log is read line by line on a thread: a chatty process never
blocks on a full pipe, and a test can wait for an event the process logs instead of sleeping.

"Exactly once" is read from the fake Slack: per question, one placeholder in its thread, replaced
by one answer (or one failure message), and nothing else posted there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.slack.render import RETRY_ACTION
from tests.databases import POSTGRES_URL
from tests.fakes.github_api import FakeGitHub
from tests.fakes.linear_api import FakeLinear
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack, SlackCall
from tests.fakes.slack_requests import block_actions_body, event_body, signed_headers
from tests.slack_bot import SIGNING_SECRET, bot_settings, mention_event

OI_BOT = Path(sys.executable).with_name("oi-bot")
CHANNEL, USER = "C111", "W111"  # where and by whom `mention_event` asks
LEASE_SECONDS = 2  # renewed every ⅔ s; a dead process's requests are resumed within ~3 s
SLOW = 30.0  # seconds for waits that span a lease running out or another process starting
_TAIL_LINES = 80  # of a process's log, shown when a wait for it fails


def environment(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, fake_github: FakeGitHub, fake_linear: FakeLinear
) -> dict[str, str]:
    """The in-process tests' settings (every vendor on its fake, no LLM retries: one scripted
    reply is one call) as oi-bot's variables, with JSON logs and the short lease; none of the
    developer's own vendor or `OI_*` variables get through."""
    settings = bot_settings(
        fake_slack=fake_slack,
        fake_openai=fake_openai,
        fake_github=fake_github,
        fake_linear=fake_linear,
        database_url="",  # each start names its own
        log_format="json",
        oi_lease_seconds=LEASE_SECONDS,
    )
    vendors = ("SLACK_", "OPENAI_", "GITHUB_", "LINEAR_", "OI_", "DATABASE_URL", "LOG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(vendors)}
    for name, value in settings.model_dump(exclude_none=True).items():
        env[name.upper()] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env


class BotProcess:
    """One running `oi-bot` (the fault suite's, `tests/test_server.py`'s and the benchmarks'):
    `wait_started` reads its port from its `server.started` line.

    `command` runs another build in its place (the benchmarks compare one); `keep_events`, when
    given, keeps only those events of the log (a loaded bot logs thousands of lines, and
    parsing each costs the benchmark's CPU); the last lines are kept whole for error messages.
    """

    def __init__(
        self,
        env: dict[str, str],
        *,
        command: Sequence[str] = (str(OI_BOT),),
        cwd: str | None = None,
        keep_events: Collection[str] | None = None,
    ) -> None:
        self._popen = subprocess.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._keep = None if keep_events is None else ("server.started", *keep_events)
        self._condition = threading.Condition()
        self._lines: deque[str] = deque(maxlen=_TAIL_LINES)
        self._events: list[dict[str, Any]] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0

    def wait_started(self, timeout: float = SLOW) -> None:
        [started] = self.wait_for_log("server.started", timeout=timeout)
        self.port = int(started["port"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def memory_kb(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak resident set) from /proc/<pid>/status, in kB."""
        values = {}
        for line in Path(f"/proc/{self._popen.pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
        return values

    def cpu_seconds(self) -> float:
        """User and system CPU time the process has used, from /proc/<pid>/stat."""
        fields = Path(f"/proc/{self._popen.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every JSON line the process has logged so far."""
        with self._condition:
            return list(self._events)

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.events if line.get("event") == event]

    def wait_for_log(self, event: str, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        """The process's log lines for `event`, once it has logged `count` of them."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._closed or len(self.logged(event)) >= count, timeout=timeout
            )
        found = self.logged(event)
        if len(found) < count:
            raise AssertionError(f"oi-bot logged {event!r} {len(found)}× (not {count}):\n{self}")
        return found

    async def send(self, body: str, *, retry: int | None = None) -> int:
        """POST `body` to /slack/events signed as Slack signs it (as Slack's retry `retry`)."""
        headers = signed_headers(body, SIGNING_SECRET)
        if retry is not None:
            headers.update(
                {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
            )
        url = f"{self.url}/slack/events"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=headers) as response,
        ):
            return response.status

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def terminate(self) -> None:
        self._popen.send_signal(signal.SIGTERM)

    async def exited(self, timeout: float = SLOW) -> int:
        return await asyncio.to_thread(self._popen.wait, timeout)

    async def stop(self) -> int:
        """SIGTERM, then its exit code once the work in flight has drained."""
        self.terminate()
        return await self.exited()

    def stop_and_wait(self, timeout: float = 60) -> int:
        """`stop` for code without an event loop; killed if it has not drained by `timeout`."""
        if self._popen.poll() is None:
            self.terminate()
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(timeout=10)
        return self._popen.returncode

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease handed back, as in a crash or an OOM kill."""
        if self._popen.poll() is None:
            self._popen.kill()
        self._popen.wait(timeout=10)
        self._reader.join(timeout=10)

    def __str__(self) -> str:
        with self._condition:
            return "".join(self._lines)

    def _read(self) -> None:
        assert self._popen.stderr is not None
        for line in self._popen.stderr:
            event = None
            if line.startswith("{") and (
                self._keep is None or any(f'"{name}"' in line for name in self._keep)
            ):
                with contextlib.suppress(ValueError):  # a stray print is no log line
                    event = json.loads(line)
            with self._condition:
                self._lines.append(line)
                if event is not None:
                    self._events.append(event)
                self._condition.notify_all()
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class Bots:
    """Starts processes sharing one set of fakes; whatever still runs is killed at teardown."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self.started: list[BotProcess] = []

    def start(self, database_url: str, count: int = 1, **variables: str) -> list[BotProcess]:
        """`count` processes on one database (`variables` override the environment), one after
        the other: replicas migrating a fresh database at the same moment race each other."""
        processes = []
        for _ in range(count):
            process = BotProcess({**self._env, "DATABASE_URL": database_url, **variables})
            self.started.append(process)
            process.wait_started()
            processes.append(process)
        return processes

    def kill_all(self) -> None:
        for process in self.started:
            process.kill()


@contextlib.asynccontextmanager
async def own_postgres_database() -> AsyncIterator[str]:
    """A new database on the test PostgreSQL, dropped afterwards; a skip saying why without one.

    The shared test database is emptied by every PostgreSQL store test: a run lasting seconds
    would meet another's emptying, and its replicas would fail (Slack would see 500s).
    """
    server_url = make_url(POSTGRES_URL)
    server = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"oi_faults_{uuid.uuid4().hex[:12]}"
    try:
        async with server.connect() as connection:
            await connection.execute(text(f"CREATE DATABASE {name}"))
    except Exception as error:  # asyncpg raises its own types for refusals and auth
        await server.dispose()
        shown = server_url.render_as_string(hide_password=True)
        pytest.skip(f"no PostgreSQL to create a database on at {shown}: {error}")
    try:
        yield server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        async with server.connect() as connection:
            await connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        await server.dispose()


def question_ts(number: int) -> str:
    return f"{1_700_000_100 + number}.000100"


def mention(ts: str, text: str = "<@UBOT> review the retry design") -> str:
    """The event body of `text` (`@oi <question>`) from USER in CHANNEL at `ts`: answered in its
    thread."""
    event = mention_event(text, ts=ts, channel=CHANNEL)
    return event_body(event, event_id=f"Ev{ts}")


def retry_click(failure: SlackCall) -> str:
    """A click on the "Try again" button of the failure message `failure` showed."""
    [request_id] = _retry_values(failure)
    return block_actions_body(
        RETRY_ACTION, request_id, channel=CHANNEL, message_ts=failure.args["ts"], user=USER
    )


async def until(fake_slack: FakeSlack, predicate: Callable[[FakeSlack], bool]) -> None:
    """Wait (without polling) until what Slack received satisfies `predicate`."""
    await asyncio.to_thread(fake_slack.wait_for, predicate, SLOW)


def answers(fake_slack: FakeSlack) -> list[SlackCall]:
    """Calls that showed an answer: accepted, the first block the persona's header."""
    return [call for call in _shown(fake_slack) if _blocks(call)[:1] == ["header"]]


def failures(fake_slack: FakeSlack) -> list[SlackCall]:
    """Calls that showed a failure message: accepted, with a "Try again" button."""
    return [call for call in _shown(fake_slack) if _retry_values(call)]


def rate_limited(fake_slack: FakeSlack) -> list[SlackCall]:
    """Calls Slack answered with 429."""
    return [call for call in fake_slack.calls if call.status == 429]


def ephemerals(fake_slack: FakeSlack) -> list[SlackCall]:
    return [call for call in fake_slack.calls_to("chat.postEphemeral") if _accepted(call)]


def assert_answered_once(fake_slack: FakeSlack, thread_ts: str) -> None:
    """One reply started in the thread (a placeholder or a stream) and replaced by one answer;
    nothing else there."""
    placeholder_ts = assert_one_answer_shown(fake_slack, thread_ts)
    shown = [call for call in answers(fake_slack) if call.args.get("ts") == placeholder_ts]
    assert len(shown) == 1, f"{len(shown)} answers in thread {thread_ts}"


def assert_one_answer_shown(fake_slack: FakeSlack, thread_ts: str) -> str:
    """What the asker sees: one message in the thread, posted once, now the answer; its ts.

    A process killed after Slack took its answer but before the store recorded it is resumed
    and updates that same message again, with the same answer: still one answer shown.
    """
    posted = [
        call
        for call in fake_slack.calls
        if call.method in ("chat.postMessage", "chat.startStream")
        and _accepted(call)
        and call.args.get("thread_ts") == thread_ts
    ]
    assert len(posted) == 1, f"{len(posted)} messages posted in thread {thread_ts}"
    placeholder_ts = str(posted[0].response["ts"])
    thread = fake_slack.messages(CHANNEL, thread_ts)
    assert [message["ts"] for message in thread] == [placeholder_ts]
    assert thread[0]["blocks"][0]["type"] == "header"
    assert thread[0].get("streaming_state") in (None, "completed")
    return placeholder_ts


def _shown(fake_slack: FakeSlack) -> list[SlackCall]:
    return [
        call
        for call in fake_slack.calls
        if call.method in ("chat.postMessage", "chat.update") and _accepted(call)
    ]


def _accepted(call: SlackCall) -> bool:
    return call.status == 200 and call.error is None


def _blocks(call: SlackCall) -> list[str]:
    return [block["type"] for block in call.args.get("blocks") or []]


def _retry_values(call: SlackCall) -> list[str]:
    return [
        element["value"]
        for block in call.args.get("blocks") or []
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") == RETRY_ACTION
    ]
