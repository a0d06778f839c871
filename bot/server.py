"""`oi-bot`: the Slack front door as a process.

HTTP mode (no `SLACK_APP_TOKEN`): Slack posts commands, events and button clicks to
`POST /slack/events`, each checked against Slack's signature before anything reads it. Socket
Mode (`SLACK_APP_TOKEN` set): Slack sends them over a websocket. Either way `GET /healthz` is
served on `PORT`, and `/readyz` and `/metrics` too unless `OI_METRICS_PORT` gives them a port of
their own (one Slack's traffic does not reach). SIGTERM stops new work, lets work in flight finish
for `OI_SHUTDOWN_GRACE_SECONDS`, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
import time

import aiohttp
import structlog
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bot.background import BackgroundTasks
from bot.config import ConfigError, Settings, load_settings
from bot.context.gather import ContextGatherer
from bot.core.engine import Engine
from bot.core.persona import PersonaError, load_personas
from bot.limits import ConcurrencyLimit
from bot.llm import LLMClient
from bot.log import configure_logging
from bot.metrics import Metrics
from bot.slack.access import AccessPolicy
from bot.slack.admission import QuestionLimits
from bot.slack.app import build_slack_app
from bot.slack.assistant import can_customize
from bot.slack.client import create_web_client
from bot.slack.directory import SlackDirectory
from bot.slack.responder import AnswerLimits, Responder
from bot.slack.services import SlackServices
from bot.slack.thread import ThreadMessages
from bot.store import Store

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_CONFIG = 0, 2
# Slack's largest requests are message events: 40,000 characters of text (up to 3 bytes each in
# UTF-8), once as text and once in its blocks, about 240 KB. Bigger bodies get 413 unread.
MAX_BODY_BYTES = 512 * 1024


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
        assert settings.slack_bot_token is not None
        self._settings = settings
        self._accepting = False
        # Keyed with the bot token: the same pseudonyms on every replica, unknown to a scraper.
        team_key = settings.slack_bot_token.get_secret_value().encode()
        self.metrics = Metrics(team_key=None if settings.oi_metrics_team_ids else team_key)
        self.tasks = BackgroundTasks()

    async def start(self) -> None:
        """Open everything, each closer pushed on an exit stack as it opens: a start that fails
        half-way (Slack unreachable, a refused token, a port taken) closes what it opened."""
        async with contextlib.AsyncExitStack() as opened:
            await self._open(opened)
            self._opened = opened.pop_all()

    async def _open(self, opened: contextlib.AsyncExitStack) -> None:
        """Closers run in reverse: the resumer, Socket Mode, the drain, servers, clients, store."""
        settings = self._settings
        assert settings.slack_bot_token is not None
        self.personas = load_personas(settings.extra_persona_dirs)
        default_persona = self.personas.get(settings.oi_default_persona).name
        try:
            self.store = await Store.open(
                settings.database_url, lease_seconds=settings.oi_lease_seconds
            )
        except (SQLAlchemyError, OSError) as error:  # SQLAlchemy's messages hide the password
            raise ConfigError(
                f"the database at DATABASE_URL={shown_database(settings.database_url)} could "
                f"not be opened ({_first_line(error)})"
            ) from None
        opened.push_async_callback(self.store.close)
        session = await opened.enter_async_context(aiohttp.ClientSession())
        self.client = create_web_client(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            session=session,
        )
        bot_user_id, team_id, scopes = await self._identity()
        directory = SlackDirectory(client=self.client, home_team_id=team_id)
        access = AccessPolicy.from_settings(settings)
        llm = LLMClient.from_settings(settings)
        opened.push_async_callback(llm.aclose)
        gatherer = ContextGatherer.from_settings(settings)
        opened.push_async_callback(gatherer.aclose)
        messages = ThreadMessages(
            client=self.client,
            store=self.store,
            streaming=settings.oi_slack_streaming == "on",
            customize=can_customize(scopes),
        )
        self._responder = Responder(
            messages=messages,
            store=self.store,
            engine=Engine(llm=llm, history_token_budget=settings.oi_history_token_budget),
            gatherer=gatherer,
            personas=self.personas,
            metrics=self.metrics,
            concurrency=ConcurrencyLimit(
                max_running=settings.oi_max_concurrency, max_waiting=settings.oi_queue_limit
            ),
            limits=AnswerLimits(
                deadline_seconds=settings.oi_request_deadline_seconds,
                daily_token_budget=settings.oi_daily_token_budget,
                max_attempts=settings.oi_max_attempts,
                show_usage=settings.oi_show_usage,
            ),
            directory=directory,
            access=access,
        )
        services = SlackServices(
            store=self.store,
            gatherer=gatherer,
            personas=self.personas,
            responder=self._responder,
            messages=messages,
            tasks=self.tasks,
            metrics=self.metrics,
            bot_user_id=bot_user_id,
            default_persona=default_persona,
            question_limits=QuestionLimits(
                max_chars=settings.oi_max_question_chars,
                per_user_per_minute=settings.oi_user_rate_per_minute,
                max_in_flight=settings.oi_user_max_in_flight,
            ),
            directory=directory,
            access=access,
        )
        signing_secret = settings.slack_signing_secret
        self._slack = build_slack_app(
            services=services,
            client=self.client,
            signing_secret=signing_secret.get_secret_value() if signing_secret else None,
        )
        self._verifier: SignatureVerifier | None = None
        if settings.slack_app_token is None:
            if signing_secret is None:
                raise ConfigError("SLACK_SIGNING_SECRET is not set: HTTP mode checks every request")
            self._verifier = SignatureVerifier(signing_secret.get_secret_value())
        self._runner = await self._serve_http(opened, self._public_app(), settings.port)
        self._metrics_runner: web.AppRunner | None = None
        if settings.oi_metrics_port is not None:
            self._metrics_runner = await self._serve_http(
                opened, self._internal_app(), settings.oi_metrics_port
            )
        opened.push_async_callback(self._drain)  # while the servers still answer 503
        self._socket_mode: AsyncSocketModeHandler | None = None
        if settings.slack_app_token is not None:
            app_token = settings.slack_app_token.get_secret_value()
            await self._check_app_token(app_token)
            self._socket_mode = AsyncSocketModeHandler(self._slack, app_token=app_token)
            opened.push_async_callback(self._socket_mode.close_async)
            await self._socket_mode.connect_async()
        # What start-up built lives as long as the process: out of the collector's sight, its
        # full collections stop pausing everything (acks included) for 30–170 ms under load.
        gc.freeze()
        self._accepting = True
        resumer = asyncio.create_task(self._resume_forever(), name="resumer")
        opened.push_async_callback(_cancelled, resumer)
        log.info(
            "server.started",
            port=self.port,
            metrics_port=self.metrics_port,
            mode="socket" if self._socket_mode else "http",
            bot_user_id=bot_user_id,
        )
        print(self._ready_line(), flush=True)

    def _ready_line(self) -> str:
        """What an operator reads once: how Slack reaches the bot, where state is, who answers."""
        if self._socket_mode is not None:
            mode = f"Socket Mode (health on port {self.port})"
        else:
            mode = f"HTTP on port {self.port} (Slack posts to /slack/events)"
        database = shown_database(self._settings.database_url)
        personas = ", ".join(self.personas.names())
        return f"oi-bot ready: {mode}, database {database}, personas: {personas}"

    @staticmethod
    async def _serve_http(
        opened: contextlib.AsyncExitStack, app: web.Application, port: int
    ) -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        opened.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "0.0.0.0", port).start()
        return runner

    @property
    def port(self) -> int:
        """The port actually bound (PORT=0 picks a free one)."""
        return int(self._runner.addresses[0][1])

    @property
    def metrics_port(self) -> int:
        """Where `/metrics` and `/readyz` are served: `OI_METRICS_PORT`'s (bound) port, or PORT."""
        if self._metrics_runner is None:
            return self.port
        return int(self._metrics_runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop taking work, give what is in flight the grace period, then close everything."""
        self._accepting = False
        await self._opened.aclose()

    async def _drain(self) -> None:
        left = await self.tasks.drain(self._settings.oi_shutdown_grace_seconds)
        if left:
            log.warning("server.unfinished_requests", count=left)

    async def _resume_forever(self) -> None:
        """Pick up requests no live process holds: at start, then every half lease."""
        while True:
            try:
                await self.resume_unfinished()
            except Exception:  # a database hiccup must not stop resuming for good
                log.exception("server.resume_failed")
            await asyncio.sleep(self._settings.oi_lease_seconds / 2)

    async def resume_unfinished(self) -> int:
        """Hand every unfinished request nobody holds to the responder, which resumes it (or,
        past its attempts, fails it)."""
        resumed = 0
        for request_id in await self.store.resumable():
            request = await self.store.acquire(request_id)
            if request is None:
                continue  # another replica took it first
            resumed += 1
            log.info(
                "request.resumed",
                request_id=request.id,
                attempts=request.attempts,
                interruptions=request.interruptions,
            )
            self.tasks.spawn(self._responder.resume(request), name=f"resume-{request.id}")
        return resumed

    async def _identity(self) -> tuple[str, str | None, str]:
        """The bot's user ID, the team that installed it (whose members are not outsiders;
        Slack names it for every workspace install), and the scopes its token has."""
        try:
            identity = await self.client.auth_test()
        except SlackApiError as error:
            raise ConfigError(
                f"SLACK_BOT_TOKEN was refused by Slack ({error.response.get('error')})"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ConfigError(
                f"Slack could not be reached at SLACK_API_URL={self._settings.slack_api_url} "
                f"({_first_line(error)})"
            ) from None
        scopes = identity.headers.get("x-oauth-scopes") or identity.headers.get("X-OAuth-Scopes")
        return str(identity["user_id"]), identity.get("team_id"), scopes or ""

    async def _check_app_token(self, app_token: str) -> None:
        """A refused app-level token is one line at start: Socket Mode's client would retry it
        for ever. The connection URL this asks for goes unused; it expires by itself."""
        try:
            await self.client.apps_connections_open(app_token=app_token)
        except SlackApiError as error:
            raise ConfigError(
                f"SLACK_APP_TOKEN was refused by Slack ({error.response.get('error')})"
            ) from None

    def _public_app(self) -> web.Application:
        """PORT: Slack's requests and liveness; readiness and metrics unless they have their own."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/healthz", self._healthz)
        if self._settings.oi_metrics_port is None:
            self._add_internal_routes(app)
        if self._settings.slack_app_token is None:
            app.router.add_post("/slack/events", self._slack_events)
        return app

    def _internal_app(self) -> web.Application:
        """OI_METRICS_PORT: what only the cluster (probes, Prometheus) should reach."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        self._add_internal_routes(app)
        return app

    def _add_internal_routes(self, app: web.Application) -> None:
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)

    async def _slack_events(self, request: web.Request) -> web.Response:
        """Slack's HTTP requests, verified on the raw body before anything parses it.

        Unsigned, stale or wrongly signed: 401. Signed but not a JSON object or a form (with a
        JSON object as its `payload`): 400. Over `MAX_BODY_BYTES`: 413, unread. While stopping:
        503, so Slack retries elsewhere.
        """
        started = time.perf_counter()
        if not self._accepting:
            return web.Response(status=503, text="shutting down")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._rejected("too_large")
            raise
        # One value a header, as bolt keeps them: what is verified is what bolt is given.
        headers = {name.lower(): value for name, value in request.headers.items()}
        if not self._signed_by_slack(raw, headers):
            self._rejected("signature")
            return web.json_response({"error": "invalid request"}, status=401)
        text = raw.decode()  # UTF-8, or the signature could not have been checked
        if not _well_formed(text, headers):
            self._rejected("malformed")
            return web.json_response({"error": "malformed request"}, status=400)
        bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers={**headers})
        bolt_response = await self._slack.async_dispatch(bolt_request)
        self.metrics.ack_seconds.observe(time.perf_counter() - started)
        return await to_aiohttp_response(bolt_response)

    def _signed_by_slack(self, raw: bytes, headers: dict[str, str]) -> bool:
        """Slack's signature over this exact body, made in the last five minutes."""
        assert self._verifier is not None
        try:
            return self._verifier.is_valid(
                body=raw,
                timestamp=headers.get("x-slack-request-timestamp"),
                signature=headers.get("x-slack-signature"),
            )
        except ValueError:  # a timestamp that is not a number, a body that is not UTF-8
            return False

    def _rejected(self, reason: str) -> None:
        """Counted, and logged without the body or headers: they are the sender's, not Slack's."""
        self.metrics.rejected_requests.labels(reason).inc()
        log.info("slack.request_rejected", reason=reason)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self._accepting and self.personas.names() and await self.store.ping():
            return web.Response(text="ready")
        return web.Response(status=503, text="not ready")

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), content_type="text/plain")


def shown_database(url: str) -> str:
    """`DATABASE_URL` as it may be printed: its password as `***`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def _first_line(error: BaseException) -> str:
    return (str(error) or type(error).__name__).splitlines()[0]


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has stopped (the resumer touches no store once closing)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _well_formed(text: str, headers: dict[str, str]) -> bool:
    """Whether bolt can take the body: parsed as bolt parses it, a non-empty JSON object."""
    content_type = headers.get("content-type", "").split(";")[0] or None
    try:
        body = parse_body(text, content_type)
    except ValueError:  # JSON that is not JSON, as the body or as a form's `payload`
        return False
    return isinstance(body, dict) and bool(body)
