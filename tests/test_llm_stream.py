"""The streamed LLM call over real HTTP against the local OpenAI-compatible server: drafts as the
model writes, the same Reply and the same failures as without streaming, and servers that cannot
stream."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import jiter
import pytest
from structlog.testing import capture_logs

from bot.core.answer import Answer
from bot.core.conversation import Message
from bot.core.engine import Engine
from bot.core.errors import (
    LLMBadResponseError,
    LLMInvalidOutputError,
    LLMRefusalError,
    LLMTimeoutError,
    LLMTruncatedError,
    LLMUnavailableError,
    LLMUnreachableError,
)
from bot.core.persona import load_personas
from bot.core.progress import Draft, Step
from bot.core.prompt import build_messages, new_marker_tag
from bot.llm import LLMClient, request_body
from tests.fakes import openai_api
from tests.fakes.openai_api import VALID_ANSWER, FakeOpenAI, ServerFamily

PERSONA = load_personas().get("backend-engineer")
KEY = "sk-test-0123456789abcdef"
CONTENT = json.dumps(VALID_ANSWER)
# Long enough for any draft to arrive; a wait that ends this way fails the test.
WAIT = 10


class Drafts:
    """An `on_draft` that keeps every draft, in order, and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._arrived: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def __call__(self, draft: Draft) -> None:
        self.seen.append(dict(draft))
        self._arrived.put_nowait(dict(draft))

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self._arrived.get(), WAIT)

    def waiting(self) -> int:
        return self._arrived.qsize()


def _client(fake: FakeOpenAI, **overrides: Any) -> LLMClient:
    options: dict[str, Any] = dict(
        api_key=KEY,
        base_url=fake.base_url,
        default_model="test-model",
        timeout_seconds=5,
        max_retries=0,
        deadline_seconds=WAIT,
    )
    options.update(overrides)
    return LLMClient(**options)


def _messages(question: str = "Review the retry design.") -> list[Message]:
    return build_messages(persona=PERSONA, question=question, tag=new_marker_tag())


async def _answer(client: LLMClient, on_draft: Drafts | None, question: str = "Review it."):
    try:
        return await client.answer(_messages(question), on_draft=on_draft)
    finally:
        await client.aclose()


def _serving(fake: FakeOpenAI, family: ServerFamily) -> FakeOpenAI:
    """The fake, behaving from now on like a server of `family`."""
    fake.family = family
    return fake


def _streamed(request: dict[str, Any]) -> bool:
    return request.get("stream") is True and request["stream_options"] == {"include_usage": True}


def _is_prefix(draft: Any, whole: Any) -> bool:
    """`draft` is `whole` as written so far: an equal value, a string cut short, or a list or
    object whose last member is still being written."""
    if isinstance(draft, str) and isinstance(whole, str):
        return whole.startswith(draft)
    if isinstance(draft, list) and isinstance(whole, list):
        if not draft:
            return True
        if len(draft) > len(whole) or draft[:-1] != whole[: len(draft) - 1]:
            return False
        return _is_prefix(draft[-1], whole[len(draft) - 1])
    if isinstance(draft, dict) and isinstance(whole, dict):
        keys = list(draft)
        if keys != list(whole)[: len(keys)]:
            return False
        done = all(draft[key] == whole[key] for key in keys[:-1])
        return done and (not keys or _is_prefix(draft[keys[-1]], whole[keys[-1]]))
    return bool(draft == whole)


async def test_drafts_grow_in_order_and_the_reply_is_the_whole_answer(fake_openai):
    drafts = Drafts()
    reply = await _answer(_client(fake_openai), drafts)
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    assert reply.attempts == 1
    [request] = fake_openai.requests
    assert _streamed(request)
    # many drafts, each one further into the answer than the one before, the summary first
    assert len(drafts.seen) > 10
    assert all(_is_prefix(draft, VALID_ANSWER) for draft in drafts.seen)
    assert all(_is_prefix(a, b) and a != b for a, b in itertools.pairwise(drafts.seen))
    assert list(drafts.seen[0]) == ["summary"]
    assert list(drafts.seen[-1]) == list(VALID_ANSWER)
    assert drafts.seen[-1] == VALID_ANSWER
    orders = [list(draft) for draft in drafts.seen]
    assert ["summary", "recommendation"] in orders


