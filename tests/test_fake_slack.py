"""The fake Slack held to Slack's published material, and driven by Slack's own clients.

Every other Slack test trusts this fake, so it is checked against what Slack publishes (the
vendored Web API spec and the Java SDK's recorded field supersets in tests/vendor/slack/) and
exercised with slack_sdk's and Bolt's real clients: if the fake drifts from Slack, this file fails,
not a bot test that quietly passes against an API Slack does not have.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.internals import parse_body
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_async_handlers
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.slack_api import COMMON_ERRORS, ERRORS, VENDOR, FakeSlack
from tests.fakes.slack_requests import (
    SAMPLES,
    block_actions_body,
    event_body,
    sample,
    signed_headers,
    slash_command_body,
    socket_envelope,
)

SPEC = json.loads((VENDOR / "slack_web_openapi_v2.json").read_text())
# Methods newer than the 2020 spec, each following its docs.slack.dev reference page (vendored in
# tests/vendor/slack/methods/ and held to below): Socket Mode's apps.connections.open, and the
# AI app methods at docs.slack.dev/reference/methods/<method>.
NOT_IN_SPEC = {
    "apps.connections.open",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "assistant.threads.setStatus",
    "assistant.threads.setSuggestedPrompts",
    "assistant.threads.setTitle",
    "files.getUploadURLExternal",
    "files.completeUploadExternal",
}
# Slack takes POST for every method; slack_sdk posts auth.test and GETs the others here.
GET_ONLY_IN_SPEC = {
    "auth.test",
    "users.info",
    "conversations.info",
    "conversations.members",
    "conversations.replies",
    "conversations.history",
}
# Errors the fake answers with that a method's 2020 `error` enum lacks, each with why it is right.
UNLISTED_ERRORS = {
    "ratelimited": "the body of every HTTP 429 (docs.slack.dev/apis/web-api/rate-limits); "
    "slack_sdk matches it by name. The spec's `rate_limited` is an older, different code",
    "fatal_error": "the body of the fake's HTTP 500; the spec lists it only for some methods",
    "invalid_blocks": "documented now (docs.slack.dev/reference/methods/chat.postMessage)",
    "invalid_blocks_format": "documented for chat.* today, like invalid_blocks",
}
# Common errors every method may answer (docs.slack.dev/reference/methods, "Common errors"): how
# a workspace refuses a method it does not offer, or a token or scope that may not use it.
for _code in (
    "unknown_method",
    "method_deprecated",
    "not_allowed_token_type",
    "missing_scope",
    "ekm_access_denied",
):
    UNLISTED_ERRORS[_code] = "a Common error on every reference page"
# Errors the new methods answer that their reference page's list lacks, each with why it is right.
UNLISTED_PAGE_ERRORS = {
    "invalid_arguments": "Slack's common error for a missing or malformed argument "
    "(docs.slack.dev/reference/methods, Common errors on every page)",
    "msg_too_long": "what Slack answers a stream past 12,000 characters of markdown_text "
    "(CopilotKit/CopilotKit#6064, openclaw/openclaw#143882)",
    "not_authed": "a Common error on every reference page",
    "invalid_auth": "a Common error on every reference page",
    "ratelimited": UNLISTED_ERRORS["ratelimited"],
    "fatal_error": UNLISTED_ERRORS["fatal_error"],
    **{code: UNLISTED_ERRORS[code] for code in ("unknown_method", "method_deprecated")},
    **{code: UNLISTED_ERRORS[code] for code in ("not_allowed_token_type", "missing_scope")},
    "ekm_access_denied": UNLISTED_ERRORS["ekm_access_denied"],
}
# Block shapes the Java SDK's superset knows (it has no `context` text elements, for one): the
# fake returns blocks as they were sent, so they are held to the superset with the rest.
BLOCKS = [
    {"type": "section", "block_id": "summary", "text": {"type": "mrkdwn", "text": "*Summary*"}},
    {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Owner*\npayments"}]},
    {"type": "divider"},
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "retry",
                "text": {"type": "plain_text", "text": "Retry", "emoji": True},
                "value": "request-1",
                "style": "primary",
            }
        ],
    },
]


def _client(fake: FakeSlack, **options: Any) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url, **options)


def _spec_operations(method: str) -> dict[str, Any]:
    return SPEC["paths"][f"/{method}"]


def _spec_error_enum(method: str) -> set[str]:
    operation = next(iter(_spec_operations(method).values()))
    return set(operation["responses"]["default"]["schema"]["properties"]["error"]["enum"])


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", dict: "object", list: "array"}.get(type(value), "null")


def _unknown_fields(actual: Any, superset: Any, path: str = "") -> list[str]:
    """Places in `actual` with no field of a compatible JSON type at the same place in the
    superset. An empty object or array there is free-form (the recorder blanked its content)."""
    if actual is None or superset is None or superset in ({}, []):
        return []
    if _kind(actual) != _kind(superset):
        return [f"{path}: {_kind(actual)}, Slack sends {_kind(superset)}"]
    if isinstance(actual, dict):
        return [
            problem
            for key, value in actual.items()
            for problem in (
                _unknown_fields(value, superset[key], f"{path}/{key}")
                if key in superset
                else [f"{path}/{key}: Slack has no such field"]
            )
        ]
    if isinstance(actual, list):
        problems = []
        for index, item in enumerate(actual):
            fits = [_unknown_fields(item, candidate, f"{path}/{index}") for candidate in superset]
            if all(fits):
                problems += min(fits, key=len)
        return problems
    return []


@functools.cache
def _superset(method: str) -> dict[str, Any]:
    return json.loads((VENDOR / "api" / f"{method}.json").read_text())


# -- held to the spec


def test_every_served_method_is_in_the_spec_with_post():
    for method in set(ERRORS) - NOT_IN_SPEC:
        verbs = set(_spec_operations(method))
        expected = {"get"} if method in GET_ONLY_IN_SPEC else {"post"}
        assert expected <= verbs, f"{method}: the spec has {verbs}"


def test_every_error_the_fake_answers_is_documented_for_its_method():
    for method in set(ERRORS) - NOT_IN_SPEC:
        unlisted = (ERRORS[method] | COMMON_ERRORS) - _spec_error_enum(method)
        assert unlisted <= set(UNLISTED_ERRORS), f"{method}: {sorted(unlisted)}"


def test_the_new_methods_answer_only_errors_their_reference_page_documents():
    for method in NOT_IN_SPEC - {"apps.connections.open"}:
        page = json.loads((VENDOR / "methods" / f"{method}.json").read_text())
        unlisted = (ERRORS[method] | COMMON_ERRORS) - set(page["errors"])
        assert unlisted <= set(UNLISTED_PAGE_ERRORS), f"{method}: {sorted(unlisted)}"


def test_injected_errors_must_be_documented_for_the_method(fake_slack):
    fake_slack.fail("chat.postMessage", "not_in_channel")
    fake_slack.fail("reactions.add", "already_reacted")
    fake_slack.fail("apps.connections.open", "anything")  # no enum to hold it to
    with pytest.raises(ValueError, match="not_in_chanel"):
        fake_slack.fail("chat.postMessage", "not_in_chanel")
    with pytest.raises(ValueError, match="does not serve"):
        fake_slack.fail("chat.scheduleMessage", "invalid_time")
    fake_slack.fail("chat.startStream", "channel_type_not_supported")  # from its reference page
    with pytest.raises(ValueError, match="not_a_code"):
        fake_slack.fail("chat.appendStream", "not_a_code")


async def test_responses_have_only_fields_slack_sends_with_its_types(fake_slack):
    client = _client(fake_slack)
    auth = await client.auth_test()
    parent = await client.chat_postMessage(
        channel="C111",
        text="Summary",
        blocks=BLOCKS,
        metadata={"event_type": "oi_answer", "event_payload": {"request": "r1"}},
    )
    reply = await client.chat_postMessage(channel="C111", text="more", thread_ts=parent["ts"])
    ephemeral = await client.chat_postEphemeral(channel="C111", user="W111", text="only you")
    reaction = await client.reactions_add(channel="C111", timestamp=parent["ts"], name="eyes")
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel="C111", text="x", blocks=[{"type": "divider"}] * 51)

    checked = [
        ("auth.test", auth.data),
        ("chat.postMessage", parent.data),
        ("chat.postMessage", reply.data),
        ("chat.postMessage", refused.value.response.data),
        ("chat.postEphemeral", ephemeral.data),
        ("reactions.add", reaction.data),
    ]
    for method, body in checked:
        assert _unknown_fields(body, _superset(method)) == [], method
    assert reply["message"]["thread_ts"] == parent["ts"]
    assert reply["message"]["parent_user_id"] == fake_slack.bot_user_id


async def test_successes_carry_the_fields_the_spec_requires(fake_slack):
    client = _client(fake_slack)
    posted = await client.chat_postMessage(channel="C111", text="hi")
    bodies = {
        "auth.test": await client.auth_test(),
        "chat.postMessage": posted,
        "chat.update": await client.chat_update(channel="C111", ts=posted["ts"], text="hello"),
        "chat.postEphemeral": await client.chat_postEphemeral(channel="C111", user="W1", text="x"),
        "reactions.add": await client.reactions_add(
            channel="C111", timestamp=posted["ts"], name="a"
        ),
        "reactions.remove": await client.reactions_remove(
            channel="C111", timestamp=posted["ts"], name="a"
        ),
        "chat.delete": await client.chat_delete(channel="C111", ts=posted["ts"]),
    }
    for method, response in bodies.items():
        operation = next(iter(_spec_operations(method).values()))
        required = operation["responses"]["200"]["schema"]["required"]
        assert set(required) <= set(response.data), method


# -- driven by slack_sdk's own client


async def test_post_update_and_read_back_a_thread(fake_slack):
    client = _client(fake_slack)
    parent = await client.chat_postMessage(channel="C111", text="Thinking…")
    first = await client.chat_postMessage(channel="C111", thread_ts=parent["ts"], text="one")
    await client.chat_postMessage(channel="C222", text="elsewhere")
    updated = await client.chat_update(
        channel="C111", ts=first["ts"], text="one, edited", blocks=BLOCKS
    )
    second = await client.chat_postMessage(channel="C111", thread_ts=parent["ts"], text="two")

    assert float(parent["ts"]) < float(first["ts"]) < float(second["ts"])
    assert updated["message"]["blocks"] == BLOCKS
    thread = fake_slack.messages("C111", thread_ts=parent["ts"])
    assert [m["text"] for m in thread] == ["Thinking…", "one, edited", "two"]
    assert thread[1]["blocks"] == BLOCKS and thread[1]["ts"] == first["ts"]
    assert [m["text"] for m in fake_slack.messages("C111")] == ["Thinking…", "one, edited", "two"]

    await client.chat_update(channel="C111", ts=first["ts"], text="text only")  # blocks kept
    assert fake_slack.messages("C111")[1]["blocks"] == BLOCKS
    await client.chat_delete(channel="C111", ts=first["ts"])
    assert [m["text"] for m in fake_slack.messages("C111", parent["ts"])] == ["Thinking…", "two"]
    [call] = fake_slack.calls_to("chat.update")[:1]
    assert call.args["channel"] == "C111"
    assert call.headers["Authorization"] == "Bearer xoxb-test-token"


async def test_history_is_the_channels_parents_newest_first_page_by_page(fake_slack):
    client = _client(fake_slack)
    before = time.time()
    metadata = {"event_type": "oi_question", "event_payload": {"request_id": "r1"}}
    first = await client.chat_postMessage(channel="C111", text="one", metadata=metadata)
    await client.chat_postMessage(channel="C111", thread_ts=first["ts"], text="a reply")
    second = await client.chat_postMessage(channel="C111", text="two")
    third = await client.chat_postMessage(channel="C111", text="three")
    await client.chat_postMessage(channel="C222", text="elsewhere")

    assert before <= float(first["ts"]) <= time.time()  # Slack's ts is its clock's time
    pages = [
        [m["ts"] for m in page["messages"]]
        async for page in await client.conversations_history(channel="C111", limit=2)
    ]
    assert pages == [[third["ts"], second["ts"]], [first["ts"]]]
    since = await client.conversations_history(
        channel="C111", oldest=first["ts"], include_all_metadata=True
    )
    assert [m["ts"] for m in since["messages"]] == [third["ts"], second["ts"]]  # `oldest` is out
    everything = await client.conversations_history(channel="C111", include_all_metadata=True)
    assert everything["messages"][-1]["metadata"] == metadata
    plain = await client.conversations_history(channel="C111")
    assert "metadata" not in plain["messages"][-1]
    with pytest.raises(SlackApiError, match="invalid_ts_oldest"):
        await client.conversations_history(channel="C111", oldest="yesterday")


async def test_updating_or_deleting_an_unknown_message_is_message_not_found(fake_slack):
    client = _client(fake_slack)
    for call in (
        client.chat_update(channel="C111", ts="1700000000.999999", text="x"),
        client.chat_delete(channel="C111", ts="1700000000.999999"),
    ):
        with pytest.raises(SlackApiError) as refused:
            await call
        assert refused.value.response["error"] == "message_not_found"


async def test_a_429_is_retried_after_retry_after_and_lands_once(fake_slack, monkeypatch):
    # slack_sdk sleeps Retry-After + random() seconds; without the jitter the retry is immediate.
    monkeypatch.setattr(builtin_async_handlers, "random", SimpleNamespace(random=lambda: 0.0))
    fake_slack.rate_limit("chat.postMessage", retry_after=0)
    retry = AsyncRateLimitErrorRetryHandler(max_retry_count=1)
    client = _client(fake_slack, retry_handlers=[retry])

    started = time.monotonic()
    response = await client.chat_postMessage(channel="C111", text="hello")

    assert time.monotonic() - started < 1
    assert response["ok"] is True
    calls = fake_slack.calls_to("chat.postMessage")
    assert [(c.status, c.error) for c in calls] == [(429, "ratelimited"), (200, None)]
    assert [m["text"] for m in fake_slack.messages("C111")] == ["hello"]


async def test_a_429_without_a_retry_handler_surfaces_with_retry_after(fake_slack):
    fake_slack.rate_limit("reactions.add", retry_after=7)
    with pytest.raises(SlackApiError) as limited:
        await _client(fake_slack).reactions_add(channel="C1", timestamp="1.2", name="eyes")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "7"
    assert limited.value.response["error"] == "ratelimited"


async def test_injected_errors_are_consumed_in_order(fake_slack):
    fake_slack.fail("chat.postMessage", "not_in_channel")
    fake_slack.server_error("chat.postMessage")
    client = _client(fake_slack)

    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel="C111", text="hello")
    assert refused.value.response.status_code == 200
    assert refused.value.response["error"] == "not_in_channel"
    with pytest.raises(SlackApiError) as broken:
        await client.chat_postMessage(channel="C111", text="hello")
    assert broken.value.response.status_code == 500
    assert (await client.chat_postMessage(channel="C111", text="hello"))["ok"] is True
    assert len(fake_slack.messages("C111")) == 1


async def test_slack_message_limits(fake_slack):
    client = _client(fake_slack)
    refusals = {
        "invalid_blocks": dict(channel="C1", text="x", blocks=[{"type": "divider"}] * 51),
        "msg_too_long": dict(channel="C1", text="x" * 40_001),
        "no_text": dict(channel="C1"),
        "channel_not_found": dict(text="x"),
    }
    for error, body in refusals.items():
        with pytest.raises(SlackApiError) as refused:
            await client.api_call("chat.postMessage", json=body)
        assert refused.value.response["error"] == error
    with pytest.raises(SlackApiError) as untyped:
        await client.api_call("chat.postMessage", json={"channel": "C1", "blocks": [{"text": "x"}]})
    assert untyped.value.response["error"] == "invalid_blocks"
    assert untyped.value.response["response_metadata"]["messages"]

    divider = {"type": "divider"}
    await client.chat_postMessage(channel="C1", text="x" * 40_000, blocks=[divider] * 50)
    await client.api_call("chat.postMessage", json={"channel": "C1", "blocks": [divider]})
    assert len(fake_slack.messages("C1")) == 2


async def test_form_bodies_and_query_strings_are_read_like_json(fake_slack):
    client = _client(fake_slack)
    posted = await client.api_call(
        "chat.postMessage", data={"channel": "C1", "text": "hi", "blocks": json.dumps(BLOCKS)}
    )
    assert fake_slack.messages("C1")[0]["blocks"] == BLOCKS
    with pytest.raises(SlackApiError) as refused:
        await client.api_call("chat.postMessage", data={"channel": "C1", "blocks": "[{"})
    assert refused.value.response["error"] == "invalid_blocks_format"
    await client.reactions_add(channel="C1", timestamp=posted["ts"], name="eyes")  # query string
    assert fake_slack.reactions("C1", posted["ts"]) == ["eyes"]


async def test_reactions_are_added_once_and_removed_once(fake_slack):
    client = _client(fake_slack)
    await client.reactions_add(channel="C1", timestamp="1.2", name="eyes")
    with pytest.raises(SlackApiError, match="already_reacted"):
        await client.reactions_add(channel="C1", timestamp="1.2", name="eyes")
    await client.reactions_remove(channel="C1", timestamp="1.2", name="eyes")
    with pytest.raises(SlackApiError, match="no_reaction"):
        await client.reactions_remove(channel="C1", timestamp="1.2", name="eyes")
    assert fake_slack.reactions("C1", "1.2") == []


async def test_tokens_and_unknown_methods(fake_slack):
    cases = [
        (AsyncWebClient(base_url=fake_slack.api_url), "auth.test", "not_authed"),
        (AsyncWebClient(token="xoxb-no", base_url=fake_slack.api_url), "auth.test", "invalid_auth"),
        (_client(fake_slack), "apps.connections.open", "invalid_auth"),  # needs the app token
        (_client(fake_slack), "conversations.kick", "unknown_method"),
    ]
    for client, method, error in cases:
        with pytest.raises(SlackApiError) as refused:
            await client.api_call(method)
        assert refused.value.response["error"] == error


async def test_response_urls_are_recorded(fake_slack):
    url = fake_slack.response_url("command-1")
    response = await AsyncWebhookClient(url).send(text="Working on it", response_type="ephemeral")
    assert (response.status_code, response.body) == (200, "ok")
    [call] = fake_slack.calls_to("response_url")
    assert call.args == {"text": "Working on it", "response_type": "ephemeral"}
    assert call.path == "/response/command-1"


async def test_waiting_for_calls_without_sleeping(fake_slack):
    waiting = asyncio.to_thread(fake_slack.wait_for_calls, "chat.postMessage", 2)
    waiter = asyncio.create_task(waiting)
    client = _client(fake_slack)
    await client.chat_postMessage(channel="C1", text="one")
    await client.chat_postMessage(channel="C1", text="two")
    calls = await asyncio.wait_for(waiter, timeout=5)
    assert [c.args["text"] for c in calls] == ["one", "two"]


def test_waiting_times_out_with_the_calls_so_far(fake_slack):
    with pytest.raises(AssertionError, match="no calls"):
        fake_slack.wait_for(lambda fake: bool(fake.calls), timeout=0.05)


# -- Socket Mode


async def _deliver_mention(fake: FakeSlack, envelope_id: str) -> dict[str, Any]:
    """Push the app_mention sample to the connected client; return the client's ack."""
    envelope = socket_envelope(sample("app_mention.json"), envelope_id=envelope_id)
    await asyncio.to_thread(fake.send_envelope, envelope)
    return await asyncio.to_thread(fake.wait_for_ack, envelope_id)


