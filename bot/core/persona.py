"""Personas are data: TOML cards validated at load, found by name.

Adding a persona means adding a card file, to `bot/personas/` or to a folder named in
`OI_PERSONAS_DIR`. Cards in later folders replace built-in cards of the same name.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.core.answer import Answer

BUILTIN_PERSONAS_DIR = Path(__file__).resolve().parent.parent / "personas"

SourceKind = Literal["github", "linear"]

# An emoji by its name, as Slack writes one (`:gear:`, `:+1:`, `:male-technologist:`).
_EMOJI = re.compile(r":[a-z0-9_+'-]+:")


class PersonaError(Exception):
    """A persona card is unreadable or invalid; the message names the file and the field."""


class UnknownPersonaError(LookupError):
    """No persona has that name; carries the closest names so a typo costs no LLM call."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"Unknown persona '{name}'.{hint}")


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Instructions(_Card):
    preamble: str = Field(min_length=1)
    steps: list[str] = Field(min_length=1)


class Connections(_Card):
    """The sources a persona may read before answering; always read-only."""

    guidance: str
    sources: list[SourceKind]
    access: Literal["read-only"] = "read-only"


class LinkRules(_Card):
    """Where links in this persona's answers may point, besides the sources read for the answer.

    Each entry is a URL prefix such as `https://docs.example.com/api/`; a link in model text is
    kept only if it starts with one. A prefix names its host in full and ends the host with `/`,
    so that `https://docs.example.com` cannot admit `https://docs.example.com.evil.example`.
    """

    allowed: list[str] = []

    @field_validator("allowed")
    @classmethod
    def _whole_hosts(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            parts = urlsplit(prefix)
            if (
                parts.scheme not in ("https", "http")
                or not parts.hostname
                or "@" in parts.netloc
                or not parts.path.startswith("/")
                or parts.query
                or parts.fragment
                or any(char.isspace() or char in "<>|\\" for char in prefix)
            ):
                raise ValueError(
                    f"'{prefix}' is not a link prefix: write an http(s) URL with its host "
                    "and a path starting with '/', e.g. https://docs.example.com/"
                )
        return prefixes


class Persona(_Card):
    """One persona card, with every section of the seed card format."""

    name: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    when_to_use: list[str] = Field(min_length=1)
    personality: str = Field(min_length=1)
    scope: str = Field(min_length=1)
    instructions: Instructions
    decision_rules: list[str] = Field(min_length=1)
    connections: Connections
    response_style: Literal["structured"]
    response_example: Answer
    example_use_cases: list[str] = []
    guardrails: list[str] = []
    strengths: list[str] = []
    works_well_with: list[str] = []
    categories: list[str] = []
    tags: list[str] = []
    metadata: dict[str, str] = {}
    model: str | None = Field(default=None, description="Overrides OPENAI_MODEL for this persona.")
    links: LinkRules = LinkRules()
    # Who the persona's chat messages say they are from, where the front door may choose (else
    # its title and the app's own icon). A name is one line, at most as long as Slack allows a
    # person's display name; an icon is an emoji (`:gear:`) or an https URL of an image.
    display_name: str | None = Field(default=None, max_length=80, pattern=r"^\S(.*\S)?$")
    icon: str | None = None

    @field_validator("icon")
    @classmethod
    def _emoji_or_https(cls, icon: str | None) -> str | None:
        if icon is None or _EMOJI.fullmatch(icon) or _https_url(icon):
            return icon
        raise ValueError(
            f"{icon!r} is not an icon: write an emoji as :name: (e.g. :gear:) or an https URL"
        )


def _https_url(url: str) -> bool:
    parts = urlsplit(url)
    return (
        parts.scheme == "https"
        and bool(parts.hostname)
        and "@" not in parts.netloc
        and not any(char.isspace() or char in "<>|\\" for char in url)
    )


def load_persona(path: Path) -> Persona:
    """Read and validate one card; the file name (without `.toml`) must be the persona's name."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise PersonaError(f"{path}: cannot read persona card: {error}") from None
    try:
        persona = Persona.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "(card)"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise PersonaError(f"{path}: field '{field}': {first['msg']}{more}") from None
    if persona.name != path.stem:
        raise PersonaError(f"{path}: field 'name': '{persona.name}' must match the file name")
    return persona


class PersonaRegistry:
    """The personas this process knows, by name."""

    def __init__(self, personas: Iterable[Persona]) -> None:
        self._by_name = {persona.name: persona for persona in personas}

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def all(self) -> list[Persona]:
        return [self._by_name[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> Persona:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownPersonaError(name, self.suggest(name)) from None

    def suggest(self, name: str) -> list[str]:
        return difflib.get_close_matches(name.lower(), self.names(), n=3, cutoff=0.6)


def load_personas(extra_dirs: Iterable[Path] = ()) -> PersonaRegistry:
    """Load the built-in cards, then each extra folder in order (later cards replace earlier)."""
    personas: dict[str, Persona] = {}
    for folder in (BUILTIN_PERSONAS_DIR, *extra_dirs):
        if not folder.is_dir():
            raise PersonaError(f"{folder}: persona folder does not exist (OI_PERSONAS_DIR)")
        for path in sorted(folder.glob("*.toml")):
            persona = load_persona(path)
            personas[persona.name] = persona
    return PersonaRegistry(personas.values())
