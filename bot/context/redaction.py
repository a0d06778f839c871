"""Secrets out of fetched text before it reaches the model or the store.

Each rule is a pattern whose `secret` span is replaced by `[REDACTED]`, keeping what is around
it (`password = "[REDACTED]"`), so the model still sees the shape of the configuration. Rules run
in order, and a value already redacted by an earlier rule is a placeholder to the later ones, so
each secret counts once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

REDACTED = "[REDACTED]"

_PRIVATE_KEY = re.compile(
    r"(?P<secret>-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*))",  # a cut-off key: to the end
    re.DOTALL,
)
_TOKEN = re.compile(
    r"(?P<secret>"
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"  # AWS access key id
    r"|\bgh[pousr]_[A-Za-z0-9]{36,}"  # GitHub tokens
    r"|\bgithub_pat_[A-Za-z0-9_]{22,}"
    r"|\bxox[abeprs]-[A-Za-z0-9-]{10,}|\bxapp-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|\bsk-(?=[\w-]*\d)[\w-]{20,}"  # OpenAI keys (sk-…, sk-proj-…), with a digit somewhere
    r"|\blin_api_[A-Za-z0-9]{30,}"  # Linear API keys
    r")"
)
_SLACK_WEBHOOK = re.compile(
    r"https://hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[\w/-]+)"
)
_BEARER = re.compile(r"\b(?i:bearer)\s+(?P<secret>[\w.~+/=-]{20,})")
_URL_PASSWORD = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:(?P<secret>[^\s/@]+)@")
# `key = value`, `key: value`, `key => value`, `"key": "value"`, `key=value&…` in a URL.
_ASSIGNMENT = re.compile(
    r"(?<![\w.])(?P<quote>[\"']?)(?P<key>[A-Za-z_][\w.-]*)(?P=quote)"
    r"[ \t]*(?:=>|=(?!=)|:(?![:=]))[ \t]*"
    r"(?:(?i:bearer|basic|token)[ \t]+)?"
    r"(?:\"(?P<double>(?:[^\"\\\n]|\\.)*)\"|'(?P<single>(?:[^'\\\n]|\\.)*)'"
    r"|(?P<bare>[^\s\"'`,;&)}\]>]+))"
)
_ENV_LINE = re.compile(
    r"^[ \t]*(?:export[ \t]+)?[A-Za-z_][\w.]*[ \t]*=[ \t]*(?P<value>.*?)[ \t]*$", re.MULTILINE
)

# A key names a secret when its last word (snake, kebab, dotted or camelCase) is one of these,
# or its last two words are one of the pairs: `db_password`, `clientSecret`, `X-Api-Key`.
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "secret", "token", "apikey", "auth", "authorization"}
)
_SECRET_PAIRS = frozenset({"api_key", "access_key", "private_key", "secret_key"})
# Values that stand for a secret without being one: nothing to hide, and redacting them would
# only make configuration examples harder to read.
_PLACEHOLDERS = frozenset({"", "none", "null", "nil", "undefined", "true", "false", "changeme"})
_PLACEHOLDER_STARTS = ("$", "{", "<", "%")  # ${VAR}, $VAR, {{ template }}, <your-password>, %s
# An unquoted value that reads as code (a name, an attribute, a call, a subscript) is left alone:
# `password = get_password()`, `token: str`, `api_key=self.api_key`.
_CODE = re.compile(r"[A-Za-z_]+(?:\.[A-Za-z_]\w*)*|.*[(\[].*")
# Files where `key: value` is configuration, not code: every unquoted value is taken literally.
_CONFIG_SUFFIXES = frozenset({".yml", ".yaml", ".ini", ".cfg", ".conf", ".properties", ".toml"})
_ENV_EXAMPLES = frozenset({"example", "sample", "template", "dist"})

_Span = tuple[int, int]


@dataclass(frozen=True)
class Redacted:
    """Text with its secrets replaced, and how many there were: worth a log line, unlike values."""

    text: str
    count: int


def redact(text: str, *, path: str | None = None) -> Redacted:
    """Replace every secret in `text` with `[REDACTED]`; `path` says what kind of file it is.

    In a `.env` file every value is redacted; in YAML, INI and similar configuration files an
    unquoted value is redacted even when it reads like a name.
    """
    config = path is not None and PurePosixPath(path).suffix.lower() in _CONFIG_SUFFIXES
    rules: list[tuple[re.Pattern[str], Callable[[re.Match[str]], _Span | None]]] = [
        (_PRIVATE_KEY, _whole_secret),
        (_TOKEN, _whole_secret),
        (_SLACK_WEBHOOK, _whole_secret),
        (_BEARER, _whole_secret),
        (_URL_PASSWORD, _unless_placeholder),
        (_ASSIGNMENT, lambda match: _assigned_secret(match, config=config)),
    ]
    if path is not None and _is_env_file(path):
        rules.append((_ENV_LINE, _env_value))
    count = 0
    for pattern, secret in rules:
        text, replaced = _replace(pattern, text, secret)
        count += replaced
    return Redacted(text, count)


def _replace(
    pattern: re.Pattern[str], text: str, secret: Callable[[re.Match[str]], _Span | None]
) -> tuple[str, int]:
    """Replace the span `secret` picks in each match of `pattern`; None keeps the match as it is."""
    count = 0

    def substitute(match: re.Match[str]) -> str:
        nonlocal count
        span = secret(match)
        if span is None:
            return match[0]
        count += 1
        start, end = span[0] - match.start(), span[1] - match.start()
        return match[0][:start] + REDACTED + match[0][end:]

    return pattern.sub(substitute, text), count


def _whole_secret(match: re.Match[str]) -> _Span:
    return match.span("secret")


def _unless_placeholder(match: re.Match[str]) -> _Span | None:
    return None if _is_placeholder(match["secret"]) else match.span("secret")


def _assigned_secret(match: re.Match[str], *, config: bool) -> _Span | None:
    if not _is_secret_key(match["key"]):
        return None
    group = next(name for name in ("double", "single", "bare") if match[name] is not None)
    value = match[group]
    if _is_placeholder(value) or (group == "bare" and not config and _CODE.fullmatch(value)):
        return None
    return match.span(group)


def _env_value(match: re.Match[str]) -> _Span | None:
    """The value of a `.env` line, inside its quotes when it is quoted.

    A value an earlier rule already redacted in part (a URL's password) keeps the rest.
    """
    value = match["value"]
    if REDACTED in value:
        return None
    start, end = match.span("value")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value, start, end = value[1:-1], start + 1, end - 1
    return None if _is_placeholder(value) else (start, end)


def _is_secret_key(key: str) -> bool:
    words = re.split(r"[_.-]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower())
    return words[-1] in _SECRET_WORDS or "_".join(words[-2:]) in _SECRET_PAIRS


def _is_placeholder(value: str) -> bool:
    value = value.strip()
    return (
        value.lower() in _PLACEHOLDERS
        or value.startswith(_PLACEHOLDER_STARTS)
        or "…" in value
        or "..." in value
        or not value.strip("xX*")  # xxxxxxxx, ********
        or value.startswith(REDACTED[:-1])  # redacted by an earlier rule; a bare value stops at `]`
    )


def _is_env_file(path: str) -> bool:
    """`.env` and `.env.production` hold real values; `.env.example` and its kin do not."""
    name = PurePosixPath(path).name
    return name == ".env" or (
        name.startswith(".env.") and name.removeprefix(".env.").lower() not in _ENV_EXAMPLES
    )
