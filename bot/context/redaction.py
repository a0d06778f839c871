"""Secrets out of fetched text before it reaches the model, Slack, a log line or the store.

Each rule finds spans that are replaced by `[REDACTED]`, keeping what is around them
(`password = "[REDACTED]"`), so the model still sees the shape of the configuration. Rules run in
groups, in order; a value an earlier group redacted is a placeholder to the later ones, so each
secret counts once. The groups:

1. private keys (PEM blocks, whole, or to the end of a cut-off text);
2. providers' token shapes by prefix: ours, broad on purpose (`_TOKEN`), then gitleaks' default
   rule set (`gitleaks.toml`, MIT, vendored; each rule runs only when one of its keywords is in
   the text, its secret must pass the rule's entropy threshold and allow-lists);
3. structure: webhook URLs, bearer tokens, passwords in URLs, command-line flags
   (`--password X`, `curl -u user:pass`, `mysql -pX`), assignments whose key names a secret
   (`.env`, YAML, JSON, INI, shell, code, URL queries, connection strings), long random values
   next to secret-like names, 40-character AWS secret keys next to secret-like words, and every
   value of a `.env` file.

Every rule runs in time linear in the text: each pattern starts at a literal or at the start of a
run (a lookbehind), every repetition is bounded, and no two adjacent repetitions can take the same
characters; `tests/security/test_redaction_stall.py` holds each rule to that on crafted input.
`redact` also cuts any text longer than `MAX_REDACTED_CHARS` before scanning it, and sources cut
each fetched body with `cap_body` where it enters.
"""

from __future__ import annotations

import functools
import math
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

REDACTED = "[REDACTED]"
# GitHub refuses PR, issue and comment bodies longer than 65,536 characters; nothing longer is
# worth a prompt whose whole context budget is a few tens of thousands of characters.
MAX_BODY_CHARS = 65_536
# One context item (a PR with its description and diff, an issue with its comments) at most.
MAX_REDACTED_CHARS = 262_144
GITLEAKS_RULES = Path(__file__).with_name("gitleaks.toml")

_Span = tuple[int, int]


def cap_body(text: str | None, limit: int = MAX_BODY_CHARS) -> str:
    """`text` cut to `limit` characters with a visible marker, so nothing huge is ever scanned."""
    text = text or ""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… (cut here: {len(text):,} characters in all)"


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
    text = cap_body(text, MAX_REDACTED_CHARS)
    config = path is not None and PurePosixPath(path).suffix.lower() in _CONFIG_SUFFIXES
    groups: list[Callable[[str], Iterable[_Span]]] = [
        _private_keys,
        lambda text: _matches(_TOKEN, text, _token_secret),
        lambda text: _vendor_secrets(text, path),
        lambda text: _structural_secrets(text, config=config),
    ]
    if path is not None and _is_env_file(path):
        groups.append(_env_values)
    count = 0
    for find in groups:
        spans = _merged(find(text))
        text = _replaced(text, spans)
        count += len(spans)
    return Redacted(text, count)


# --- applying spans ---


def _merged(spans: Iterable[_Span]) -> list[_Span]:
    """Overlapping spans (two rules on one secret) become one."""
    merged: list[_Span] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _replaced(text: str, spans: list[_Span]) -> str:
    if not spans:
        return text
    parts, last = [], 0
    for start, end in spans:
        parts += [text[last:start], REDACTED]
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _matches(
    pattern: re.Pattern[str], text: str, secret: Callable[[re.Match[str]], _Span | None]
) -> Iterator[_Span]:
    for match in _finditer(pattern, text):
        span = secret(match)
        if span is not None:
            yield span


# A pattern runs on windows of the text, each overlapping the next: one search holds the GIL for
# the length of a window only, so the event loop's thread gets its turn (`/healthz` answers) while
# another thread redacts. A match starting in a window's overlap is left to the next window.
_WINDOW = 32_768
_OVERLAP = 4_096


