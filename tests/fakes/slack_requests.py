"""What Slack sends the bot: signed requests built from Slack's own sample payloads.

Over HTTP, Slack signs every request
(https://docs.slack.dev/authentication/verifying-requests-from-slack): `X-Slack-Signature` is
`v0=` + HMAC-SHA256 of `v0:{timestamp}:{raw body}` with the app's signing secret. Events arrive
as JSON, slash commands as a form, interactivity as a form with one field, `payload`, holding the
JSON. Over Socket Mode the same payloads arrive wrapped in an envelope.
The bodies here start from the vendored samples (tests/vendor/slack/samples/, taken from
bolt-python's tests), so they carry every field Slack sends, not only the ones a test thinks of.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from tests.fakes.slack_api import VENDOR

SAMPLES = VENDOR / "samples"
_NOWHERE = "http://127.0.0.1:9/response"  # a closed port: a test that forgets one reaches nothing


def sample(name: str) -> dict[str, Any]:
    """A fresh copy of a vendored sample, e.g. `app_mention.json` (the `.json` may be left off);
    `slash_command.form-urlencoded.txt` comes back as its form fields, in order."""
    if not name.endswith((".json", ".txt")):
        name += ".json"
    text = (SAMPLES / name).read_text()
    if name.endswith(".txt"):
        return dict(parse_qsl(text, keep_blank_values=True))
    return json.loads(text)


def signed_headers(
    body: bytes | str, signing_secret: str, timestamp: int | None = None
) -> dict[str, str]:
    """The headers Slack sends with `body`: its signature, timestamp (now by default; an old one
    makes a stale request) and content type (JSON for an event, else a form)."""
    raw = body.encode() if isinstance(body, str) else body
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(signing_secret.encode(), b"v0:%d:%s" % (timestamp, raw), hashlib.sha256)
    is_json = raw.lstrip().startswith(b"{")
    return {
        "Content-Type": "application/json" if is_json else "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }


def slash_command_body(
    text: str,
    *,
    command: str = "/oi",
    channel: str = "C111",
    user: str = "W111",
    team: str = "T111",
    response_url: str | None = None,
    trigger_id: str | None = None,
) -> str:
    """A slash command's form body. Pass `response_url=fake_slack.response_url(…)` whenever the
    bot may respond; by default it points at a closed loopback port, never at hooks.slack.com."""
    fields = sample("slash_command.form-urlencoded.txt")
    fields.update(command=command, text=text, channel_id=channel, user_id=user, team_id=team)
    fields["response_url"] = response_url or _NOWHERE
    if trigger_id is not None:
        fields["trigger_id"] = trigger_id
    return urlencode(fields)


def event_body(
    event: dict[str, Any],
    *,
    event_id: str,
    team: str = "T111",
    api_app_id: str = "A111",
    bot_user_id: str = "UBOT",
    event_time: int | None = None,
) -> str:
    """The `event_callback` envelope around `event`, as Slack posts it to the Events API URL;
    `authorizations` names the bot, as in modern payloads."""
    body = sample("message.channel.json")
    body.update(team_id=team, api_app_id=api_app_id, event=event, event_id=event_id)
    body["event_time"] = event_time if event_time is not None else int(float(event.get("ts", 0)))
    authorization = {**body["authorizations"][0], "team_id": team, "user_id": bot_user_id}
    body["authorizations"] = [authorization]
    return json.dumps(body)


def assistant_thread_event(
    type: str = "assistant_thread_started",
    *,
    channel: str = "D111",
    thread_ts: str = "1726133698.626339",
    user: str = "W111",
) -> dict[str, Any]:
    """`user` started (or, with `assistant_thread_context_changed`, looked elsewhere beside) the
    thread `thread_ts` of their DM `channel` with the bot, in Slack's older assistant view."""
    event = sample(f"{type}.json")["event"]
    event["assistant_thread"].update(channel_id=channel, thread_ts=thread_ts, user_id=user)
    return event


def app_home_opened_event(
    *, tab: str = "messages", channel: str = "D111", user: str = "W111"
) -> dict[str, Any]:
    """`user` opened the bot's App Home on `tab`: `messages` is the DM, the agent view's."""
    event = sample("app_home_opened.messages.json")["event"]
    event.update(tab=tab, channel=channel, user=user)
    return event


def block_actions_body(
    action_id: str,
    value: str,
    *,
    channel: str = "C111",
    message_ts: str = "1678252213.679169",
    user: str = "U111",
    response_url: str = "http://localhost:8888/webhook",
    message: dict[str, Any] | None = None,
    team: str = "T111",
) -> str:
    """A button click on the bot's message `message_ts`, as Slack posts interactivity:
    `payload=` + the URL-quoted JSON. `message` replaces the sample's clicked message; `team`
    is the workspace's and the clicker's own team (another one: Slack Connect)."""
    body = _block_actions(channel, message_ts, user, response_url, message, team)
    body["actions"][0].update(action_id=action_id, value=value)
    return "payload=" + quote(json.dumps(body))


def feedback_buttons_body(
    action_id: str,
    value: str,
    *,
    label: str = "👍",
    channel: str = "C111",
    message_ts: str = "1678252213.679169",
    user: str = "U111",
    response_url: str = "http://localhost:8888/webhook",
    team: str = "T111",
) -> str:
    """A click on one of Slack's feedback buttons (a `feedback_buttons` element in a
    `context_actions` block): the action is the element's, typed `feedback_buttons`, with the
    clicked button's `value` and text (bolt-js's FeedbackButtonsAction,
    https://docs.slack.dev/tools/bolt-js/reference/interfaces/FeedbackButtonsAction)."""
    body = _block_actions(channel, message_ts, user, response_url, None, team)
    text = {"type": "plain_text", "text": label, "emoji": True}
    body["actions"][0].update(type="feedback_buttons", action_id=action_id, value=value, text=text)
    return "payload=" + quote(json.dumps(body))


def _block_actions(
    channel: str,
    message_ts: str,
    user: str,
    response_url: str,
    message: dict[str, Any] | None,
    team: str,
) -> dict[str, Any]:
    body = sample("block_actions.json")
    body["team"]["id"] = body["user"]["team_id"] = team
    body["container"].update(message_ts=message_ts, channel_id=channel)
    body["channel"]["id"] = channel
    body["user"]["id"] = user
    body["message"] = {**(message or body["message"]), "ts": message_ts}
    body["response_url"] = response_url
    return body


def socket_envelope(
    payload: dict[str, Any], *, envelope_id: str, type: str = "events_api"
) -> dict[str, Any]:
    """A payload as Socket Mode delivers it (docs.slack.dev/apis/events-api/using-socket-mode):
    `events_api`, `slash_commands` or `interactive`; only the last two accept a response payload."""
    envelope: dict[str, Any] = {
        "envelope_id": envelope_id,
        "payload": payload,
        "type": type,
        "accepts_response_payload": type != "events_api",
    }
    if type == "events_api":
        envelope.update(retry_attempt=0, retry_reason="")
    return envelope
