"""The Slack app manifest: valid for Slack's own schema, and asking for exactly the scopes oi uses.

Slack rejects an invalid manifest only when someone pastes it into "Create app from manifest",
and a missing scope shows up only as a `missing_scope` error in production; an extra scope is a
permission the workspace grants for nothing. So both are checked here, offline, against the
vendored schema (tests/vendor/slack/manifest/) and the Web API calls found in `bot/`.
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7
from slack_sdk.web.async_client import AsyncWebClient

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = Path(__file__).resolve().parent / "vendor" / "slack" / "manifest"
SCHEMA_URL = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/"
SLACK_EVENTS_URL = "https://oi.example.com/slack/events"

# The bot scopes each Web API method needs (docs.slack.dev/reference/methods). A method the
# code starts calling must be added here first, with its scopes: that is the point.
HISTORY_SCOPES = ("channels:history", "groups:history", "im:history")  # one per conversation type
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "auth.test": (),
    "apps.connections.open": (),  # app-level token (connections:write), not the bot token
    "chat.getPermalink": (),
    "chat.postMessage": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.delete": ("chat:write",),
    "assistant.threads.setStatus": ("chat:write",),
    "assistant.threads.setSuggestedPrompts": ("assistant:write",),
    "assistant.threads.setTitle": ("assistant:write",),
    # chat_stream: chat.startStream, chat.appendStream, chat.stopStream
    "chat.stream": ("chat:write",),
    "chat.startStream": ("chat:write",),
    "chat.appendStream": ("chat:write",),
    "chat.stopStream": ("chat:write",),
    # files_upload_v2: files.getUploadURLExternal, then files.completeUploadExternal
    "files.upload.v2": ("files:write",),
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
    "reactions.add": ("reactions:write",),
    "reactions.remove": ("reactions:write",),
    "conversations.replies": HISTORY_SCOPES,
    "conversations.history": HISTORY_SCOPES,
    "users.info": ("users:read",),
    # public and private channels, DMs and group DMs: one scope per conversation type
    "conversations.info": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.members": ("channels:read", "groups:read", "im:read", "mpim:read"),
}
EVENT_SCOPES: dict[str, tuple[str, ...]] = {
    "app_home_opened": (),
    "app_mention": ("app_mentions:read",),
    "assistant_thread_context_changed": (),
    "assistant_thread_started": (),
    "message.channels": ("channels:history",),
    "message.groups": ("groups:history",),
    "message.im": ("im:history",),
}
SLASH_COMMAND_SCOPE = "commands"
# Scopes that no call needs but that change what a call may do; the code that relies on one
# checks the token has it, by the scope's name, and that mention is the use.
SCOPES_CHECKED_BY_NAME = frozenset({"chat:write.customize"})  # username and icon on a message

# AsyncWebClient's Web API methods: `chat_postMessage` calls "chat.postMessage". Its helpers
# (`chat_stream`, `files_upload_v2`) come out under their own names, to be mapped like the rest.
SDK_METHODS = {
    name
    for name, _ in inspect.getmembers(AsyncWebClient, inspect.iscoroutinefunction)
    if not name.startswith("_") and name != "api_call"
}


def called_web_api_methods(root: Path) -> set[str]:
    """The Web API methods the code under `root` calls, as `x.chat_postMessage(…)` or
    `x.api_call("chat.postMessage", …)`; an `api_call` whose method is not a literal is
    reported by its place, so it cannot slip past the scope map."""
    called: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr in SDK_METHODS:
                called.add(node.func.attr.replace("_", "."))
            elif node.func.attr == "api_call":
                called.add(_api_call_method(node) or f"api_call at {path}:{node.lineno}")
    return called


def _api_call_method(call: ast.Call) -> str | None:
    """The literal method name of `api_call("…")` or `api_call(api_method="…")`, else None."""
    arguments = call.args[:1] + [k.value for k in call.keywords if k.arg == "api_method"]
    method = arguments[0] if arguments else None
    if isinstance(method, ast.Constant) and isinstance(method.value, str):
        return method.value
    return None


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def without_schema_key(manifest: dict[str, Any]) -> dict[str, Any]:
    """The examples name their schema by a relative `$schema` URI: not a manifest field to check."""
    return {key: value for key, value in manifest.items() if key != "$schema"}


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    """The top schema dispatches on `_metadata.major_version` to versioned schemas it names by
    URL; the registry serves those URLs from the vendored copies, so nothing is fetched."""
    top = load_json(SCHEMA_DIR / "manifest.schema.json")
    Draft7Validator.check_schema(top)
    registry = Registry().with_resources(
        (SCHEMA_URL + path.name, DRAFT7.create_resource(load_json(path)))
        for path in (SCHEMA_DIR / "schemas").glob("manifest.schema.*.json")
    )
    return Draft7Validator(top, registry=registry)


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return yaml.safe_load((REPO / "manifest.yml").read_text())


def scopes_named(root: Path) -> set[str]:
    """The scopes of `SCOPES_CHECKED_BY_NAME` that the code under `root` names in a string."""
    return {
        node.value
        for path in sorted(root.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Constant) and node.value in SCOPES_CHECKED_BY_NAME
    }


@pytest.fixture(scope="module")
def called_in_bot() -> set[str]:
    return called_web_api_methods(REPO / "bot")


@pytest.fixture(scope="module")
def named_in_bot() -> set[str]:
    return scopes_named(REPO / "bot")


def bot_scopes(manifest: dict[str, Any]) -> set[str]:
    return set(manifest["oauth_config"]["scopes"]["bot"])


def scopes_needed(manifest: dict[str, Any], called: set[str], named: set[str]) -> set[str]:
    """Every bot scope the manifest's events and command and the code's Web API calls need, and
    those the code checks for by name."""
    needed = {scope for method in called for scope in METHOD_SCOPES[method]} | named
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    needed |= {scope for event in events for scope in EVENT_SCOPES[event]}
    if manifest["features"].get("slash_commands"):
        needed.add(SLASH_COMMAND_SCOPE)
    return needed


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_validator_accepts_the_valid_examples_and_rejects_the_invalid(validator, version):
    examples = SCHEMA_DIR / "examples" / version
    assert validator.is_valid(without_schema_key(load_json(examples / "manifest.valid.json")))
    assert not validator.is_valid(without_schema_key(load_json(examples / "manifest.invalid.json")))


def test_manifest_is_valid_in_http_mode(validator, manifest):
    assert manifest["_metadata"]["major_version"] == 1
    validator.validate(manifest)


def test_manifest_is_valid_in_socket_mode(validator, manifest):
    """The variant the manifest's comment describes: Socket Mode on, request URLs deleted."""
    socket_mode = copy.deepcopy(manifest)
    socket_mode["settings"]["socket_mode_enabled"] = True
    del socket_mode["settings"]["event_subscriptions"]["request_url"]
    del socket_mode["settings"]["interactivity"]["request_url"]
    for command in socket_mode["features"]["slash_commands"]:
        del command["url"]
    validator.validate(socket_mode)


