"""The LLM call over real HTTP against the local OpenAI-compatible server, failure by failure."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, Settings
from bot.core.answer import Answer
from bot.core.engine import Engine, preview_request
from bot.core.errors import (
    LLMInvalidOutputError,
    LLMRefusalError,
    LLMRejectedError,
    LLMTimeoutError,
    LLMTruncatedError,
    LLMUnavailableError,
)
from bot.core.persona import load_personas
from bot.llm import LLMClient
from tests.fakes import openai_api
from tests.fakes.openai_api import VALID_ANSWER, FakeOpenAI

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


async def test_unreachable_endpoint_is_unavailable():
    client = LLMClient(
        api_key=KEY,
        base_url="http://127.0.0.1:9/v1",
        default_model="m",
        timeout_seconds=2,
        max_retries=0,
        deadline_seconds=5,
    )
    with pytest.raises(LLMUnavailableError, match="could not connect"):
        await _ask(client)


def test_key_is_required_only_for_openai_itself():
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        LLMClient.from_settings(Settings())
    client = LLMClient.from_settings(Settings(openai_base_url="http://127.0.0.1:1/v1"))
    assert client.default_model == Settings().openai_model