async def test_socket_mode_round_trip_with_slack_sdk(fake_slack):
    received: list[SocketModeRequest] = []

    async def acknowledge(client: SocketModeClient, request: SocketModeRequest) -> None:
        received.append(request)
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

    client = SocketModeClient(
        app_token=fake_slack.app_token,
        web_client=AsyncWebClient(base_url=fake_slack.api_url),
        auto_reconnect_enabled=False,
    )
    client.socket_mode_request_listeners.append(acknowledge)
    try:
        await client.connect()
        ack = await _deliver_mention(fake_slack, "env-1")
    finally:
        await client.close()

    assert ack == {"envelope_id": "env-1"}
    assert [r.payload for r in received] == [sample("app_mention.json")]
    [opened] = fake_slack.calls_to("apps.connections.open")
    assert opened.headers["Authorization"] == f"Bearer {fake_slack.app_token}"


async def test_socket_mode_drives_a_bolt_app_that_answers_in_the_thread(fake_slack):
    app = AsyncApp(client=_client(fake_slack))

    @app.event("app_mention")
    async def answer(event: dict[str, Any], say) -> None:
        await say(text="on it", thread_ts=event["ts"])

    handler = AsyncSocketModeHandler(
        app, app_token=fake_slack.app_token, web_client=AsyncWebClient(base_url=fake_slack.api_url)
    )
    try:
        await handler.connect_async()
        await _deliver_mention(fake_slack, "env-2")
        [posted] = await asyncio.to_thread(fake_slack.wait_for_calls, "chat.postMessage", 1)
    finally:
        await handler.close_async()

    assert posted.args == {
        "channel": "C111",
        "text": "on it",
        "thread_ts": "1595926230.009600",
        "team_id": "T111",
    }  # Bolt's per-request client adds the event's team_id


