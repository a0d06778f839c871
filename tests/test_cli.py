"""The `oi` terminal command, run as the installed console script against the local OpenAI."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from rich.console import Console

from bot.core.answer import Answer, Reply, Usage
from bot.core.persona import load_personas
from bot.core.progress import Step, writing_step
from bot.slack.render import render_usage
from bot.terminal.live import LiveProgress
from bot.terminal.render import render_reply
from tests.fakes import openai_api
from tests.fakes.openai_api import VALID_ANSWER, FakeOpenAI

OI = Path(sys.executable).with_name("oi")
KEY = "sk-cli-test-abcdef0123456789"


def run_oi(
    *args: str, fake: FakeOpenAI | None = None, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    assert OI.exists(), f"the oi console script is not installed next to {sys.executable}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OI_"))}
    environment["COLUMNS"] = "120"
    # nothing reachable unless a test points them at its fake
    environment["GITHUB_API_URL"] = "http://127.0.0.1:9/api/v3"
    environment["LINEAR_API_URL"] = "http://127.0.0.1:9/graphql"
    if fake is not None:
        environment.update(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=fake.base_url)
    environment.update(env)
    return subprocess.run(
        [str(OI), *args], input=stdin, capture_output=True, text=True, env=environment, timeout=60
    )


def _sources_env(fake_github, fake_linear) -> dict[str, str]:
    """GitHub and Linear on their local fakes, with the tokens that read them."""
    return dict(
        GITHUB_API_URL=fake_github.api_url,
        GITHUB_TOKEN=fake_github.token,
        LINEAR_API_URL=fake_linear.api_url,
        LINEAR_API_KEY=fake_linear.api_key,
    )


def test_answer_is_rendered_for_a_terminal(fake_openai):
    result = run_oi("backend-engineer", "review the retry design", fake=fake_openai)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for heading in ("Summary", "Recommendation", "Rationale", "Risks", "Next actions"):
        assert heading in out
    assert VALID_ANSWER["summary"] in out
    assert "• Duplicate charges during provider brownouts." in out
    assert "Add idempotency keys to POST /charges" in out and "payments team" in out
    assert "gpt-4o-mini" in out and "tokens" in out
    assert fake_openai.requests[0]["messages"][-1]["content"] == "review the retry design"


def test_json_prints_only_the_answer(fake_openai):
    result = run_oi("backend-engineer", "review the retry design", "--json", fake=fake_openai)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == VALID_ANSWER


def test_question_from_stdin(fake_openai):
    result = run_oi(
        "backend-engineer", "-", "--json", fake=fake_openai, stdin="design:\n- retries\n"
    )
    assert result.returncode == 0, result.stderr
    assert fake_openai.requests[0]["messages"][-1]["content"] == "design:\n- retries"


def test_dry_run_prints_the_exact_request_and_calls_nothing(fake_openai):
    dry = run_oi("--dry-run", "backend-engineer", "review the retry design", fake=fake_openai)
    assert dry.returncode == 0, dry.stderr
    assert fake_openai.requests == []
    previewed = json.loads(dry.stdout)
    run_oi("backend-engineer", "review the retry design", fake=fake_openai)
    [sent] = fake_openai.requests
    assert {key: sent[key] for key in previewed} == previewed


def test_dry_run_needs_no_key():
    result = run_oi("backend-engineer", "q", "--dry-run")
    assert result.returncode == 0, result.stderr


def test_missing_key_is_one_line_and_exit_2():
    result = run_oi("backend-engineer", "review the retry design")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "OPENAI_API_KEY" in result.stderr and "export" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [(), ("backend-engineer",), ("backend-engineer", "   ")])
def test_empty_question_prints_usage_and_exit_2(args, fake_openai):
    result = run_oi(*args, fake=fake_openai)
    assert result.returncode == 2
    assert "usage: oi [options]" in result.stderr
    assert fake_openai.requests == []


def test_empty_stdin_question_is_usage(fake_openai):
    result = run_oi("backend-engineer", "-", fake=fake_openai, stdin="  \n")
    assert result.returncode == 2
    assert "empty" in result.stderr
    assert fake_openai.requests == []


def test_typo_suggests_and_makes_no_llm_call(fake_openai):
    result = run_oi("backend-enginer", "review this", fake=fake_openai)
    assert result.returncode == 2
    assert "Did you mean: backend-engineer?" in result.stderr
    assert fake_openai.requests == []


def test_personas_and_help_list_one_line_each():
    personas = run_oi("personas")
    assert personas.returncode == 0
    [line] = personas.stdout.splitlines()
    assert line.startswith("backend-engineer  Owns server-side implementation")
    helped = run_oi("help")
    assert helped.returncode == 0 and "oi <persona> <question>" in helped.stdout


def test_extra_persona_folder(tmp_path):
    card = (Path(__file__).parents[1] / "bot" / "personas" / "backend-engineer.toml").read_text()
    (tmp_path / "sre.toml").write_text(card.replace('name = "backend-engineer"', 'name = "sre"'))
    result = run_oi("personas", OI_PERSONAS_DIR=str(tmp_path))
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["backend-engineer", "sre"]


def test_llm_failure_is_an_honest_sentence_and_exit_1(fake_openai):
    fake_openai.script(openai_api.refusal("Not something I can review."))
    result = run_oi("backend-engineer", "review", fake=fake_openai)
    assert result.returncode == 1
    assert "declined to answer" in result.stderr and "Not something I can review." in result.stderr
    assert "Traceback" not in result.stderr


def test_model_text_is_printed_literally_and_no_secret_is_logged(fake_openai):
    tricky = {**VALID_ANSWER, "summary": "[bold red]not markup[/] <!channel>"}
    fake_openai.script(openai_api.answer(tricky))
    result = run_oi("backend-engineer", "review", "-v", fake=fake_openai, LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    assert "[bold red]not markup[/] <!channel>" in result.stdout
    assert KEY not in result.stdout + result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    answered = [e for e in events if e["event"] == "llm.answered"]
    assert answered and answered[0]["request_id"]


def test_progress_is_shown_on_a_terminal_stderr(fake_openai):
    """With stderr on a pseudo-terminal, a spinner line says the persona is thinking."""
    controller, terminal = pty.openpty()
    environment = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake_openai.base_url}
    with subprocess.Popen(
        [str(OI), "backend-engineer", "review", "--json"],
        stdout=subprocess.PIPE,
        stderr=terminal,
        stdin=subprocess.DEVNULL,
        env=environment,
    ) as process:
        os.close(terminal)
        stdout, _ = process.communicate(timeout=60)
    shown = _read_all(controller)
    assert process.returncode == 0
    assert json.loads(stdout) == VALID_ANSWER
    assert "Backend Engineer is thinking" in shown.decode(errors="replace")


def test_repo_and_linear_team_flags_ground_the_answer_and_list_sources(
    fake_openai, fake_github, fake_linear
):
    fake_github.add_repo("acme", "payments", readme="# payments\nCharges cards.")
    fake_linear.add_team("PAY", "Payments")
    fake_linear.add_issue("PAY-7", title="Retries double-charge", description="Seen in prod.")
    result = run_oi(
        "backend-engineer",
        "is PAY-7 fixed by the retry design?",
        "--repo",
        "acme/payments",
        "--linear-team",
        "pay",
        fake=fake_openai,
        **_sources_env(fake_github, fake_linear),
    )
    assert result.returncode == 0, result.stderr
    sent = json.dumps(fake_openai.requests[0])
    assert "Charges cards." in sent and "Retries double-charge" in sent
    assert "Sources" in result.stdout and "PAY-7" in result.stdout
    assert fake_github.token not in result.stdout + result.stderr
    assert "Reading" not in result.stdout + result.stderr  # into a pipe: no steps, the answer


def test_the_terminal_reads_what_its_tokens_can_read_unlinked(
    fake_openai, fake_github, fake_linear
):
    """Its user holds the tokens: no conversation's links bound what `oi` reads."""
    fake_github.add_repo("acme", "secret", private=True, readme="# secret\nLaunch codes.")
    fake_linear.add_team("OPS", "Operations")
    fake_linear.add_issue("OPS-9", title="Pager noise", description="Every night.")
    result = run_oi(
        "backend-engineer",
        f"what is in {fake_github.web_url}/acme/secret and OPS-9?",
        fake=fake_openai,
        **_sources_env(fake_github, fake_linear),
    )
    assert result.returncode == 0, result.stderr
    sent = json.dumps(fake_openai.requests[0])
    assert "Launch codes." in sent and "Pager noise" in sent