def _finditer(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """`pattern.finditer(text)`, window by window: a window's end reads as the text's end, so a
    secret cut there is redacted as far as the window goes, and whole by the next window."""
    for start in range(0, max(len(text), 1), _WINDOW):
        end = start + _WINDOW + _OVERLAP
        for match in pattern.finditer(text, start, end):
            if match.start() < start + _WINDOW:
                yield match


# --- 1. private keys ---

_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")


def _private_keys(text: str) -> Iterator[_Span]:
    """Each PEM private key whole, also inside JSON (`\\n` escapes); a cut-off one to the end."""
    position = 0
    while begin := _PEM_BEGIN.search(text, position):
        end = _PEM_END.search(text, begin.end())
        position = end.end() if end else len(text)
        yield begin.start(), position


# --- 2. providers' tokens ---

# Ours: the common providers' prefixes with generous lengths, so a token of a shape the vendored
# rules pin exactly (a newer format, a test value) is caught too.
_TOKEN = re.compile(
    r"\b(?:"
    r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_\w{22,255}"  # GitHub
    r"|gl(?:pat|dt|rt|ptt|soat|ft|imt|agent|oas|cbt|ffct)-[\w-]{20,255}"  # GitLab
    r"|xox[abeoprs]-[A-Za-z0-9-]{10,255}|xapp-[A-Za-z0-9-]{10,255}"  # Slack
    r"|sk-[\w-]{20,255}"  # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-): a digit is required below
    r"|(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,255}|whsec_[A-Za-z0-9+/=]{20,255}"  # Stripe
    r"|AIza[\w-]{30,60}"  # Google API key
    r"|hf_[A-Za-z0-9]{30,60}|api_org_[A-Za-z0-9]{30,60}"  # Hugging Face
    r"|SK[0-9a-fA-F]{32}\b"  # Twilio API key
    r"|SG\.[\w-]{16,32}\.[\w-]{20,64}"  # SendGrid
    r"|pypi-[\w-]{50,1000}"  # PyPI upload token
    r"|npm_[A-Za-z0-9]{30,60}"  # npm
    r"|lin_(?:api|oauth)_[A-Za-z0-9]{30,255}"  # Linear
    r"|eyJ[\w-]{8,4096}\.eyJ[\w-]{8,8192}\.[\w-]{0,4096}"  # JSON Web Token (header.payload.sig)
    r")"
)


def _token_secret(match: re.Match[str]) -> _Span | None:
    """A `sk-…` word is a key only with a digit in it (not `sk-learn-contributors-guide`)."""
    token = match[0]
    if token.startswith("sk-") and not any(char.isdigit() for char in token):
        return None
    return match.span()


@dataclass(frozen=True)
class _Allowlist:
    """One of gitleaks' allow-lists: a finding it covers is not a secret."""

    target: str  # "secret", "match" or "line"
    regexes: tuple[re.Pattern[str], ...]
    stopwords: tuple[str, ...]
    paths: tuple[re.Pattern[str], ...]
    all_of: bool  # condition = "AND"

    def allows(self, secret: str, match: str, line: str, path: str | None) -> bool:
        target = {"match": match, "line": line}.get(self.target, secret)
        checks = []
        if self.paths:
            checks.append(path is not None and any(p.search(path) for p in self.paths))
        if self.regexes:
            checks.append(any(regex.search(target) for regex in self.regexes))
        if self.stopwords:
            lowered = secret.lower()
            checks.append(any(word in lowered for word in self.stopwords))
        return all(checks) if self.all_of else any(checks)


@dataclass(frozen=True)
class _VendorRule:
    """One gitleaks rule, its regex translated from Go's RE2 syntax to Python's."""

    id: str
    pattern: re.Pattern[str]
    keywords: tuple[str, ...]
    secret_group: int
    entropy: float
    path: re.Pattern[str] | None
    allowlists: tuple[_Allowlist, ...]


@dataclass(frozen=True)
class _VendorRules:
    rules: tuple[_VendorRule, ...]
    allowlist: _Allowlist


# Gitleaks rules left out, each caught by our own rules above in linear time: their patterns
# (`.*` to the end of a line after `curl`, a lazy scan for a key's end) take time quadratic in
# the input under Python's backtracking `re`.
_UNSAFE_VENDOR_RULES = frozenset({"curl-auth-header", "curl-auth-user", "private-key"})
# Gitleaks' "generic" prefix, `[\w.-]{0,50}?` before a keyword, widens the match to the left only:
# it changes no secret found, and makes every rule scan 50 characters back at every position.
_GENERIC_PREFIX = r"[\w.-]{0,50}?"


@functools.cache
def vendor_rules() -> _VendorRules:
    """Gitleaks' default rules, loaded and compiled once a process, on first use."""
    config = tomllib.loads(GITLEAKS_RULES.read_text(encoding="utf-8"))
    rules = tuple(
        _vendor_rule(rule)
        for rule in config["rules"]
        if "regex" in rule and rule["id"] not in _UNSAFE_VENDOR_RULES
    )
    return _VendorRules(rules=rules, allowlist=_allowlist(config["allowlist"], paths=False))


def _vendor_rule(rule: dict[str, Any]) -> _VendorRule:
    return _VendorRule(
        id=rule["id"],
        pattern=re.compile(_python_regex(rule["regex"])),
        keywords=tuple(keyword.lower() for keyword in rule.get("keywords", ())),
        secret_group=rule.get("secretGroup", 0),
        entropy=float(rule.get("entropy", 0.0)),
        path=re.compile(_python_regex(rule["path"])) if "path" in rule else None,
        allowlists=tuple(_allowlist(a) for a in rule.get("allowlists", ())),
    )


def _allowlist(table: dict[str, Any], *, paths: bool = True) -> _Allowlist:
    return _Allowlist(
        target=table.get("regexTarget", "secret"),
        regexes=tuple(re.compile(_python_regex(r)) for r in table.get("regexes", ())),
        stopwords=tuple(word.lower() for word in table.get("stopwords", ())),
        paths=tuple(re.compile(_python_regex(p)) for p in table.get("paths", ())) if paths else (),
        all_of=table.get("condition", "OR").upper() == "AND",
    )


def _python_regex(go: str) -> str:
    """A Go RE2 pattern as Python reads it.

    A `(?i)` after the start applies to the rest of its group in Go and is an error in Python:
    the whole pattern becomes case-insensitive (it may catch more, never less). `\\z` is `\\Z`,
    `[:alnum:]` is spelled out.
    """
    python = go.replace(_GENERIC_PREFIX, "").replace(r"\z", r"\Z")
    python = python.replace("[:alnum:]", "0-9A-Za-z")
    if "(?i)" in python.removeprefix("(?i)"):
        python = "(?i)" + python.replace("(?i)", "")
    return python


def _vendor_secrets(text: str, path: str | None) -> Iterator[_Span]:
    vendor = vendor_rules()
    lowered = text.lower()
    for rule in vendor.rules:
        if rule.keywords and not any(keyword in lowered for keyword in rule.keywords):
            continue
        if rule.path is not None and (path is None or not rule.path.search(path)):
            continue
        for match in _finditer(rule.pattern, text):
            span = _vendor_secret(rule, match)
            if span is None:
                continue
            secret, line = text[span[0] : span[1]], _line_of(text, match.start())
            if rule.entropy and shannon_entropy(secret) <= rule.entropy:
                continue
            if _is_placeholder(secret) or vendor.allowlist.allows(secret, match[0], line, path):
                continue
            if not any(a.allows(secret, match[0], line, path) for a in rule.allowlists):
                yield span


def _vendor_secret(rule: _VendorRule, match: re.Match[str]) -> _Span | None:
    """The rule's secret group, else its first group that matched, else the whole match."""
    if rule.secret_group:
        group = rule.secret_group
    else:
        group = next((g for g in range(1, (match.re.groups or 0) + 1) if match[g]), 0)
    start, end = match.span(group)
    return (start, end) if end > start else None


def _line_of(text: str, index: int) -> str:
    """The line `index` is on, at most `_LINE_CONTEXT` characters either side."""
    end = text.find("\n", index, index + _LINE_CONTEXT)
    after = text[index : end if end != -1 else index + _LINE_CONTEXT]
    return _line_before(text, index, _LINE_CONTEXT) + after


def shannon_entropy(value: str) -> float:
    """Bits per character, as gitleaks and detect-secrets measure randomness."""
    if not value:
        return 0.0
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


# --- 3. structure ---

_LINE_CONTEXT = 300  # how far back on a line a rule looks for the command a flag belongs to
_MAX_VALUE = 4096  # a quoted value
_MAX_BARE = 256  # an unquoted value read at once; a longer run is read on to its end
_BARE = r"[^\s\"'`,;&)}\]>]"

_SLACK_WEBHOOK = re.compile(
    r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[\w/-]{1,512})"
)
_BEARER = re.compile(r"\b(?i:bearer)[ \t]{1,8}(?P<secret>[\w.~+/=-]{20,4096})")
_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s:/@]{0,256}:(?P<secret>[^\s/@]{1,256})@"
)
# `key = value`, `key: value`, `key => value`, `"key": "value"`, `&key=value` in a URL; the key
# starts a run of name characters, so each run is looked at once.
_KEY = re.compile(
    r"(?:^[+-]|(?<![\w.-]))(?P<quote>[\"']?)(?P<key>[A-Za-z_][\w.-]{0,80})(?P=quote)"
    r"[ \t]{0,8}(?:=>|=(?!=)|:(?![:=]))[ \t]{0,8}",
    re.MULTILINE,
)
_VALUE = re.compile(
    r"(?:(?i:bearer|basic|token)[ \t]{1,8})?"
    rf"(?:\"(?P<double>(?:[^\"\\\n]|\\.){{0,{_MAX_VALUE}}})\""
    rf"|'(?P<single>(?:[^'\\\n]|\\.){{0,{_MAX_VALUE}}})'"
    rf"|(?P<bare>{_BARE}{{1,{_MAX_BARE}}}))"
)
_BARE_RUN = re.compile(f"{_BARE}*")
# `--password X`, `--api-key=X`, `-u user:pass` (curl), `-p X` (sshpass), `-a X` (redis-cli).
_FLAG = re.compile(
    r"(?<![\w-])--?(?P<flag>[A-Za-z][\w-]{0,40})(?:=|[ \t]{1,8})"
    r"(?P<value>\"[^\"\n]{1,512}\"|'[^'\n]{1,512}'|[^\s\"'`|;&<>=][^\s\"'`|;&<>]{0,511})"
)
_PASSWORD_FLAGS = {"p": ("sshpass",), "a": ("redis-cli",)}
_USER_COMMANDS = ("curl", "wget", "http ", "https ")
# `mysql -pSECRET`: the password attached to `-p` (`-p` alone prompts for it).
_ATTACHED_PASSWORD = re.compile(r"(?<![\w-])-p(?P<value>[^\s\"'`|;&<>]{1,512})")
# A 40-character base64 run, as an AWS secret access key is, not part of a longer one.
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_SECRET_CONTEXT = re.compile(r"(?i)secret|password|aws|credential|private|token|\bkey\b")