def test_send_envelope_waits_for_a_client(fake_slack):
    with pytest.raises(AssertionError, match="no Socket Mode client"):
        fake_slack.send_envelope(socket_envelope({}, envelope_id="e"), timeout=0.05)


# -- what Slack sends the bot


def test_signed_headers_pass_slacks_verifier():
    body = event_body(sample("app_mention.json")["event"], event_id="Ev1")
    headers = signed_headers(body, "shh")
    timestamp, signature = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    assert SignatureVerifier("shh").is_valid(body, timestamp, signature)
    assert SignatureVerifier("shh").is_valid(body.encode(), timestamp, signature)
    assert not SignatureVerifier("other").is_valid(body, timestamp, signature)
    assert not SignatureVerifier("shh").is_valid(body + " ", timestamp, signature)
    stale = signed_headers(body, "shh", timestamp=int(time.time()) - 600)
    assert not SignatureVerifier("shh").is_valid(
        body, stale["X-Slack-Request-Timestamp"], stale["X-Slack-Signature"]
    )
    assert headers["Content-Type"] == "application/json"
    assert signed_headers("a=b", "shh")["Content-Type"] == "application/x-www-form-urlencoded"


def test_every_sample_loads():
    names = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".json", ".txt"))
    assert len(names) == 13
    for name in names:
        assert sample(name)
    assert sample("slash_command.form-urlencoded.txt") == sample("slash_command.fields.json")
    assert sample("message.thread_reply")["event"]["thread_ts"] == "1726133698.626339"