async def test_each_draft_arrives_before_the_server_sends_the_next_chunk(fake_openai):
    """Causality, not a stopwatch: the server holds every chunk until the test lets it go, and
    each draft the chunks so far make must arrive while the rest is still held back."""
    fake_openai.script(openai_api.paced(openai_api.answer()))
    drafts = Drafts()
    answering = asyncio.create_task(_answer(_client(fake_openai), drafts))
    try:
        fake_openai.send_chunks(1)  # the role
        written, last = "", {}
        for piece in openai_api.stream_pieces(CONTENT):
            fake_openai.send_chunks(1)
            written += piece
            expected = jiter.from_json(written.encode(), partial_mode="trailing-strings")
            if not piece.isspace() and expected != last:
                assert await drafts.next() == expected
                last = expected
        assert last == VALID_ANSWER
        fake_openai.send_chunks(2)  # the finish reason, the usage
        reply = await answering
    finally:
        answering.cancel()
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    assert drafts.waiting() == 0


async def test_usage_is_counted_from_the_usage_chunk(fake_openai):
    streamed = await _answer(_client(fake_openai), Drafts(), "Same question")
    whole = await _answer(_client(fake_openai), None, "Same question")
    first, second = fake_openai.requests
    assert _streamed(first) and "stream" not in second
    assert streamed.usage == whole.usage
    assert streamed.usage.prompt_tokens > 0 and streamed.usage.completion_tokens > 0


@pytest.mark.parametrize("mode", ["auto", "json_schema", "json_object", "prompt"])
async def test_without_on_draft_the_request_is_exactly_as_before(fake_openai, mode):
    messages = _messages("Outbox or not?")
    client = _client(fake_openai, structured_output=mode)
    try:
        await client.answer(messages)
    finally:
        await client.aclose()
    [request] = fake_openai.requests
    assert request == request_body(messages, model="test-model", mode=mode)
    assert "stream" not in request and "stream_options" not in request


@pytest.mark.parametrize("mode", ["json_schema", "json_object"])
async def test_each_mode_that_holds_the_reply_to_json_streams(fake_openai, mode):
    drafts = Drafts()
    reply = await _answer(_client(fake_openai, structured_output=mode), drafts)
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    [request] = fake_openai.requests
    assert _streamed(request)
    assert request["response_format"]["type"] == mode
    assert drafts.seen[-1] == VALID_ANSWER


@pytest.mark.parametrize("mode", ["auto", "json_schema", "json_object", "prompt"])
async def test_a_streamed_request_is_what_request_body_says(fake_openai, mode):
    """What `oi --dry-run` prints on a terminal, where the answer is shown as it streams."""
    messages = _messages("Outbox or not?")
    client = _client(fake_openai, structured_output=mode)
    try:
        await client.answer(messages, on_draft=Drafts())
    finally:
        await client.aclose()
    [request] = fake_openai.requests
    assert request == request_body(messages, model="test-model", mode=mode, streamed=True)
    assert _streamed(request) is (mode != "prompt")


async def test_prompt_mode_never_streams(fake_openai):
    drafts = Drafts()
    messages = _messages("Outbox or not?")
    client = _client(fake_openai, structured_output="prompt")
    try:
        reply = await client.answer(messages, on_draft=drafts)
    finally:
        await client.aclose()
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    [request] = fake_openai.requests
    assert request == request_body(messages, model="test-model", mode="prompt")
    assert drafts.seen == []


async def test_a_truncated_stream_is_a_truncated_answer(fake_openai):
    fake_openai.script(openai_api.truncated())
    drafts = Drafts()
    with pytest.raises(LLMTruncatedError, match="output tokens"):
        await _answer(_client(fake_openai), drafts)
    assert drafts.seen[-1] == {"summary": "The retry design"}
    assert len(fake_openai.requests) == 1


async def test_a_streamed_refusal_is_an_honest_refusal(fake_openai):
    fake_openai.script(openai_api.refusal("I can't help with reviewing that design."))
    drafts = Drafts()
    with pytest.raises(LLMRefusalError, match="I can't help with reviewing that design"):
        await _answer(_client(fake_openai), drafts)
    assert drafts.seen == []


async def test_the_content_filter_midway_is_an_honest_refusal(fake_openai):
    fake_openai.script(
        openai_api.content_reply('{"summary": "Retries can', finish_reason="content_filter")
    )
    drafts = Drafts()
    with pytest.raises(LLMRefusalError, match="content filter"):
        await _answer(_client(fake_openai), drafts)
    assert drafts.seen[-1] == {"summary": "Retries can"}


async def test_a_dropped_stream_is_an_unreachable_endpoint_not_a_traceback(fake_openai):
    fake_openai.script(openai_api.dropped(openai_api.answer(), after=12))
    drafts = Drafts()
    with pytest.raises(LLMUnreachableError) as caught:
        await _answer(_client(fake_openai), drafts)
    assert isinstance(caught.value, LLMUnavailableError)
    assert f"the connection to {fake_openai.base_url} broke off" in str(caught.value)
    assert drafts.seen and drafts.seen[-1] != VALID_ANSWER
    # the client is not left broken: the next question is answered
    assert (await _answer(_client(fake_openai), Drafts())).answer.summary == VALID_ANSWER["summary"]