def test_slack_only_commands_are_refused_on_a_terminal():
    result = run_oi("link", "github", "acme/payments")
    assert result.returncode == 2 and "Slack channel" in result.stderr
    bad = run_oi("backend-engineer", "q", "--repo", "not-a-repo")
    assert bad.returncode == 2 and "owner/repo" in bad.stderr


def test_an_html_page_from_the_endpoint_is_one_line_naming_it_and_exit_1(fake_openai):
    fake_openai.script(openai_api.proxy_page())
    result = run_oi("backend-engineer", "review the retry design", fake=fake_openai)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("oi: ") and "Traceback" not in result.stderr
    assert f"{fake_openai.base_url}/chat/completions answered HTTP 200 with text/html" in line
    assert "502 Bad Gateway" in line and "<" not in line


def test_a_refused_connection_names_the_url_and_is_not_a_rate_limit():
    result = run_oi(
        "backend-engineer",
        "review the retry design",
        OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        OI_LLM_MAX_RETRIES="0",
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "could not connect to http://127.0.0.1:9/v1" in line
    assert "rate limited" not in line and "Traceback" not in result.stderr


def test_a_server_without_json_schema_still_answers_and_says_how_only_with_v():
    fake = FakeOpenAI(openai_api.VLLM_BEFORE_JSON_SCHEMA)
    fake.start()
    try:
        quiet = run_oi("backend-engineer", "review the retry design", "--json", fake=fake)
        told = run_oi("backend-engineer", "review the retry design", "--json", "-v", fake=fake)
    finally:
        fake.stop()
    assert quiet.returncode == told.returncode == 0, quiet.stderr + told.stderr
    assert json.loads(quiet.stdout) == json.loads(told.stdout) == VALID_ANSWER
    assert quiet.stderr == ""
    [settled] = [line for line in told.stderr.splitlines() if "llm.structured_output" in line]
    assert "json_object" in settled


def test_dry_run_prints_the_configured_structured_output_mode():
    result = run_oi("backend-engineer", "q", "--dry-run", OI_STRUCTURED_OUTPUT="prompt")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert "response_format" not in body
    assert '"$defs"' in body["messages"][0]["content"]


BOX_DRAWING = set("─━│┃┌┐└┘├┤┬┴┼╭╮╯╰┏┓┗┛┡┩╇")


def test_a_placeholder_pasted_as_the_key_is_one_line_and_exit_2(fake_openai):
    """`OPENAI_API_KEY=sk-…` copied from a README: `…` cannot go in an HTTP header."""
    result = run_oi("backend-engineer", "review", fake=fake_openai, OPENAI_API_KEY="sk-…")
    assert result.returncode == 2
    assert result.stderr == (
        "oi: OPENAI_API_KEY contains non-ASCII characters (…): "
        "paste the value itself, not a placeholder\n"
    )
    assert fake_openai.requests == []


def test_the_readme_has_no_key_that_could_be_pasted_as_one():
    """Its commands and `NAME=value` lines hold `<your key>`-style placeholders, not `sk-…`."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert re.findall(r"_(?:KEY|TOKEN|SECRET)=[\w-]*…", readme) == []
    assert "OPENAI_API_KEY=<your key>" in readme


def test_json_into_a_pipe_its_reader_closed_is_no_traceback(fake_openai):
    """`oi … --json | head -2`: the reader is gone before the answer is written."""
    reader, writer = os.pipe()
    os.close(reader)
    environment = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake_openai.base_url}
    with subprocess.Popen(
        [str(OI), "backend-engineer", "review", "--json"],
        stdout=writer,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=environment,
        text=True,
    ) as process:
        os.close(writer)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 141
    assert stderr == ""
    assert len(fake_openai.requests) == 1


def test_without_a_persona_the_default_persona_answers(fake_openai):
    """As a mention in Slack: the first word is no persona nor a typo of one."""
    result = run_oi("review the retry design", "--json", fake=fake_openai)
    assert result.returncode == 0, result.stderr
    [sent] = fake_openai.requests
    assert sent["messages"][-1]["content"] == "review the retry design"
    assert "You are the Backend Engineer persona" in sent["messages"][0]["content"]
    unknown = run_oi("review", fake=fake_openai, OI_DEFAULT_PERSONA="nobody")
    assert unknown.returncode == 2
    assert "OI_DEFAULT_PERSONA is 'nobody', which is not a persona" in unknown.stderr


def test_version():
    result = run_oi("--version")
    assert result.returncode == 0
    assert result.stdout == f"oi {version('oi')}\n"


def test_help_and_dash_dash_help_agree_and_list_every_flag_and_no_slack_command():
    helped, dashed = run_oi("help"), run_oi("--help")
    assert helped.returncode == dashed.returncode == 0
    assert helped.stdout == dashed.stdout
    for flag in ("-h, --help", "--version", "--json", "--dry-run", "--repo", "--linear-team"):
        assert flag in helped.stdout
    assert "-v, --verbose" in helped.stdout and "oi <persona> -" in helped.stdout
    assert "oi <question>" in helped.stdout
    for slack_only in ("oi link", "oi unlink", "oi links", "oi default"):
        assert slack_only not in helped.stdout
    slack = render_usage()
    assert "/oi link github" in slack and "--json" not in slack and "--repo" not in slack


def test_piped_output_is_plain_text(fake_openai):
    result = run_oi("backend-engineer", "review", fake=fake_openai)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["Backend Engineer", "", "Summary"]
    assert f"  {VALID_ANSWER['summary']}" in lines
    assert (
        "  • Add idempotency keys to POST /charges (owner: payments team; "
        "outcome: Retries become safe to enable.)" in lines
    )
    assert not BOX_DRAWING & set(result.stdout)
    assert all(line == line.rstrip() for line in lines)


def test_a_terminal_gets_the_rich_rendering(fake_openai):
    controller, terminal = pty.openpty()
    environment = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake_openai.base_url}
    with subprocess.Popen(
        [str(OI), "backend-engineer", "review"],
        stdout=terminal,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=environment,
    ) as process:
        os.close(terminal)
        shown = _read_all(controller)
        process.wait(timeout=60)
    assert process.returncode == 0
    assert BOX_DRAWING & set(shown.decode(errors="replace"))


def _read_all(controller: int) -> bytes:
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return shown


@pytest.mark.parametrize("how", ["argument", "stdin"])
def test_the_question_size_limit_applies_on_the_terminal(how, fake_openai):
    question = "x" * 11
    args = (question,) if how == "argument" else ("-",)
    result = run_oi(
        "backend-engineer", *args, fake=fake_openai, stdin=question, OI_MAX_QUESTION_CHARS="10"
    )
    assert result.returncode == 2
    assert result.stderr == (
        "oi: the question is 11 characters long; the limit is 10 (OI_MAX_QUESTION_CHARS).\n"
    )
    assert fake_openai.requests == []


def test_log_lines_only_when_asked_and_unread_github_said_once(fake_openai):
    """GitHub unreachable: urllib3 logs `Retrying`, we log `github.unreadable`; neither shows
    without -v or LOG_LEVEL. A link to another GitHub than GITHUB_API_URL's is said, not read."""
    question = "compare http://127.0.0.1:9/acme/payments with https://github.com/acme/ledger"
    quiet = run_oi("backend-engineer", question, "--json", fake=fake_openai, GITHUB_TOKEN="ghp_x")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    missing = json.loads(quiet.stdout)["missingContext"]
    assert "GitHub repository acme/payments: could not reach GitHub" in missing
    assert (
        "Did not read https://github.com/acme/ledger: it is on another GitHub than the one "
        "this oi reads (GITHUB_API_URL)" in missing
    )
    asked: list[tuple[tuple[str, ...], dict[str, str]]] = [
        (("-v",), {}),
        ((), {"LOG_LEVEL": "INFO"}),
    ]
    for flags, env in asked:
        loud = run_oi(
            "backend-engineer", question, *flags, fake=fake_openai, GITHUB_TOKEN="ghp_x", **env
        )
        assert "Retrying" in loud.stderr and "github.unreadable" in loud.stderr


# --- live: the steps and the answer as they come, on a terminal ---

PERSONA = load_personas().get("backend-engineer")
SPINNING = "[\u2800-\u28ff]"  # the braille frames of rich's "dots" spinner
_CSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class _Terminal:
    """`oi` on a pseudo-terminal of 100×40, as in a terminal window, read as it writes."""

    def __init__(self, *args: str, env: dict[str, str], stderr_too: bool = True) -> None:
        self._controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        inherited = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        self.process = subprocess.Popen(
            [str(OI), *args],
            stdout=terminal,
            stderr=terminal if stderr_too else subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**inherited, "TERM": "xterm-256color", **env},
        )
        os.close(terminal)
        self.shown = b""
        self._closed = False

    @property
    def text(self) -> str:
        """What was written, without its styles and cursor moves: every frame, one after another."""
        return _CSI.sub("", self.shown.decode(errors="replace")).replace("\r", "")

    def wait_for(self, pattern: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text):
            left = deadline - time.monotonic()
            assert left > 0 and not self._closed, f"never shown: {pattern!r} in\n{self.text}"
            self._read(left)

    def finish(self) -> int:
        while not self._closed:
            self._read(60)
        os.close(self._controller)
        return self.process.wait(timeout=60)

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self._controller], [], [], timeout)
        if not ready:
            return
        try:
            chunk = os.read(self._controller, 4096)
        except OSError:  # the terminal's other end closed
            chunk = b""
        self.shown += chunk
        self._closed = not chunk