def _structural_secrets(text: str, *, config: bool) -> Iterator[_Span]:
    yield from _matches(_SLACK_WEBHOOK, text, _group("secret"))
    yield from _matches(_BEARER, text, _group("secret"))
    yield from _matches(_URL_PASSWORD, text, _unless_placeholder)
    yield from _matches(_FLAG, text, _flag_secret)
    yield from _matches(_ATTACHED_PASSWORD, text, _attached_password)
    yield from _assigned_secrets(text, config=config)
    yield from _matches(_AWS_SECRET, text, _aws_secret)


def _group(name: str) -> Callable[[re.Match[str]], _Span]:
    return lambda match: match.span(name)


def _unless_placeholder(match: re.Match[str]) -> _Span | None:
    return None if _is_placeholder(match["secret"]) else match.span("secret")


def _assigned_secrets(text: str, *, config: bool) -> Iterator[_Span]:
    """Each assignment's value when its key names a secret, or looks random next to a key-like
    name. Scanning goes on after the operator, so `env: DB_PASSWORD=x` finds the inner one; a
    redacted value, or a bare run longer than `_MAX_BARE`, is skipped whole, so each character
    is read a bounded number of times."""
    position = 0
    for key in _finditer(_KEY, text):
        if key.start() < position:
            continue
        position = key.end()
        name = key["key"]
        secret_key = _is_secret_key(name)
        if not (secret_key or _is_secret_like_key(name)):
            continue
        value = _VALUE.match(text, key.end())
        if value is None:
            continue
        group = next(name for name in ("double", "single", "bare") if value[name] is not None)
        start, end = value.span(group)
        if group == "bare" and end - start == _MAX_BARE:
            end = position = _BARE_RUN.match(text, end).end()  # type: ignore[union-attr]
        secret = text[start:end]
        if _is_placeholder(secret):
            continue
        code = group == "bare" and not config and _reads_as_code(secret)
        if (secret_key and not code) or (not secret_key and _looks_random(secret)):
            position = end
            yield start, end