async def test_an_error_event_midway_is_an_honest_outage(fake_openai):
    fake_openai.script(openai_api.interrupted(openai_api.answer(), after=12))
    drafts = Drafts()
    with pytest.raises(LLMUnavailableError) as caught:
        await _answer(_client(fake_openai), drafts)
    assert not isinstance(caught.value, LLMUnreachableError)
    assert "the answer stopped midway" in str(caught.value)
    assert "The server had an error while processing your request" in str(caught.value)
    assert drafts.seen and drafts.seen[-1] != VALID_ANSWER
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(
    ("events", "said"),
    [
        ("data: <html>502 Bad Gateway</html>\n\n", "streamed an event that is not JSON"),
        ('data: ["not", "a", "chunk"]\n\n', "streamed an event that is no chat completion chunk"),
    ],
)
async def test_events_that_are_no_chunks_are_a_bad_response(fake_openai, events, said):
    fake_openai.script(openai_api.Scripted(page=events, content_type="text/event-stream"))
    with pytest.raises(LLMBadResponseError, match=said) as caught:
        await _answer(_client(fake_openai), Drafts())
    assert fake_openai.base_url in str(caught.value)


async def test_the_deadline_covers_the_whole_stream(fake_openai):
    """A model that writes slowly but steadily: no read waits long, the whole takes too long."""
    fake_openai.script(openai_api.spaced(openai_api.answer(), 0.05))
    drafts = Drafts()
    with pytest.raises(LLMTimeoutError, match="within 0.5s"):
        await _answer(_client(fake_openai, timeout_seconds=5, deadline_seconds=0.5), drafts)
    assert drafts.seen and drafts.seen[-1] != VALID_ANSWER


async def test_invalid_streamed_output_is_repaired_once_without_streaming(fake_openai):
    wrong = {k: v for k, v in VALID_ANSWER.items() if k != "risks"}
    fake_openai.script(openai_api.answer(wrong), openai_api.answer())
    drafts = Drafts()
    reply = await _answer(_client(fake_openai), drafts)
    assert reply.attempts == 2
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    first, repair = fake_openai.requests
    assert _streamed(first)
    assert "stream" not in repair and "stream_options" not in repair
    assert "risks: Field required" in repair["messages"][-1]["content"]
    assert repair["messages"][-2] == {"role": "assistant", "content": json.dumps(wrong)}
    # the drafts were of the first answer only
    assert drafts.seen[-1] == wrong
    assert reply.usage.completion_tokens > len(json.dumps(wrong)) // 4


async def test_invalid_output_twice_after_streaming_is_a_clear_failure(fake_openai):
    fake_openai.script(openai_api.content_reply("{}"), openai_api.content_reply("{}"))
    drafts = Drafts()
    with pytest.raises(LLMInvalidOutputError, match="summary: Field required"):
        await _answer(_client(fake_openai), drafts)
    assert drafts.seen == []


async def test_an_exception_from_on_draft_ends_the_call(fake_openai):
    class Broken(Exception):
        pass

    async def broken(draft: Draft) -> None:
        raise Broken(str(draft))

    client = _client(fake_openai)
    with pytest.raises(Broken):
        await client.answer(_messages(), on_draft=broken)
    # the stream was closed, and the same client answers the next question
    try:
        reply = await client.answer(_messages(), on_draft=Drafts())
    finally:
        await client.aclose()
    assert reply.answer == Answer.model_validate(VALID_ANSWER)


async def test_a_server_that_answers_a_stream_with_one_completion_is_read_as_one(fake_openai):
    fake = _serving(fake_openai, openai_api.JSON_ONLY)
    drafts = Drafts()
    reply = await _answer(_client(fake), drafts)
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    assert reply.usage.completion_tokens > 0
    [request] = fake.requests
    assert _streamed(request)
    assert drafts.seen == []