def test_slash_command_body_is_the_sample_with_our_fields():
    original = (SAMPLES / "slash_command.form-urlencoded.txt").read_text()
    fields = sample("slash_command.form-urlencoded.txt")
    same = slash_command_body(
        fields["text"],
        command=fields["command"],
        user=fields["user_id"],
        response_url=fields["response_url"],
    )
    assert same == original

    body = slash_command_body(
        "backend-engineer review this", channel="C9", response_url="http://x/response/1"
    )
    parsed = parse_body(body, "application/x-www-form-urlencoded")
    assert parsed == {
        **fields,
        "command": "/oi",
        "text": "backend-engineer review this",
        "channel_id": "C9",
        "response_url": "http://x/response/1",
    }
    assert list(dict(parse_qsl(body))) == list(fields)


def test_event_body_is_an_event_callback_envelope():
    event = {**sample("message.thread_reply.json")["event"], "text": "and retries?"}
    body = json.loads(event_body(event, event_id="Ev9", team="T9"))
    assert body["type"] == "event_callback"
    assert (body["event"], body["event_id"], body["team_id"]) == (event, "Ev9", "T9")
    assert body["event_time"] == 1726133700
    assert (
        body["authorizations"][0] | {"user_id": "UBOT", "team_id": "T9", "is_bot": True}
        == (body["authorizations"][0])
    )
    assert set(body) == set(sample("message.channel.json"))