def _reading_payments(fake_openai, fake_github, fake_linear, *more: str) -> _Terminal:
    """`oi` on a terminal asked about acme/payments (and `more` arguments), held while GitHub
    reads it until `fake_github.release()`."""
    fake_github.add_repo("acme", "payments", readme="# payments\nCharges cards.")
    fake_github.hold("/repos/acme/payments")
    environment = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake_openai.base_url}
    return _Terminal(
        "backend-engineer",
        "review the retry design",
        "--repo",
        "acme/payments",
        *more,
        env={**environment, **_sources_env(fake_github, fake_linear)},
    )


def test_a_terminal_sees_each_source_read_then_the_answer_written(
    fake_openai, fake_github, fake_linear
):
    """Each step shows as it is taken (a spinner), then how it went (✓, or ✗ and why)."""
    fake_openai.script(openai_api.held(openai_api.answer()))
    oi = _reading_payments(fake_openai, fake_github, fake_linear, "--repo", "acme/missing")
    oi.wait_for(f"{SPINNING} Reading acme/payments\n")
    oi.wait_for("✗ Reading acme/missing — GitHub repository acme/missing: not found")
    assert "Writing the answer" not in oi.text
    fake_github.release()
    oi.wait_for(f"✓ Reading acme/payments — done\n(.*\n)*{SPINNING} Writing the answer")
    assert "Summary" not in oi.text
    fake_openai.release()
    assert oi.finish() == 0
    shown = oi.text
    final = shown[shown.rindex("✓ Reading acme/payments") :]
    assert re.match(
        r"✓ Reading acme/payments — done\n✗ Reading acme/missing — .*\n(.*\n)?"
        r"✓ Writing the answer\nBackend Engineer ─+\nSummary\n",
        final,
    ), final
    assert VALID_ANSWER["summary"] in final and BOX_DRAWING & set(final)
    assert "is thinking" not in shown  # one live display: no second spinner on stderr


