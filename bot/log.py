"""The one logging setup: structlog and the stdlib loggers (openai, slack_bolt, …) share a pipeline.

JSON lines in production, a readable console format on a terminal. Every configured secret is
scrubbed from every event, whichever library logged it. The libraries' own loggers keep only
warnings and errors, whatever `LOG_LEVEL` says: below that they log what people and vendors sent.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"
# Below WARNING these log bodies, queries, prompts and parameters: slack_sdk its requests and
# responses (messages, answers) and Socket Mode envelopes, slack_bolt the payloads it ran, PyGithub
# (`github`) its responses, gql its queries, variables and results, openai its request options
# (the prompt), SQLAlchemy its statements and parameters, urllib3, httpx(2) and aiohttp URLs with
# their queries, asyncio its callbacks' arguments; Alembic only narrates every migration step.
VENDOR_LOGGERS = (
    "aiohttp",
    "alembic",
    "asyncio",
    "github",
    "gql",
    "httpcore",
    "httpcore2",
    "httpx",
    "httpx2",
    "openai",
    "requests",
    "slack_bolt",
    "slack_sdk",
    "sqlalchemy",
    "urllib3",
)
VENDOR_LEVEL = logging.WARNING
# Vendor warnings about what we do on purpose: slack_bolt reads SLACK_BOT_TOKEN from the
# environment itself, then warns that the client we give it (which holds that token) wins.
EXPECTED_VENDOR_WARNINGS = frozenset({"As you gave `client` as well, `token` will be unused."})
# A level above every logger's: the terminal's default, whose output is the answer alone.
OFF = "OFF"


class SecretScrubber:
    """A processor that replaces known secret values anywhere in an event's strings."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        if not self._secrets:
            return event_dict
        return {key: self._scrub(value) for key, value in event_dict.items()}

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._scrub(v) for v in value)
        return value


def configure_logging(
    *,
    level: str = "INFO",
    log_format: Literal["json", "console", "auto"] = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the stdlib root logger once, at start-up; `level` may be `OFF`."""
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "console" if stream.isatty() else "json"

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            SecretScrubber(secrets),
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream) if stream is not sys.stderr else _StderrHandler()
    handler.setFormatter(formatter)
    handler.addFilter(_vendor_warnings_only)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.CRITICAL + 1 if level.upper() == OFF else level.upper())
    for name in VENDOR_LOGGERS:  # so they don't even format what the filter would drop
        logging.getLogger(name).setLevel(max(VENDOR_LEVEL, root.level))

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


class _StderrHandler(logging.StreamHandler):
    """Writes to `sys.stderr` as it is at each line, not as it was at start-up: a terminal's
    live display puts a proxy there that prints each line above it (`bot.terminal.live`)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # under the handler's lock, as `handle` calls `emit`
        super().emit(record)


def _vendor_warnings_only(record: logging.LogRecord) -> bool:
    """Also for a library's logger made with its own level (slack_bolt copies the root's)."""
    if record.name.split(".")[0] not in VENDOR_LOGGERS:
        return True
    return record.levelno >= VENDOR_LEVEL and record.getMessage() not in EXPECTED_VENDOR_WARNINGS


@contextmanager
def request_context(request_id: str | None = None, **values: Any) -> Iterator[str]:
    """Bind a request id (and any other values) to every log line emitted inside the block."""
    request_id = request_id or uuid.uuid4().hex[:12]
    with structlog.contextvars.bound_contextvars(request_id=request_id, **values):
        yield request_id