def _flag_secret(match: re.Match[str]) -> _Span | None:
    flag, value = match["flag"], match["value"]
    start, end = match.span("value")
    if value[0] in "\"'":
        value, start, end = value[1:-1], start + 1, end - 1
    if value.startswith("-") or _is_placeholder(value):
        return None
    if len(flag) > 1 and _is_secret_key(flag):
        return start, end
    commands = _PASSWORD_FLAGS.get(flag)
    if commands and _after_command(match, commands):
        return start, end
    user, colon, password = value.partition(":")
    if flag in ("u", "user") and colon and user and not _is_placeholder(password):
        return (start + len(user) + 1, end) if _after_command(match, _USER_COMMANDS) else None
    return None


def _attached_password(match: re.Match[str]) -> _Span | None:
    if _is_placeholder(match["value"]) or not _after_command(match, ("mysql", "mariadb")):
        return None
    return match.span("value")


def _after_command(match: re.Match[str], commands: tuple[str, ...]) -> bool:
    """Whether one of `commands` comes earlier on the flag's line (up to `_LINE_CONTEXT` back)."""
    before = _line_before(match.string, match.start(), _LINE_CONTEXT)
    return any(command in before for command in commands)


def _aws_secret(match: re.Match[str]) -> _Span | None:
    """A random 40-character value with a secret-like word before it on its line."""
    if not _looks_random(match[0], minimum_entropy=4.0):
        return None
    before = _line_before(match.string, match.start(), 80)
    return match.span() if _SECRET_CONTEXT.search(before) else None