@pytest.mark.parametrize(
    ("family", "said"),
    [
        (openai_api.AZURE_BEFORE_STREAM_OPTIONS, "Unrecognized request argument supplied"),
        (openai_api.OPENAI_MODEL_THAT_CANNOT_STREAM, "'stream' does not support true"),
    ],
)
async def test_a_refusal_to_stream_is_asked_again_without_and_remembered(fake_openai, family, said):
    fake = _serving(fake_openai, family)
    client = _client(fake)
    drafts = Drafts()
    with capture_logs() as logs:
        try:
            first = await client.answer(_messages("First?"), on_draft=drafts)
            second = await client.answer(_messages("Second?"), on_draft=drafts)
        finally:
            await client.aclose()
    assert first.answer == second.answer == Answer.model_validate(VALID_ANSWER)
    assert first.attempts == second.attempts == 1
    refused, unstreamed, remembered = fake.requests
    assert _streamed(refused)
    assert "stream" not in unstreamed and "stream_options" not in unstreamed
    assert unstreamed["response_format"] == refused["response_format"]
    assert "stream" not in remembered
    assert drafts.seen == []
    [logged] = [log for log in logs if log["event"] == "llm.unstreamed"]
    assert logged["model"] == "test-model" and logged["base_url"] == fake.base_url
    assert said in logged["refused"]


async def test_a_refused_mode_falls_back_and_the_next_mode_streams(fake_openai):
    fake = _serving(fake_openai, openai_api.VLLM_BEFORE_JSON_SCHEMA)
    drafts = Drafts()
    reply = await _answer(_client(fake), drafts)
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    refused, accepted = fake.requests
    assert refused["response_format"]["type"] == "json_schema" and _streamed(refused)
    assert accepted["response_format"]["type"] == "json_object" and _streamed(accepted)
    assert drafts.seen[-1] == VALID_ANSWER


async def test_falling_back_to_the_prompt_stops_streaming(fake_openai):
    fake = _serving(fake_openai, openai_api.AZURE_OLDER_MODEL)
    drafts = Drafts()
    reply = await _answer(_client(fake), drafts)
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    assert [_streamed(request) for request in fake.requests] == [True, True, False]
    assert "stream" not in fake.requests[-1] and "response_format" not in fake.requests[-1]
    assert drafts.seen == []


@pytest.mark.parametrize(
    "family", [openai_api.OLLAMA_BEFORE_STRUCTURED_OUTPUTS, openai_api.CHATTY_SMALL_MODEL]
)
async def test_drafts_start_at_the_json_past_a_fence_or_prose(fake_openai, family):
    fake = _serving(fake_openai, family)
    drafts = Drafts()
    reply = await _answer(_client(fake), drafts)
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    assert drafts.seen and all(_is_prefix(draft, VALID_ANSWER) for draft in drafts.seen)
    assert drafts.seen[-1] == VALID_ANSWER


async def test_thinking_aloud_is_not_a_draft(fake_openai):
    content = '<think>Maybe {"summary": "a guess"}? No.</think>\n' + CONTENT
    fake_openai.script(openai_api.content_reply(content))
    drafts = Drafts()
    reply = await _answer(_client(fake_openai), drafts)
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    assert all(_is_prefix(draft, VALID_ANSWER) for draft in drafts.seen)
    assert drafts.seen[-1] == VALID_ANSWER


async def test_the_engine_hands_the_drafts_to_its_progress(fake_openai):
    class Recorded:
        shows_drafts = True

        def __init__(self) -> None:
            self.events: list[Step | dict[str, Any]] = []

        async def step(self, step: Step) -> None:
            self.events.append(step)

        async def draft(self, draft: Draft) -> None:
            self.events.append(dict(draft))

    progress = Recorded()
    client = _client(fake_openai)
    try:
        reply = await Engine(llm=client, history_token_budget=1000).ask(
            persona=PERSONA, question="Review the retry design.", progress=progress
        )
    finally:
        await client.aclose()
    assert reply.answer.summary == VALID_ANSWER["summary"]
    first, *drafts, last = progress.events
    assert isinstance(first, Step) and first.state == "in_progress"
    assert isinstance(last, Step) and last.state == "complete"
    assert drafts and all(isinstance(draft, dict) for draft in drafts)
    assert drafts[-1] == VALID_ANSWER


async def test_a_progress_that_shows_no_drafts_is_not_streamed_to(fake_openai):
    """A Slack placeholder shows only the step: the model is not asked to stream for it."""

    class StepsOnly:
        shows_drafts = False

        def __init__(self) -> None:
            self.steps: list[Step] = []

        async def step(self, step: Step) -> None:
            self.steps.append(step)

        async def draft(self, draft: Draft) -> None:
            raise AssertionError("no draft was wanted")

    progress = StepsOnly()
    client = _client(fake_openai)
    try:
        await Engine(llm=client, history_token_budget=1000).ask(
            persona=PERSONA, question="Review the retry design.", progress=progress
        )
    finally:
        await client.aclose()
    [request] = fake_openai.requests
    assert "stream" not in request
    assert [step.state for step in progress.steps] == ["in_progress", "complete"]
