"""The LLM call over real HTTP against the local OpenAI-compatible server, failure by failure."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from structlog.testing import capture_logs

from bot.config import ConfigError, Settings
from bot.core.answer import Answer, Reply
from bot.core.engine import Engine
from bot.core.errors import (
    LLMBadResponseError,
    LLMInvalidOutputError,
    LLMRefusalError,
    LLMRejectedError,
    LLMTimeoutError,
    LLMTruncatedError,
    LLMUnavailableError,
    LLMUnreachableError,
)
from bot.core.persona import load_personas
from bot.llm import LLMClient, preview_request
from tests.fakes import openai_api
from tests.fakes.openai_api import VALID_ANSWER, FakeOpenAI, ServerFamily

PERSONA = load_personas().get("backend-engineer")
KEY = "sk-test-0123456789abcdef"


def _client(fake: FakeOpenAI, **overrides) -> LLMClient:
    options = dict(
        api_key=KEY,
        base_url=fake.base_url,
        default_model="test-model",
        timeout_seconds=5,
        max_retries=2,
        deadline_seconds=10,
    )
    options.update(overrides)
    return LLMClient(**options)


async def _ask(client: LLMClient, question: str = "Review the retry design."):
    try:
        return await Engine(llm=client, history_token_budget=1000).ask(
            persona=PERSONA, question=question
        )
    finally:
        await client.aclose()


async def test_valid_answer_with_usage_and_latency(fake_openai):
    reply = await _ask(_client(fake_openai))
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    assert reply.model == "test-model"
    assert reply.attempts == 1
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.latency_seconds > 0
    [request] = fake_openai.requests
    assert request["messages"][-1] == {"role": "user", "content": "Review the retry design."}
    assert request["response_format"]["json_schema"]["strict"] is True
    assert fake_openai.authorizations == [f"Bearer {KEY}"]


async def test_request_is_exactly_the_dry_run_preview(fake_openai):
    await _ask(_client(fake_openai), "Is the outbox pattern right here?")
    preview = preview_request(
        persona=PERSONA, question="Is the outbox pattern right here?", default_model="test-model"
    )
    [request] = fake_openai.requests
    assert {key: request[key] for key in preview} == preview


async def test_persona_model_overrides_the_default(fake_openai):
    persona = PERSONA.model_copy(update={"model": "persona-model"})
    client = _client(fake_openai)
    try:
        reply = await Engine(llm=client, history_token_budget=1000).ask(
            persona=persona, question="q"
        )
    finally:
        await client.aclose()
    assert reply.model == "persona-model"
    assert fake_openai.requests[0]["model"] == "persona-model"


async def test_429_is_retried_after_retry_after(fake_openai):
    fake_openai.script(openai_api.error(429, "slow down", **{"retry-after-ms": "10"}))
    reply = await _ask(_client(fake_openai))
    assert reply.answer.summary == VALID_ANSWER["summary"]
    assert len(fake_openai.requests) == 2


async def test_5xx_retries_are_bounded_then_a_typed_failure(fake_openai):
    failing = openai_api.error(500, "boom", **{"retry-after-ms": "1"})
    fake_openai.script(failing, failing, failing, failing)
    with pytest.raises(LLMUnavailableError, match="HTTP 500"):
        await _ask(_client(fake_openai, max_retries=2))
    assert len(fake_openai.requests) == 3


async def test_hang_hits_the_timeout(fake_openai):
    fake_openai.script(openai_api.hang())
    with pytest.raises(LLMTimeoutError, match="the request timed out"):
        await _ask(_client(fake_openai, timeout_seconds=0.3, max_retries=0))
    assert len(fake_openai.requests) == 1


async def test_whole_call_deadline_bounds_retries(fake_openai):
    fake_openai.script(openai_api.hang(), openai_api.hang(), openai_api.hang())
    with pytest.raises(LLMTimeoutError, match="within 0.5s"):
        await _ask(_client(fake_openai, timeout_seconds=5, max_retries=2, deadline_seconds=0.5))


async def test_refusal(fake_openai):
    fake_openai.script(openai_api.refusal("I can't help with that."))
    with pytest.raises(LLMRefusalError, match="I can't help with that"):
        await _ask(_client(fake_openai))


async def test_truncated_answer(fake_openai):
    fake_openai.script(openai_api.truncated())
    with pytest.raises(LLMTruncatedError):
        await _ask(_client(fake_openai))
    assert len(fake_openai.requests) == 1


async def test_content_filter_is_an_honest_refusal(fake_openai):
    fake_openai.script(openai_api.content_reply(None, finish_reason="content_filter"))
    with pytest.raises(LLMRefusalError, match="content filter"):
        await _ask(_client(fake_openai))
    assert len(fake_openai.requests) == 1


async def test_an_empty_reply_is_asked_again_then_a_clear_failure(fake_openai):
    fake_openai.script(openai_api.content_reply(None), openai_api.content_reply(""))
    with pytest.raises(LLMInvalidOutputError, match="the reply was empty"):
        await _ask(_client(fake_openai))
    assert len(fake_openai.requests) == 2


async def test_invalid_output_is_repaired_once(fake_openai):
    wrong = {k: v for k, v in VALID_ANSWER.items() if k != "risks"}
    fake_openai.script(openai_api.answer(wrong), openai_api.answer())
    reply = await _ask(_client(fake_openai))
    assert reply.attempts == 2
    assert reply.answer.risks == VALID_ANSWER["risks"]
    first, repair = fake_openai.requests
    assert repair["messages"][: len(first["messages"])] == first["messages"]
    shown, instruction = repair["messages"][len(first["messages"]) :]
    assert shown["role"] == "assistant" and '"summary"' in shown["content"]
    assert instruction["role"] == "user" and "risks: Field required" in instruction["content"]
    assert reply.usage.prompt_tokens > 2 * len(first["messages"][0]["content"]) // 4


async def test_invalid_output_twice_is_a_clear_failure(fake_openai):
    fake_openai.script(openai_api.content_reply("not json at all"), openai_api.content_reply("{}"))
    with pytest.raises(LLMInvalidOutputError, match="summary: Field required"):
        await _ask(_client(fake_openai))
    assert len(fake_openai.requests) == 2


async def test_rejected_key_names_the_variable_not_the_key(fake_openai):
    fake_openai.script(openai_api.error(401, f"Incorrect API key provided: {KEY}"))
    with pytest.raises(LLMRejectedError) as caught:
        await _ask(_client(fake_openai))
    assert "OPENAI_API_KEY" in str(caught.value)
    assert KEY not in str(caught.value)


async def test_unreachable_endpoint_names_the_url_and_not_a_rate_limit():
    client = LLMClient(
        api_key=KEY,
        base_url="http://127.0.0.1:9/v1",
        default_model="m",
        timeout_seconds=2,
        max_retries=0,
        deadline_seconds=5,
    )
    with pytest.raises(LLMUnreachableError) as caught:
        await _ask(client)
    assert isinstance(caught.value, LLMUnavailableError)
    assert "could not connect to http://127.0.0.1:9/v1" in str(caught.value)
    assert "rate limited" not in str(caught.value)


def test_key_is_required_only_for_openai_itself():
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        LLMClient.from_settings(Settings())
    client = LLMClient.from_settings(Settings(openai_base_url="http://127.0.0.1:1/v1"))
    assert client.default_model == Settings().openai_model


# Structured output by capability: each server family of tests/fakes/openai_api.py, in `auto`.


@pytest.fixture
def serve() -> Iterator[Callable[[ServerFamily], FakeOpenAI]]:
    """Start a fake that behaves like one server family; stopped after the test."""
    started: list[FakeOpenAI] = []

    def start(family: ServerFamily) -> FakeOpenAI:
        fake = FakeOpenAI(family)
        fake.start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


async def _ask_twice(client: LLMClient) -> list[Reply]:
    """Two questions through one client, as a running bot asks them."""
    engine = Engine(llm=client, history_token_budget=1000)
    try:
        return [await engine.ask(persona=PERSONA, question=q) for q in ("First?", "Second?")]
    finally:
        await client.aclose()


def _modes(fake: FakeOpenAI) -> list[str | None]:
    """The response_format type of each request received (None: the schema was in the prompt)."""
    return [(r.get("response_format") or {}).get("type") for r in fake.requests]


def _schema_in_the_prompt(request: dict) -> bool:
    system = request["messages"][0]
    return system["role"] == "system" and '"$defs"' in system["content"]


async def test_refused_json_schema_falls_back_to_json_object_and_is_remembered(serve):
    fake = serve(openai_api.VLLM_BEFORE_JSON_SCHEMA)
    with capture_logs() as logs:
        first, second = await _ask_twice(_client(fake))
    assert first.answer == second.answer == Answer.model_validate(VALID_ANSWER)
    assert first.attempts == second.attempts == 1
    # the second question goes straight to the mode that worked
    assert _modes(fake) == ["json_schema", "json_object", "json_object"]
    assert all(_schema_in_the_prompt(request) for request in fake.requests[1:])
    [settled] = [log for log in logs if log["event"] == "llm.structured_output"]
    assert settled["log_level"] == "info"
    assert settled["mode"] == "json_object" and settled["model"] == "test-model"
    assert settled["base_url"] == fake.base_url
    assert "Input should be 'text' or 'json_object'" in settled["refused"]


async def test_llama_cpp_refusing_json_schema_with_a_500_falls_back(serve):
    fake = serve(openai_api.LLAMA_CPP_BEFORE_JSON_SCHEMA)
    reply = await _ask(_client(fake, max_retries=0))
    assert reply.answer.summary == VALID_ANSWER["summary"]
    assert _modes(fake) == ["json_schema", "json_object"]


async def test_a_model_refusing_every_response_format_gets_the_schema_in_the_prompt(serve):
    fake = serve(openai_api.AZURE_OLDER_MODEL)
    first, second = await _ask_twice(_client(fake))
    assert first.answer == second.answer == Answer.model_validate(VALID_ANSWER)
    assert _modes(fake) == ["json_schema", "json_object", None, None]
    assert "response_format" not in fake.requests[-1]
    assert _schema_in_the_prompt(fake.requests[-1])
    # the persona's own system prompt stays first, so providers' prompt caching still works
    assert fake.requests[-1]["messages"][0]["content"].startswith(
        fake.requests[0]["messages"][0]["content"]
    )


async def test_a_server_refusal_that_is_not_about_the_format_is_not_a_fallback(serve):
    fake = serve(openai_api.OPENAI)
    fake.script(openai_api.error(400, "The model `nope` does not exist"))
    with pytest.raises(LLMRejectedError, match="does not exist"):
        await _ask(_client(fake))
    assert _modes(fake) == ["json_schema"]


@pytest.mark.parametrize(
    ("family", "mode", "said"),
    [
        (openai_api.VLLM_BEFORE_JSON_SCHEMA, "json_schema", "Input should be 'text' or"),
        (openai_api.LM_STUDIO, "json_object", "must be 'json_schema' or 'text'"),
    ],
)
async def test_an_explicit_mode_is_not_second_guessed(serve, family, mode, said):
    fake = serve(family)
    with pytest.raises(LLMRejectedError) as caught:
        await _ask(_client(fake, structured_output=mode))
    assert said in str(caught.value)
    assert f"OI_STRUCTURED_OUTPUT={mode}" in str(caught.value) and "try auto" in str(caught.value)
    assert _modes(fake) == [mode]


@pytest.mark.parametrize("mode", ["auto", "json_schema", "json_object", "prompt"])
async def test_each_mode_sends_exactly_its_dry_run_preview(fake_openai, mode):
    reply = await _ask(_client(fake_openai, structured_output=mode), "Outbox or not?")
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    preview = preview_request(
        persona=PERSONA,
        question="Outbox or not?",
        default_model="test-model",
        structured_output=mode,
    )
    [request] = fake_openai.requests
    assert request == preview
    assert _schema_in_the_prompt(request) == (mode in ("json_object", "prompt"))


@pytest.mark.parametrize(
    "family", [openai_api.OLLAMA_BEFORE_STRUCTURED_OUTPUTS, openai_api.CHATTY_SMALL_MODEL]
)
async def test_json_in_a_fence_or_in_prose_is_read_without_a_repair(serve, family):
    fake = serve(family)
    reply = await _ask(_client(fake))
    assert reply.answer == Answer.model_validate(VALID_ANSWER)
    assert reply.attempts == 1
    assert len(fake.requests) == 1


async def test_a_fenced_answer_that_misses_a_field_is_repaired_once(serve):
    fake = serve(openai_api.OLLAMA_BEFORE_STRUCTURED_OUTPUTS)
    wrong = {k: v for k, v in VALID_ANSWER.items() if k != "nextActions"}
    fake.script(openai_api.answer(wrong), openai_api.answer())
    reply = await _ask(_client(fake))
    assert reply.attempts == 2
    assert "nextActions: Field required" in fake.requests[1]["messages"][-1]["content"]


@pytest.mark.parametrize(
    "content",
    [
        # thinking aloud first, with a draft in it
        '<think>Maybe {"summary": "draft"}? No.</think>\n' + json.dumps(VALID_ANSWER),
        # stray braces in the prose before the answer, and a second object after it
        "Using {placeholders} like {this}:\n" + json.dumps(VALID_ANSWER) + '\n{"extra": 1}',
        # escaped quotes and braces inside the answer's strings
        json.dumps({**VALID_ANSWER, "summary": 'A "quoted" {brace} \\\\ and } more'}) + " done",
    ],
)
async def test_the_first_json_object_is_the_answer(fake_openai, content):
    fake_openai.script(openai_api.content_reply(content))
    reply = await _ask(_client(fake_openai))
    assert reply.attempts == 1
    assert reply.answer.next_actions == Answer.model_validate(VALID_ANSWER).next_actions


async def test_a_copy_of_the_schema_is_not_the_answer(fake_openai):
    schema = json.dumps(Answer.model_json_schema(by_alias=True))
    fake_openai.script(openai_api.content_reply(f"```json\n{schema}\n```"), openai_api.answer())
    reply = await _ask(_client(fake_openai))
    assert reply.attempts == 2
    assert "the JSON schema itself" in fake_openai.requests[1]["messages"][-1]["content"]


async def test_prose_without_json_twice_is_an_honest_failure(fake_openai):
    prose = openai_api.content_reply("The retry design looks fine to me overall.")
    fake_openai.script(prose, prose)
    with pytest.raises(LLMInvalidOutputError, match="the reply held no JSON object"):
        await _ask(_client(fake_openai))
    assert len(fake_openai.requests) == 2


async def test_an_html_page_with_200_names_the_url_and_what_came_back(fake_openai):
    fake_openai.script(openai_api.proxy_page())
    with pytest.raises(LLMBadResponseError) as caught:
        await _ask(_client(fake_openai))
    message = str(caught.value)
    assert f"{fake_openai.base_url}/chat/completions answered HTTP 200 with text/html" in message
    assert '"502 Bad Gateway 502 Bad Gateway nginx/1.25.3"' in message
    assert "<" not in message and "font-family" not in message and "\n" not in message
    assert len(fake_openai.requests) == 1


async def test_json_that_is_no_chat_completion_is_a_bad_response(fake_openai):
    fake_openai.script(openai_api.Scripted(body={"detail": "Not Found"}))
    with pytest.raises(LLMBadResponseError, match='application/json.*"{"detail": "Not Found"}"'):
        await _ask(_client(fake_openai))


async def test_a_page_that_repeats_the_key_does_not_show_it(fake_openai):
    page = f"<html><body><p>Invalid token {KEY} for this gateway</p></body></html>"
    fake_openai.script(openai_api.Scripted(page=page, content_type="text/html"))
    with pytest.raises(LLMBadResponseError) as caught:
        await _ask(_client(fake_openai))
    assert KEY not in str(caught.value)
    assert '"Invalid token [redacted] for this gateway"' in str(caught.value)