def test_log_lines_on_the_same_terminal_print_above_the_live_display(
    fake_openai, fake_github, fake_linear
):
    """`oi -v`: each log line starts a line of its own, the display erased under it and drawn
    again below, instead of landing in the middle of a frame."""
    oi = _reading_payments(fake_openai, fake_github, fake_linear, "-v")
    oi.wait_for(f"{SPINNING} Reading acme/payments")  # the display is up: now the logs come
    fake_github.release()
    assert oi.finish() == 0
    written = _CSI.sub("", oi.shown.decode())  # carriage returns kept: where a line starts
    before_each_log_line = re.findall(r"(.)\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", written, re.DOTALL)
    assert len(before_each_log_line) >= 3, written  # github.fetched, context.gathered, llm.answered
    assert set(before_each_log_line) <= {"\r", "\n"}, written
    assert "✓ Writing the answer" in oi.text and VALID_ANSWER["summary"] in oi.text


def test_a_dry_run_on_a_terminal_shows_the_streamed_request(fake_openai):
    """A terminal is shown the answer as it is written, so it asks for a stream; a pipe not."""
    oi = _Terminal("--dry-run", "backend-engineer", "review", env={}, stderr_too=False)
    assert oi.finish() == 0
    previewed = json.loads(oi.text)
    assert previewed["stream"] is True and previewed["stream_options"] == {"include_usage": True}
    piped = run_oi("--dry-run", "backend-engineer", "review", fake=fake_openai)
    assert "stream" not in json.loads(piped.stdout)
    assert fake_openai.requests == []


