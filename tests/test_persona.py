"""Persona cards: the Backend Engineer transcribes the seed; broken cards fail clearly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.core.persona import (
    BUILTIN_PERSONAS_DIR,
    PersonaError,
    UnknownPersonaError,
    load_persona,
    load_personas,
)

SEED = Path(__file__).parent / "data" / "backend-engineer.seed.txt"
CARD = BUILTIN_PERSONAS_DIR / "backend-engineer.toml"

# Every section heading of the seed card, and the persona field that holds it.
SECTIONS = {
    "Description": "description",
    "When to use": "when_to_use",
    "Personality": "personality",
    "Scope": "scope",
    "Instructions": "instructions",
    "Decision Rules": "decision_rules",
    "Connections": "connections",
    "Response style": "response_style",
    "Structured response example": "response_example",
    "Guardrails": "guardrails",
    "Metadata": "metadata",
    "Example use cases": "example_use_cases",
    "Strengths": "strengths",
    "Works well with": "works_well_with",
    "Categories": "categories",
    "Tags": "tags",
}


def _seed_sections() -> tuple[str, dict[str, list[str]]]:
    """The seed's title and its sections' lines (the seed runs `}` and `Guardrails` together)."""
    text = SEED.read_text(encoding="utf-8").replace("}Guardrails", "}\nGuardrails")
    title, *lines = [line.rstrip() for line in text.splitlines()]
    sections: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if line in SECTIONS:
            current = line
            sections[current] = []
        else:
            assert current is not None, f"text before the first section: {line!r}"
            sections[current].append(line)
    return title, sections


def _bullets(lines: list[str]) -> list[str]:
    return [line.removeprefix("- ") for line in lines if line]


def test_seed_has_exactly_the_sections_we_transcribe():
    _, sections = _seed_sections()
    assert list(sections) == list(SECTIONS)


def test_backend_engineer_card_transcribes_every_section_of_the_seed():
    title, seed = _seed_sections()
    persona = load_persona(CARD)
    assert persona.title == title
    assert persona.name == "backend-engineer"
    for heading, field in SECTIONS.items():
        assert hasattr(persona, field), heading
    assert [persona.description] == seed["Description"]
    assert persona.when_to_use == _bullets(seed["When to use"])
    assert [persona.personality] == seed["Personality"]
    assert [persona.scope] == seed["Scope"]
    steps = " ".join(f"{n}. {s}" for n, s in enumerate(persona.instructions.steps, 1))
    assert [f"{persona.instructions.preamble} {steps}"] == seed["Instructions"]
    assert persona.decision_rules == _bullets(seed["Decision Rules"])
    guidance, *sources = seed["Connections"]
    assert persona.connections.guidance == guidance
    assert persona.connections.sources == sources
    assert persona.connections.access == "read-only"
    assert [persona.response_style.capitalize()] == seed["Response style"]
    example = json.loads("\n".join(seed["Structured response example"]))
    assert persona.response_example.model_dump() == example
    assert persona.example_use_cases == _bullets(seed["Example use cases"])
    for heading in ("Guardrails", "Metadata", "Strengths", "Works well with", "Categories", "Tags"):
        assert _bullets(seed[heading]) == []
        assert not getattr(persona, SECTIONS[heading])


def _write_card(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _card_text(name: str, **replace: str) -> str:
    text = CARD.read_text(encoding="utf-8").replace('name = "backend-engineer"', f'name = "{name}"')
    for old, new in replace.items():
        text = re.sub(old, new, text, count=1, flags=re.MULTILINE)
    return text


def test_missing_field_names_the_file_and_the_field(tmp_path):
    path = _write_card(tmp_path, "sre", _card_text("sre", **{r"^scope = .*$": ""}))
    with pytest.raises(PersonaError) as caught:
        load_persona(path)
    assert str(path) in str(caught.value)
    assert "field 'scope'" in str(caught.value)


def test_wrong_nested_field_is_named_with_its_path(tmp_path):
    text = _card_text("sre", **{r'^sources = \["github", "linear"\]': 'sources = ["jira"]'})
    path = _write_card(tmp_path, "sre", text)
    with pytest.raises(PersonaError, match=r"field 'connections\.sources\.0'"):
        load_persona(path)


def test_invalid_toml_is_a_clear_error(tmp_path):
    path = _write_card(tmp_path, "sre", 'name = "sre"\ntitle = \n')
    with pytest.raises(PersonaError, match="cannot read persona card"):
        load_persona(path)


def test_name_must_match_the_file_name(tmp_path):
    path = _write_card(tmp_path, "sre", _card_text("site-reliability"))
    with pytest.raises(PersonaError, match="must match the file name"):
        load_persona(path)


def test_extra_folder_adds_personas_and_model_override(tmp_path):
    text = _card_text("sre") + "\n"
    text = text.replace('title = "Backend Engineer"', 'title = "SRE"\nmodel = "gpt-sre"')
    _write_card(tmp_path, "sre", text)
    registry = load_personas([tmp_path])
    assert registry.names() == ["backend-engineer", "sre"]
    assert registry.get("sre").model == "gpt-sre"
    assert registry.get("backend-engineer").model is None


def test_missing_extra_folder_is_an_error(tmp_path):
    with pytest.raises(PersonaError, match="does not exist"):
        load_personas([tmp_path / "nowhere"])


def test_typo_gets_the_closest_names():
    registry = load_personas()
    with pytest.raises(UnknownPersonaError) as caught:
        registry.get("backend-enginer")
    assert caught.value.suggestions == ["backend-engineer"]
    assert "Did you mean: backend-engineer?" in str(caught.value)
    with pytest.raises(UnknownPersonaError) as caught:
        registry.get("xylophone")
    assert caught.value.suggestions == []


@pytest.mark.parametrize(
    "prefix",
    [
        "https://docs.example.com",  # no "/" after the host: would admit docs.example.com.evil
        "javascript:alert(1)//",
        "https://user@docs.example.com/",
        "https:///path/",
        "https://docs.example.com/?q=1",
        "https://docs.example.com/a b/",
        "docs.example.com/",
    ],
)
def test_link_prefixes_must_name_a_whole_host(tmp_path, prefix):
    text = _card_text("sre", **{r"^allowed = \[\]": f"allowed = [{json.dumps(prefix)}]"})
    path = _write_card(tmp_path, "sre", text)
    with pytest.raises(PersonaError, match=r"field 'links\.allowed'.*not a link prefix"):
        load_persona(path)


def test_link_prefixes_load(tmp_path):
    prefixes = ["https://docs.example.com/", "http://wiki.internal/runbooks/"]
    text = _card_text("sre", **{r"^allowed = \[\]": f"allowed = {json.dumps(prefixes)}"})
    assert load_persona(_write_card(tmp_path, "sre", text)).links.allowed == prefixes
    assert load_personas().get("backend-engineer").links.allowed == []


@pytest.mark.parametrize(
    "icon",
    [
        "gear",  # an emoji needs its colons
        ":Gear:",  # Slack's emoji names are lower case
        ":gear:\n",
        "http://img.example/be.png",  # Slack fetches the icon: https only
        "https:///be.png",
        "https://user@img.example/be.png",
        "https://img.example/b e.png",
    ],
)
def test_icon_is_an_emoji_or_an_https_url(tmp_path, icon):
    text = _card_text("sre").replace('icon = ":gear:"', f"icon = {json.dumps(icon)}")
    path = _write_card(tmp_path, "sre", text)
    with pytest.raises(PersonaError, match=r"field 'icon'.*not an icon"):
        load_persona(path)


@pytest.mark.parametrize("name", ["", " SRE", "SRE\nTeam", "x" * 81])
def test_display_name_is_one_line(tmp_path, name):
    text = _card_text("sre").replace(
        'display_name = "Backend Engineer"', f"display_name = {json.dumps(name)}"
    )
    with pytest.raises(PersonaError, match=r"field 'display_name'"):
        load_persona(_write_card(tmp_path, "sre", text))


def test_display_name_and_icon_are_optional(tmp_path):
    card = load_persona(CARD)
    assert (card.display_name, card.icon) == ("Backend Engineer", ":gear:")
    text = _card_text("sre", **{r"^display_name = .*$": "", r"^icon = .*$": ""})
    bare = load_persona(_write_card(tmp_path, "sre", text))
    assert (bare.display_name, bare.icon) == (None, None)
    pictured = _card_text("sre", **{r"^icon = .*$": 'icon = "https://img.example/sre.png"'})
    assert load_persona(_write_card(tmp_path / "b", "sre", pictured)).icon.startswith("https://")