def test_block_actions_body_is_interactivity_as_slack_posts_it():
    body = block_actions_body(
        "retry",
        "request-1",
        channel="C9",
        message_ts="1700000000.000100",
        user="W9",
        response_url="http://x/response/2",
    )
    assert body.startswith("payload=")
    payload = parse_body(body, "application/x-www-form-urlencoded")
    assert payload["type"] == "block_actions"
    [action] = payload["actions"]
    assert (action["action_id"], action["value"]) == ("retry", "request-1")
    assert payload["container"]["message_ts"] == payload["message"]["ts"] == "1700000000.000100"
    assert payload["container"]["channel_id"] == payload["channel"]["id"] == "C9"
    assert (payload["user"]["id"], payload["response_url"]) == ("W9", "http://x/response/2")


# -- Slack's platform for AI apps, driven by slack_sdk's own helpers

RECIPIENT = {"recipient_user_id": "W111", "recipient_team_id": "T111"}


async def _question(client: AsyncWebClient, channel: str = "C111") -> str:
    """The `ts` of a message to answer in its thread (the bot's own will do for the fake)."""
    return (await client.chat_postMessage(channel=channel, text="What about retries?"))["ts"]


async def test_chat_stream_buffers_appends_and_stops_with_blocks(fake_slack):
    client = _client(fake_slack)
    question = await _question(client)
    stream = await client.chat_stream(
        channel="C111", thread_ts=question, buffer_size=100, **RECIPIENT
    )
    parts = [f"part {n} " + "x" * 40 + "\n" for n in range(10)]  # 48 characters each
    for part in parts:
        await stream.append(markdown_text=part)
    await stream.stop(blocks=BLOCKS, metadata={"event_type": "oi_answer", "event_payload": {}})

    calls = [c.method for c in fake_slack.calls if c.method.startswith("chat.")]
    # The helper posts once its buffer holds >= buffer_size characters: every third part here,
    # the first flush starting the stream; stop() sends what is left.
    assert calls == [
        "chat.postMessage",
        "chat.startStream",
        "chat.appendStream",
        "chat.appendStream",
        "chat.stopStream",
    ]
    [start] = fake_slack.calls_to("chat.startStream")
    assert start.args["chunks"] == [{"type": "markdown_text", "text": "".join(parts[:3])}]
    assert "markdown_text" not in start.args  # slack-sdk 3.48 sends text only as chunks
    assert (start.args["recipient_user_id"], start.args["recipient_team_id"]) == ("W111", "T111")
    [answer] = fake_slack.messages("C111", question)[1:]
    assert answer["ts"] == stream.ts
    assert answer["text"] == "".join(parts)
    assert answer["blocks"] == BLOCKS
    assert answer["metadata"]["event_type"] == "oi_answer"
    assert answer["streaming_state"] == "completed"
    assert not fake_slack.is_streaming("C111", stream.ts)
    texts = [c["text"] for c in fake_slack.stream_chunks("C111", stream.ts)]
    assert "".join(texts) == "".join(parts)


