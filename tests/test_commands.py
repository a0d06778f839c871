"""The command grammar shared by Slack and the terminal."""

from __future__ import annotations

import pytest

from bot.core.commands import (
    Ask,
    Link,
    ListLinks,
    ListPersonas,
    SetDefaultPersona,
    ShowHelp,
    Unlink,
    parse_command,
)
from bot.core.persona import UnknownPersonaError, load_personas

PERSONAS = load_personas()


@pytest.mark.parametrize("text", ["", "   ", "help", "HELP me"])
def test_help(text):
    assert parse_command(text, PERSONAS) == ShowHelp()


def test_personas():
    assert parse_command("personas", PERSONAS) == ListPersonas()


def test_ask_keeps_the_question_verbatim():
    command = parse_command("backend-engineer  review this:\n  - retries\n", PERSONAS)
    assert command == Ask(persona="backend-engineer", question="review this:\n  - retries")


@pytest.mark.parametrize("typed", ["oi ", "/oi ", "OI  ", " oi\n"])
def test_a_leading_oi_as_the_examples_write_it_is_taken_off(typed):
    """A persona card's example use case, pasted into a DM or after a mention, still asks it."""
    example = PERSONAS.get("backend-engineer").example_use_cases[0]
    assert example.startswith("oi backend-engineer ")
    command = parse_command(f"{typed}backend-engineer review the retry design", PERSONAS)
    assert command == Ask(persona="backend-engineer", question="review the retry design")
    default = parse_command(f"{typed}personas", PERSONAS, default_persona="backend-engineer")
    assert default == ListPersonas()


def test_a_question_about_oi_itself_keeps_its_words():
    command = parse_command("oi", PERSONAS, default_persona="backend-engineer")
    assert command == Ask(persona="backend-engineer", question="oi")
    command = parse_command("oil pipelines?", PERSONAS, default_persona="backend-engineer")
    assert command == Ask(persona="backend-engineer", question="oil pipelines?")


def test_empty_question_is_usage_with_a_reason():
    command = parse_command("backend-engineer   ", PERSONAS)
    assert isinstance(command, ShowHelp)
    assert "empty" in (command.problem or "")


def test_typo_is_refused_with_a_suggestion():
    with pytest.raises(UnknownPersonaError) as caught:
        parse_command("backend-enginer review the retries", PERSONAS)
    assert caught.value.suggestions == ["backend-engineer"]


def test_unknown_persona_without_default_is_refused():
    with pytest.raises(UnknownPersonaError):
        parse_command("review the retries", PERSONAS)


def test_mention_without_persona_uses_the_default():
    command = parse_command("review the retries", PERSONAS, default_persona="backend-engineer")
    assert command == Ask(persona="backend-engineer", question="review the retries")


def test_mention_with_a_misspelt_persona_still_gets_a_suggestion():
    with pytest.raises(UnknownPersonaError):
        parse_command("backend-enginer review", PERSONAS, default_persona="backend-engineer")


def test_default_persona_command():
    assert parse_command("default backend-engineer", PERSONAS) == SetDefaultPersona(
        persona="backend-engineer"
    )
    assert isinstance(parse_command("default", PERSONAS), ShowHelp)
    with pytest.raises(UnknownPersonaError):
        parse_command("default backend-enginer", PERSONAS)


def test_link_commands():
    assert parse_command("link github acme/payments", PERSONAS) == Link("github", "acme/payments")
    assert parse_command("link linear pay", PERSONAS) == Link("linear", "PAY")
    assert parse_command("unlink github acme/payments", PERSONAS) == Unlink(
        "github", "acme/payments"
    )
    assert parse_command("links", PERSONAS) == ListLinks()


@pytest.mark.parametrize(
    "text",
    ["link", "link github", "link jira PAY", "link github acme", "link linear PAY-1", "unlink x y"],
)
def test_malformed_links_are_usage_with_a_reason(text):
    command = parse_command(text, PERSONAS)
    assert isinstance(command, ShowHelp) and command.problem