def test_manifest_declares_the_ways_in(manifest):
    """`/oi`, mentions, channel/private/DM messages and buttons all reach POST /slack/events."""
    settings = manifest["settings"]
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/oi"
    assert command["should_escape"] is False
    assert set(settings["event_subscriptions"]["bot_events"]) == set(EVENT_SCOPES)
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is False
    urls = {
        command["url"],
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
    }
    assert urls == {SLACK_EVENTS_URL}


def test_scanner_finds_sdk_method_calls_and_api_call_strings(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "reply.py").write_text(
        "async def reply(client, say, method):\n"
        "    await client.chat_postMessage(channel='C1', text='hi')\n"
        "    await self.web.reactions_add(channel='C1', timestamp='1.0', name='eyes')\n"
        "    await client.api_call('assistant.threads.setStatus', json={})\n"
        "    await client.api_call(api_method='chat.update')\n"
        "    await client.api_call(method)\n"
        "    await say('not a client method')\n"
        "    client.chat_postMessage\n"
    )
    assert called_web_api_methods(tmp_path) == {
        "chat.postMessage",
        "reactions.add",
        "assistant.threads.setStatus",
        "chat.update",
        f"api_call at {tmp_path / 'pkg' / 'reply.py'}:6",
    }


def test_scanner_finds_scopes_the_code_checks_for_by_name(tmp_path):
    (tmp_path / "scopes.py").write_text(
        'CUSTOMIZE = "chat:write.customize"\n'
        '# "chat:write" in a comment, and a scope no one checks by name:\n'
        'OTHER = "chat:write"\n'
    )
    assert scopes_named(tmp_path) == {"chat:write.customize"}
    (tmp_path / "scopes.py").write_text("text = 'chat:write.customize is not a constant alone'\n")
    assert scopes_named(tmp_path) == set()


def test_every_web_api_call_in_bot_has_its_scope(manifest, called_in_bot, named_in_bot):
    unmapped = called_in_bot - METHOD_SCOPES.keys()
    assert not unmapped, f"add to METHOD_SCOPES with the bot scopes they need: {sorted(unmapped)}"
    missing = scopes_needed(manifest, called_in_bot, named_in_bot) - bot_scopes(manifest)
    assert not missing, f"manifest.yml lacks bot scopes: {sorted(missing)}"


def test_every_bot_scope_is_needed(manifest, called_in_bot, named_in_bot):
    unused = bot_scopes(manifest) - scopes_needed(manifest, called_in_bot, named_in_bot)
    assert not unused, f"no event, command or Web API call in bot/ needs: {sorted(unused)}"


def test_the_dm_is_an_agent(manifest):
    """Slack shows the DM as an agent (docs.slack.dev/ai/migrating-to-agent-messaging): the
    messages tab, `agent_view` rather than the older `assistant_view`, and the events on which
    oi suggests prompts in either."""
    features = manifest["features"]
    assert features["app_home"]["messages_tab_enabled"] is True
    assert "assistant_view" not in features
    assert features["agent_view"]["agent_description"].strip()
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert {"app_home_opened", "assistant_thread_started", "message.im"} <= set(events)