async def test_task_and_plan_chunks_are_kept_in_order(fake_slack):
    client = _client(fake_slack)
    question = await _question(client, channel="D111")  # a DM: no recipient needed
    task = {"type": "task_update", "id": "read-1", "title": "Reading acme/payments#42"}
    sources = [{"type": "url", "text": "acme/payments#42", "url": "https://github.com/acme"}]
    started = await client.chat_startStream(
        channel="D111", thread_ts=question, chunks=[{"type": "plan_update", "title": "Reading"}]
    )
    await client.chat_appendStream(
        channel="D111", ts=started["ts"], chunks=[{**task, "status": "in_progress"}]
    )
    done = {**task, "status": "complete", "sources": sources}
    await client.chat_appendStream(channel="D111", ts=started["ts"], chunks=[done])
    await client.chat_appendStream(channel="D111", ts=started["ts"], markdown_text="*Summary*")
    stopped = await client.chat_stopStream(channel="D111", ts=started["ts"])

    kinds = [(c["type"], c.get("status")) for c in fake_slack.stream_chunks("D111", started["ts"])]
    assert kinds == [
        ("plan_update", None),
        ("task_update", "in_progress"),
        ("task_update", "complete"),
        ("markdown_text", None),
    ]
    assert stopped["message"]["text"] == "*Summary*"
    assert stopped["message"]["thread_ts"] == question


