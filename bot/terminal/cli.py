"""The `oi` terminal command: the same grammar and engine as Slack, rendered for a terminal.

On a terminal, each step and the answer show as they come (`LiveProgress`), then the answer as
rendered in full; into a pipe or with `--json`, only the answer, as plain lines or JSON.

Exit codes: 0 answered (or listed, or helped), 1 the answer failed, 2 bad usage or configuration,
130 interrupted, 141 its reader left (`oi … | head`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version

from rich.console import Console

from bot.config import ConfigError, Settings, load_settings
from bot.context.gather import ContextGatherer, Links, Reach
from bot.core.answer import Reply
from bot.core.commands import (
    COMMON_USAGE,
    LINEAR_TEAM,
    REPOSITORY,
    Ask,
    ListPersonas,
    ShowHelp,
    parse_command,
)
from bot.core.engine import Engine
from bot.core.errors import AnswerError
from bot.core.persona import Persona, PersonaError, UnknownPersonaError, load_personas
from bot.core.progress import SILENT, Progress
from bot.llm import LLMClient, preview_request
from bot.log import OFF, configure_logging, request_context
from bot.terminal.live import LiveProgress
from bot.terminal.render import plain_reply, render_personas, render_reply

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PIPE_CLOSED = 0, 1, 2, 130, 141
# The terminal's commands: the shared ones, and what only a terminal takes. Slack's channel
# commands (`link`, `default`, …) are not listed: they are refused here.
COMMANDS = f"""\
commands:
{COMMON_USAGE}
  oi <question>             ask OI_DEFAULT_PERSONA, as a mention in Slack does
  oi <persona> -            read the question from standard input"""


class _UsageError(Exception):
    """Bad words or configuration: one line on stderr, exit 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_intermixed_args(argv)
    stdout, stderr = Console(), Console(stderr=True)
    try:
        code = _run(args, parser, stdout=stdout, stderr=stderr)
        sys.stdout.flush()  # a reader that left shows here, not as a traceback at exit
        return code
    except (_UsageError, ConfigError, PersonaError, UnknownPersonaError) as error:
        print(f"oi: {error}", file=sys.stderr)
        return EXIT_USAGE
    except AnswerError as error:
        print(f"oi: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # What Python's documentation advises: what is still buffered goes nowhere at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oi",
        usage="%(prog)s [options] [<persona>] <question>\n       %(prog)s personas | help",
        description="Ask an expert persona; GitHub and Linear links in the question are read.\n\n"
        + COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("words", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('oi')}")
    parser.add_argument("--json", action="store_true", help="print the Answer JSON only")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the request that would be sent; call nothing"
    )
    parser.add_argument(
        "--repo",
        action="append",
        default=[],
        type=_repository,
        metavar="OWNER/REPO",
        help="a GitHub repository to read before answering (repeatable)",
    )
    parser.add_argument(
        "--linear-team",
        action="append",
        default=[],
        type=_team,
        metavar="TEAM",
        help="a Linear team whose issues to read before answering (repeatable)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at DEBUG on stderr (else: LOG_LEVEL)"
    )
    return parser


def _repository(value: str) -> str:
    if not REPOSITORY.match(value):
        raise argparse.ArgumentTypeError(f"'{value}' is not a repository: write it as owner/repo")
    return value


def _team(value: str) -> str:
    if not LINEAR_TEAM.match(value):
        raise argparse.ArgumentTypeError(f"'{value}' is not a Linear team key (like PAY)")
    return value.upper()


def _run(
    args: argparse.Namespace, parser: argparse.ArgumentParser, *, stdout: Console, stderr: Console
) -> int:
    usage = parser.format_usage().rstrip()
    if not args.words:
        raise _UsageError(f"a question is needed.\n{usage}")
    settings = load_settings()
    configure_logging(  # the terminal's output is the answer: log lines only when asked for
        level="DEBUG" if args.verbose else settings.log_level or OFF,
        log_format=settings.log_format,
        secrets=settings.secret_values(),
    )
    personas = load_personas(settings.extra_persona_dirs)
    command = parse_command(
        " ".join(args.words), personas, default_persona=settings.oi_default_persona
    )
    if isinstance(command, ShowHelp):
        if command.problem:
            raise _UsageError(f"{command.problem}\n{usage}")
        parser.print_help()  # the very text of `oi --help`
        return EXIT_OK
    if isinstance(command, ListPersonas):
        render_personas(stdout, personas.all())
        return EXIT_OK
    if not isinstance(command, Ask):
        raise _UsageError(
            "that command works in a Slack channel; on a terminal, name a persona and use "
            "--repo and --linear-team for what it should read."
        )
    if command.persona not in personas:  # only OI_DEFAULT_PERSONA can name no persona here
        raise _UsageError(
            f"OI_DEFAULT_PERSONA is '{command.persona}', which is not a persona: see `oi personas`"
        )
    return _ask(command, personas.get(command.persona), settings, args, stdout, stderr)


def _ask(
    command: Ask,
    persona: Persona,
    settings: Settings,
    args: argparse.Namespace,
    stdout: Console,
    stderr: Console,
) -> int:
    question = sys.stdin.read().strip() if command.question == "-" else command.question
    if not question:
        raise _UsageError("the question is empty.")
    if len(question) > settings.oi_max_question_chars:
        raise _UsageError(
            f"the question is {len(question):,} characters long; the limit is "
            f"{settings.oi_max_question_chars:,} (OI_MAX_QUESTION_CHARS)."
        )
    # On a terminal the answer is shown as it is written, so it is asked for as a stream.
    shown_live = stdout.is_interactive and not args.json
    if args.dry_run:
        body = preview_request(
            persona=persona,
            question=question,
            default_model=settings.openai_model,
            structured_output=settings.oi_structured_output,
            streamed=shown_live,
        )
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return EXIT_OK
    llm = LLMClient.from_settings(settings)
    links = Links(repositories=args.repo, linear_teams=args.linear_team)
    live = stdout if shown_live else None
    reply = asyncio.run(_answer(settings, llm, persona, question, links, live=live, stderr=stderr))
    if args.json:
        print(reply.answer.model_dump_json(indent=2))
    elif stdout.is_terminal:
        render_reply(stdout, persona=persona, reply=reply)
    else:
        print(plain_reply(persona=persona, reply=reply))
    return EXIT_OK


async def _answer(
    settings: Settings,
    llm: LLMClient,
    persona: Persona,
    question: str,
    links: Links,
    *,
    live: Console | None,
    stderr: Console,
) -> Reply:
    """Read what the question refers to, then ask; the same two steps as in Slack."""
    gatherer = ContextGatherer.from_settings(settings)
    engine = Engine(llm=llm, history_token_budget=settings.oi_history_token_budget)
    try:
        with request_context(), _shown(persona, live=live, stderr=stderr) as progress:
            gathered = await gatherer.gather(
                text=question, persona=persona, links=links, reach=Reach.TOKENS, progress=progress
            )
            return await engine.ask(
                persona=persona, question=question, gathered=gathered, progress=progress
            )
    finally:
        await gatherer.aclose()
        await llm.aclose()


@contextmanager
def _shown(persona: Persona, *, live: Console | None, stderr: Console) -> Iterator[Progress]:
    """Where the answer's progress shows: each step and the draft on the `live` terminal; else a
    spinner on stderr when that is a terminal, so a pipe or `--json` gets the answer alone."""
    if live is not None:
        with LiveProgress(live, persona=persona) as progress:
            yield progress
    elif stderr.is_terminal:
        with stderr.status(f"{persona.title} is thinking…"):
            yield SILENT
    else:
        yield SILENT