def test_json_on_a_terminal_is_the_json_alone(fake_openai, fake_github, fake_linear):
    fake_github.add_repo("acme", "payments", readme="# payments\nCharges cards.")
    environment = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake_openai.base_url}
    oi = _Terminal(
        "backend-engineer",
        "review the retry design",
        "--json",
        "--repo",
        "acme/payments",
        env={**environment, **_sources_env(fake_github, fake_linear)},
        stderr_too=False,
    )
    assert oi.finish() == 0
    assert b"\x1b" not in oi.shown
    assert json.loads(oi.text) == VALID_ANSWER


def test_a_failed_answer_leaves_its_steps_and_says_why_on_stderr(fake_openai):
    fake_openai.script(openai_api.refusal("Not something I can review."))
    environment = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake_openai.base_url}
    oi = _Terminal("backend-engineer", "review", env=environment, stderr_too=False)
    assert oi.finish() == 1
    assert oi.text.endswith("✗ Writing the answer\n")
    assert oi.process.stderr is not None
    assert "declined to answer" in oi.process.stderr.read().decode()


def test_a_terminal_sees_the_answer_grow_as_the_model_writes_it(fake_openai):
    fake_openai.script(openai_api.paced(openai_api.answer()))
    environment = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake_openai.base_url}
    oi = _Terminal("backend-engineer", "review the retry design", env=environment)
    fake_openai.send_chunks(4)  # the role, then `{"summary": "Retries w…`, give or take a piece
    oi.wait_for(f"{SPINNING} Writing the answer\nBackend Engineer ─+\nSummary\n  Retries w")
    assert VALID_ANSWER["summary"] not in oi.text
    fake_openai.send_chunks(1000)
    assert oi.finish() == 0
    final = oi.text[oi.text.rindex("✓ Writing the answer") :]
    assert VALID_ANSWER["summary"] in final and "gpt-4o-mini" in final