async def test_a_stopped_or_expired_stream_refuses_appends_but_takes_updates(fake_slack):
    client = _client(fake_slack)
    question = await _question(client)
    stopped = await client.chat_startStream(
        channel="C111", thread_ts=question, markdown_text="one", **RECIPIENT
    )
    await client.chat_stopStream(channel="C111", ts=stopped["ts"])
    expired = await client.chat_startStream(
        channel="C111", thread_ts=question, markdown_text="Reading…", **RECIPIENT
    )
    fake_slack.expire_stream("C111", expired["ts"])

    for ts in (stopped["ts"], expired["ts"]):
        for call in (
            client.chat_appendStream(channel="C111", ts=ts, markdown_text="more"),
            client.chat_stopStream(channel="C111", ts=ts),
        ):
            with pytest.raises(SlackApiError) as refused:
                await call
            assert refused.value.response["error"] == "message_not_in_streaming_state"
    updated = await client.chat_update(channel="C111", ts=expired["ts"], text="The answer")
    assert updated["message"]["text"] == "The answer"
    assert [m["text"] for m in fake_slack.messages("C111", question)][1:] == ["one", "The answer"]
    with pytest.raises(ValueError, match="no open stream"):
        fake_slack.expire_stream("C111", expired["ts"])


async def test_streaming_refusals(fake_slack):
    client = _client(fake_slack)
    question = await _question(client)
    stream = await client.chat_startStream(channel="C111", thread_ts=question, **RECIPIENT)
    ts = stream["ts"]
    refusals = {
        "missing_recipient_user_id": client.chat_startStream(channel="C111", thread_ts=question),
        "missing_recipient_team_id": client.chat_startStream(
            channel="C111", thread_ts=question, recipient_user_id="W111"
        ),
        "invalid_arguments": client.api_call("chat.startStream", json={"channel": "D1"}),
        "msg_too_long": client.chat_appendStream(channel="C111", ts=ts, markdown_text="x" * 12_001),
        "invalid_chunks": client.chat_appendStream(
            channel="C111", ts=ts, chunks=[{"type": "task_update", "title": "no id or status"}]
        ),
        "no_text": client.api_call("chat.appendStream", json={"channel": "C111", "ts": ts}),
        "msg_blocks_too_many": client.chat_stopStream(
            channel="C111", ts=ts, blocks=[{"type": "divider"}] * 51
        ),
        "message_not_found": client.chat_appendStream(
            channel="C111", ts="1700000000.999999", markdown_text="x"
        ),
    }
    for error, call in refusals.items():
        with pytest.raises(SlackApiError) as refused:
            await call
        assert refused.value.response["error"] == error
    assert fake_slack.is_streaming("C111", ts)  # nothing refused changed it

    await client.chat_appendStream(channel="C111", ts=ts, markdown_text="x" * 12_000)
    with pytest.raises(SlackApiError, match="msg_too_long"):  # the message is full
        await client.chat_appendStream(channel="C111", ts=ts, markdown_text="y")
    await client.chat_stopStream(channel="C111", ts=ts, blocks=[{"type": "divider"}] * 50)
    assert fake_slack.messages("C111", question)[1]["text"] == "x" * 12_000