def _line_before(text: str, index: int, limit: int) -> str:
    """The line's text before `index`, at most `limit` characters: bounded, so linear overall."""
    start = max(text.rfind("\n", max(0, index - limit), index) + 1, index - limit, 0)
    return text[start:index]


def _env_values(text: str) -> Iterator[_Span]:
    """Every value of a `.env` file (or of its diff), inside its quotes when it is quoted.

    A value an earlier rule already redacted in part (a URL's password) keeps the rest.
    """
    for match in _finditer(_ENV_LINE, text):
        start, end = match.span("value")
        value = match["value"].rstrip(" \t\r")
        end = start + len(value)
        if REDACTED in value:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value, start, end = value[1:-1], start + 1, end - 1
        if not _is_placeholder(value):
            yield start, end


_ENV_LINE = re.compile(
    r"^[+ -]?[ \t]{0,8}(?:export[ \t]{1,8})?[A-Za-z_][\w.]{0,80}[ \t]{0,8}=[ \t]{0,8}"
    r"(?P<value>[^\n]*)",
    re.MULTILINE,
)

# A key names a secret when its last word (snake, kebab, dotted or camelCase) is one of these,
# or ends with one (`PGPASSWORD`), or its last two words are one of the pairs: `db_password`,
# `clientSecret`, `X-Api-Key`, `ENCRYPTION_KEY`.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "apikey",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "creds",
        "sig",
        "signature",
    }
)
_SECRET_ENDINGS = ("password", "passwd", "passphrase", "secret", "token", "apikey")
_KEY_KINDS = frozenset(
    {
        "api",
        "access",
        "private",
        "secret",
        "encryption",
        "signing",
        "master",
        "client",
        "account",
        "app",
        "consumer",
        "shared",
        "service",
        "storage",
        "hmac",
        "jwt",
        "webhook",
        "deploy",
        "license",
        "session",
        "auth",
        "admin",
        "root",
        "crypto",
        "cipher",
        "aes",
        "sas",
        "ssh",
        "gpg",
        "pgp",
    }
)
# Names that hint at a secret without saying so: their values are redacted when they look random.
_SECRET_HINTS = ("key", "secret", "token", "pass", "pwd", "auth", "cred", "private", "salt", "sign")
# Values that stand for a secret without being one: nothing to hide, and redacting them would
# only make configuration examples harder to read.
_PLACEHOLDERS = frozenset({"", "none", "null", "nil", "undefined", "true", "false", "changeme"})
_PLACEHOLDER_STARTS = ("$", "{", "<", "%")  # ${VAR}, $VAR, {{ template }}, <your-password>, %s
# An unquoted value that reads as code (a name, an attribute) is left alone:
# `token: str`, `api_key=self.api_key`; so is a call or subscript: `password = get_password()`.
_NAME = re.compile(r"[A-Za-z_]{1,200}(?:\.[A-Za-z_]\w{0,200}){0,20}")
# Files where `key: value` is configuration, not code: every unquoted value is taken literally.
_CONFIG_SUFFIXES = frozenset({".yml", ".yaml", ".ini", ".cfg", ".conf", ".properties", ".toml"})
_ENV_EXAMPLES = frozenset({"example", "sample", "template", "dist"})


def _words(key: str) -> list[str]:
    return re.split(r"[_.-]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower())


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    words = [word for word in _words(key) if word]
    if not words:
        return False
    last = words[-1]
    if last in _SECRET_WORDS or last.endswith(_SECRET_ENDINGS):
        return True
    return last == "key" and len(words) > 1 and words[-2] in _KEY_KINDS


@functools.lru_cache(maxsize=4096)
def _is_secret_like_key(key: str) -> bool:
    lowered = key.lower()
    return any(hint in lowered for hint in _SECRET_HINTS)


def _looks_random(value: str, *, minimum_entropy: float = 3.5) -> bool:
    """Long, no spaces, letters and digits mixed, and high entropy: a generated secret."""
    return (
        len(value) >= 16
        and not any(char.isspace() for char in value)
        and any(char.isdigit() for char in value)
        and any(char.isalpha() for char in value)
        and shannon_entropy(value) >= minimum_entropy
    )


def _reads_as_code(value: str) -> bool:
    return "(" in value or "[" in value or _NAME.fullmatch(value) is not None


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