async def test_steps_show_their_state_and_why_one_failed():
    live = LiveProgress(Console(), persona=PERSONA)
    await live.step(Step("a", "Reading acme/payments", "in_progress"))
    await live.step(Step("b", "Reading PAY-7", "in_progress"))
    await live.step(Step("c", "acme/secret is not linked", "error", detail=UNLINKED))
    await live.step(Step("b", "Reading PAY-7", "error", detail="Could not read PAY-7: timeout"))
    await live.step(writing_step("pending"))
    lines = _frame(live).splitlines()
    assert re.fullmatch(f"{SPINNING} Reading acme/payments", lines[0])
    assert lines[1:] == [
        "✗ Reading PAY-7 — Could not read PAY-7: timeout",
        f"✗ {UNLINKED}",  # its title is the start of its reason: said once
        "· Writing the answer",
    ]
    await live.step(Step("a", "Reading acme/payments", "complete", detail="done"))
    assert _frame(live).splitlines()[0] == "✓ Reading acme/payments — done"


UNLINKED = "acme/secret is not linked to #general; a workspace admin can `/oi link github …`"


async def test_the_draft_shows_what_is_written_in_the_final_layout():
    live = LiveProgress(Console(), persona=PERSONA)
    await live.step(writing_step("in_progress"))
    await live.draft({"summary": "Retries without idem"})
    shown = _frame(live)
    assert "Summary\n  Retries without idem\n" in shown and "Recommendation" not in shown
    await live.draft({"summary": "Retries.", "recommendation": ""})  # begun, nothing written
    assert "Recommendation" not in _frame(live)
    await live.draft({"summary": "Retries.", "recommendation": "Add keys.", "rationale": []})
    shown = _frame(live)
    assert "Add keys." in shown and "Rationale" not in shown  # opened is not "(none)" yet
    partial_action = {**VALID_ANSWER, "nextActions": [{"title": "Add idem"}, {}]}
    del partial_action["missingContext"]
    await live.draft(partial_action)
    assert re.search(r"│ Add idem +│ +│ +│", _frame(live))
    await live.draft({"summary": 42, "risks": ["one", 7, "two"]})  # a wrong shape is left out
    shown = _frame(live)
    assert "Summary" not in shown and "  • one\n  • two\n" in shown
    await live.draft(VALID_ANSWER)
    drafted = _frame(live).split("\n", 1)[1]  # after the step line
    assert _final_rendering(VALID_ANSWER).startswith(drafted)