async def test_a_429_on_append_is_retried_and_lands_once(fake_slack, monkeypatch):
    monkeypatch.setattr(builtin_async_handlers, "random", SimpleNamespace(random=lambda: 0.0))
    retry = AsyncRateLimitErrorRetryHandler(max_retry_count=1)
    client = _client(fake_slack, retry_handlers=[retry])
    question = await _question(client)
    stream = await client.chat_startStream(channel="C111", thread_ts=question, **RECIPIENT)
    fake_slack.rate_limit("chat.appendStream", retry_after=0)
    await client.chat_appendStream(channel="C111", ts=stream["ts"], markdown_text="once")
    assert [c.status for c in fake_slack.calls_to("chat.appendStream")] == [429, 200]
    assert fake_slack.messages("C111", question)[1]["text"] == "once"


async def test_assistant_thread_methods_are_recorded_and_validated(fake_slack):
    client = _client(fake_slack)
    prompts = [{"title": "Review a PR", "message": "Review acme/payments#42"}]
    await client.assistant_threads_setStatus(
        channel_id="D111",
        thread_ts="1.1",
        status="is reading acme/payments#42…",
        loading_messages=["Reading…", "Thinking…"],
    )
    await client.assistant_threads_setTitle(channel_id="D111", thread_ts="1.1", title="Retries")
    await client.assistant_threads_setSuggestedPrompts(
        channel_id="D111", prompts=prompts, title="Ask the Backend Engineer"
    )
    assert fake_slack.assistant_thread("D111", "1.1") == {
        "status": "is reading acme/payments#42…",
        "loading_messages": ["Reading…", "Thinking…"],
        "title": "Retries",
    }
    assert fake_slack.assistant_thread("D111") == {
        "prompts": prompts,
        "prompts_title": "Ask the Backend Engineer",
    }
    await client.assistant_threads_setStatus(channel_id="D111", thread_ts="1.1", status="")
    assert fake_slack.assistant_thread("D111", "1.1")["status"] == ""  # cleared

    refusals = {
        "invalid_thread_ts": ("assistant.threads.setTitle", {"channel_id": "D1", "title": "t"}),
        "channel_not_found": ("assistant.threads.setStatus", {"thread_ts": "1.1", "status": "s"}),
        "invalid_arguments": (
            "assistant.threads.setSuggestedPrompts",
            {"channel_id": "D1", "prompts": [{"title": "no message"}]},
        ),
    }
    for error, (method, body) in refusals.items():
        with pytest.raises(SlackApiError) as refused:
            await client.api_call(method, json=body)
        assert refused.value.response["error"] == error


async def test_files_upload_v2_uploads_and_shares_in_the_thread(fake_slack):
    client = _client(fake_slack)
    question = await _question(client)
    content = "# The rest of the answer\n\n" + "détail " * 2_000
    uploaded = await client.files_upload_v2(
        channel="C111",
        thread_ts=question,
        filename="answer.md",
        title="The whole answer",
        content=content,
        initial_comment="The rest is in this file.",
    )

    [upload] = fake_slack.uploaded_files()
    assert uploaded["file"]["id"] == upload.id
    assert (upload.name, upload.title) == ("answer.md", "The whole answer")
    assert upload.content == content.encode()
    assert upload.length == len(content.encode())
    assert (upload.channel, upload.thread_ts) == ("C111", question)
    [get_url] = fake_slack.calls_to("files.getUploadURLExternal")
    assert get_url.args == {"filename": "answer.md", "length": str(len(content.encode()))}
    [complete] = fake_slack.calls_to("files.completeUploadExternal")
    assert json.loads(complete.args["files"]) == [{"id": upload.id, "title": "The whole answer"}]
    shared = fake_slack.messages("C111", question)[-1]
    assert shared["text"] == "The rest is in this file."
    assert [f["name"] for f in shared["files"]] == ["answer.md"]


async def test_file_upload_refusals(fake_slack):
    client = _client(fake_slack)
    with pytest.raises(SlackApiError, match="missing_argument"):
        await client.files_getUploadURLExternal(filename="empty.md", length=0)
    url = await client.files_getUploadURLExternal(filename="a.md", length=3)
    with pytest.raises(SlackApiError, match="file_not_found"):  # nothing posted to the URL yet
        await client.files_completeUploadExternal(files=[{"id": url["file_id"]}])
    with pytest.raises(SlackApiError, match="file_not_found"):
        await client.files_completeUploadExternal(files=[{"id": "F404"}])
    assert fake_slack.uploaded_files()[0].content is None
