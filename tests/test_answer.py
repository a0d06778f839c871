"""The Answer contract: exact wire names, and a schema OpenAI's strict mode accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.lib._parsing import type_to_response_format_param
from pydantic import ValidationError

from bot.core.answer import Answer
from tests.fakes.openai_api import VALID_ANSWER

WIRE_FIELDS = ["summary", "recommendation", "rationale", "risks", "nextActions", "missingContext"]


def _strict_schema() -> dict[str, Any]:
    """The schema exactly as the openai SDK sends it for `response_format=Answer`."""
    response_format = type_to_response_format_param(Answer)
    assert response_format["json_schema"]["strict"] is True
    return response_format["json_schema"]["schema"]


def _objects(node: Any, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object schema reachable from `node`, following local `$ref`s."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/$defs/")
            found += _objects(schema["$defs"][name], schema)
        if node.get("type") == "object":
            found.append(node)
        for key, value in node.items():
            if key != "$defs":
                found += _objects(value, schema)
    elif isinstance(node, list):
        for value in node:
            found += _objects(value, schema)
    return found


def test_wire_names_are_the_cards():
    schema = _strict_schema()
    assert list(schema["properties"]) == WIRE_FIELDS
    next_action = schema["$defs"]["NextAction"]
    assert list(next_action["properties"]) == ["title", "owner", "outcome"]


def test_schema_obeys_openai_strict_rules():
    schema = _strict_schema()
    objects = _objects(schema, schema)
    assert len(objects) == 2  # Answer and NextAction
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert sorted(obj["required"]) == sorted(obj["properties"])
        assert obj["properties"], "no free-form objects"
    for prop in schema["properties"].values():
        assert "default" not in prop


def test_round_trip_uses_camel_case_on_the_wire():
    answer = Answer.model_validate_json(json.dumps(VALID_ANSWER))
    assert answer.next_actions[0].owner == "payments team"
    assert json.loads(answer.model_dump_json()) == VALID_ANSWER


def test_missing_or_extra_fields_are_rejected():
    missing = {k: v for k, v in VALID_ANSWER.items() if k != "risks"}
    with pytest.raises(ValidationError, match="risks"):
        Answer.model_validate(missing)
    with pytest.raises(ValidationError, match="confidence"):
        Answer.model_validate({**VALID_ANSWER, "confidence": "high"})