async def test_model_text_in_a_draft_or_a_step_is_shown_literally():
    live = LiveProgress(Console(), persona=PERSONA)
    await live.step(Step("a", "Reading [bold]acme/x[/bold]", "error", detail="[red]gone[/]"))
    await live.draft({"summary": "[bold red]not markup[/] \x1b]8;;https://evil\x1b\\x\x1b[2J"})
    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system="standard")
    console.print(live)
    written = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[bold red]not markup[/]" in written and "Reading [bold]acme/x[/bold]" in written
    assert "\x1b]8" not in written and "\x1b[2J" not in written
    assert "␛]8;;https://evil␛\\x␛[2J" in written


async def test_a_draft_taller_than_the_screen_shows_its_last_lines():
    live = LiveProgress(Console(), persona=PERSONA)
    await live.step(writing_step("in_progress"))
    await live.draft({**VALID_ANSWER, "missingContext": [f"gap {n}" for n in range(30)]})
    lines = _frame(live, height=12).splitlines()
    assert len(lines) == 11  # a line to spare, so the cursor never scrolls the frame away
    assert lines[-3:] == ["  • gap 28", "  • gap 29", ""]


async def test_leaving_keeps_the_steps_and_lets_the_draft_go():
    """The finished answer is printed below the steps as usual: the draft must not stay."""
    console = Console(file=io.StringIO(), width=80)
    with LiveProgress(console, persona=PERSONA) as live:
        await live.step(Step("a", "Reading acme/payments", "complete", detail="done"))
        await live.draft({"summary": "Retries without idem"})
    assert _unpadded(console) == "✓ Reading acme/payments — done\n"


def _frame(live: LiveProgress, *, height: int = 40) -> str:
    """What the live display would draw now, as plain lines."""
    console = Console(file=io.StringIO(), width=100, height=height, color_system=None)
    console.print(live)
    return _unpadded(console)


def _final_rendering(answer: dict[str, object]) -> str:
    reply = Reply(
        answer=Answer.model_validate(answer),
        model="m",
        usage=Usage(),
        latency_seconds=1,
        attempts=1,
    )
    console = Console(file=io.StringIO(), width=100, color_system=None)
    render_reply(console, persona=PERSONA, reply=reply)
    return _unpadded(console)


def _unpadded(console: Console) -> str:
    """What a console wrote, without the spaces that pad its lines to its width."""
    written: str = console.file.getvalue()  # type: ignore[attr-defined]
    return "".join(f"{line.rstrip()}\n" for line in written.splitlines())
