"""`oi-bot`: the Slack front door as a process.

HTTP mode (no `SLACK_APP_TOKEN`): Slack posts commands, events and button clicks to
`POST /slack/events`. Socket Mode (`SLACK_APP_TOKEN` set): Slack sends them over a websocket.
Either way `GET /healthz`, `/readyz` and `/metrics` are served on `PORT`. SIGTERM stops new work,
lets work in flight finish for `OI_SHUTDOWN_GRACE_SECONDS`, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError

from bot.background import BackgroundTasks
from bot.config import ConfigError, Settings, load_settings
from bot.context.gather import ContextGatherer
from bot.core.engine import Engine
from bot.core.persona import PersonaError, load_personas
from bot.limits import ConcurrencyLimit
from bot.llm import LLMClient
from bot.log import configure_logging
from bot.metrics import Metrics
from bot.slack.admission import QuestionLimits
from bot.slack.app import build_slack_app
from bot.slack.client import create_web_client
from bot.slack.responder import AnswerLimits, Responder
from bot.slack.services import SlackServices
from bot.store import Store

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_CONFIG = 0, 2


def main() -> int:
    try:
        settings = load_settings()
        _check_credentials(settings)
    except ConfigError as error:
        print(f"oi-bot: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(
        level=settings.log_level or "INFO",
        log_format=settings.log_format,
        secrets=settings.secret_values(),
    )
    try:
        asyncio.run(_serve(settings))
    except (ConfigError, PersonaError) as error:
        print(f"oi-bot: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _check_credentials(settings: Settings) -> None:
    """Missing credentials are one line naming the variable, before anything starts."""
    if settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set: the bot token (xoxb-…) of your Slack app")
    if settings.slack_app_token is None and settings.slack_signing_secret is None:
        raise ConfigError(
            "SLACK_SIGNING_SECRET is not set: your Slack app's signing secret "
            "(or set SLACK_APP_TOKEN to use Socket Mode)"
        )
    LLMClient.from_settings(settings)  # raises ConfigError naming OPENAI_API_KEY


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = BotServer(settings)
    await server.start()
    try:
        await stop.wait()
        log.info("server.stopping")
    finally:
        await server.stop()
    log.info("server.stopped")


class BotServer:
    """The process's resources, made at start-up and closed at shutdown, in reverse order."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._accepting = False
        self.metrics = Metrics()
        self.tasks = BackgroundTasks()

    async def start(self) -> None:
        settings = self._settings
        assert settings.slack_bot_token is not None
        self.personas = load_personas(settings.extra_persona_dirs)
        default_persona = self.personas.get(settings.oi_default_persona).name
        self.store = await Store.open(
            settings.database_url, lease_seconds=settings.oi_lease_seconds
        )
        self._session = aiohttp.ClientSession()
        self.client = create_web_client(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            session=self._session,
        )
        bot_user_id = await self._bot_user_id()
        self._llm = LLMClient.from_settings(settings)
        self._gatherer = ContextGatherer.from_settings(settings)
        self._responder = Responder(
            client=self.client,
            store=self.store,
            engine=Engine(llm=self._llm, history_token_budget=settings.oi_history_token_budget),
            gatherer=self._gatherer,
            personas=self.personas,
            metrics=self.metrics,
            concurrency=ConcurrencyLimit(
                max_running=settings.oi_max_concurrency, max_waiting=settings.oi_queue_limit
            ),
            limits=AnswerLimits(
                deadline_seconds=settings.oi_request_deadline_seconds,
                daily_token_budget=settings.oi_daily_token_budget,
            ),
        )
        services = SlackServices(
            store=self.store,
            gatherer=self._gatherer,
            personas=self.personas,
            responder=self._responder,
            tasks=self.tasks,
            metrics=self.metrics,
            bot_user_id=bot_user_id,
            default_persona=default_persona,
            question_limits=QuestionLimits(
                max_chars=settings.oi_max_question_chars,
                per_user_per_minute=settings.oi_user_rate_per_minute,
            ),
        )
        signing_secret = settings.slack_signing_secret
        self._slack = build_slack_app(
            services=services,
            client=self.client,
            signing_secret=signing_secret.get_secret_value() if signing_secret else None,
        )
        self._runner = web.AppRunner(self._web_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "0.0.0.0", settings.port).start()
        self._socket_mode: AsyncSocketModeHandler | None = None
        if settings.slack_app_token is not None:
            self._socket_mode = AsyncSocketModeHandler(
                self._slack, app_token=settings.slack_app_token.get_secret_value()
            )
            await self._socket_mode.connect_async()
        # What start-up built lives as long as the process: out of the collector's sight, its
        # full collections stop pausing everything (acks included) for 30–170 ms under load.
        gc.freeze()
        self._accepting = True
        self._resumer = asyncio.create_task(self._resume_forever(), name="resumer")
        log.info(
            "server.started",
            port=self.port,
            mode="socket" if self._socket_mode else "http",
            bot_user_id=bot_user_id,
        )

    @property
    def port(self) -> int:
        """The port actually bound (PORT=0 picks a free one)."""
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop taking work, give what is in flight the grace period, then close everything."""
        self._accepting = False
        self._resumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._resumer  # never touches the store again once it is closing
        if self._socket_mode is not None:
            await self._socket_mode.close_async()
        left = await self.tasks.drain(self._settings.oi_shutdown_grace_seconds)
        if left:
            log.warning("server.unfinished_requests", count=left)
        await self._runner.cleanup()
        await self._gatherer.aclose()
        await self._llm.aclose()
        await self._session.close()
        await self.store.close()

    async def _resume_forever(self) -> None:
        """Pick up requests no live process holds: at start, then every half lease."""
        while True:
            try:
                await self.resume_unfinished()
            except Exception:  # a database hiccup must not stop resuming for good
                log.exception("server.resume_failed")
            await asyncio.sleep(self._settings.oi_lease_seconds / 2)

    async def resume_unfinished(self) -> int:
        """Answer (or, past the attempt limit, fail) every unfinished request nobody holds."""
        resumed = 0
        for request_id in await self.store.resumable():
            request = await self.store.acquire(request_id)
            if request is None:
                continue  # another replica took it first
            resumed += 1
            log.info("request.resumed", request_id=request.id, attempts=request.attempts)
            work: Coroutine[Any, Any, object]
            if request.attempts > self._settings.oi_max_attempts:
                reason = f"I couldn't answer this after {request.attempts - 1} attempts."
                work = self._responder.fail(request, reason)
            else:
                work = self._responder.answer(request)
            self.tasks.spawn(work, name=f"resume-{request.id}")
        return resumed

    async def _bot_user_id(self) -> str:
        try:
            identity = await self.client.auth_test()
        except SlackApiError as error:
            raise ConfigError(
                f"SLACK_BOT_TOKEN was refused by Slack ({error.response.get('error')})"
            ) from None
        return str(identity["user_id"])

    def _web_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        if self._settings.slack_app_token is None:
            app.router.add_post("/slack/events", self._slack_events)
        return app

    async def _slack_events(self, request: web.Request) -> web.Response:
        """Slack's HTTP requests; while stopping, 503 so Slack retries them elsewhere."""
        started = time.perf_counter()
        if not self._accepting:
            return web.Response(status=503, text="shutting down")
        bolt_response = await self._slack.async_dispatch(await to_bolt_request(request))
        self.metrics.ack_seconds.observe(time.perf_counter() - started)
        return await to_aiohttp_response(bolt_response)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self._accepting and self.personas.names() and await self.store.ping():
            return web.Response(text="ready")
        return web.Response(status=503, text="not ready")

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), content_type="text/plain")
