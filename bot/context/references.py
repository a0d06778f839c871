"""The references in a message: GitHub URLs and Linear issues, found in the text alone.

No network and no knowledge of which repositories or Linear teams are connected: the caller
decides what to read. A bare key like `PAY-123` is a guess; the caller drops keys whose team it
does not know.

A GitHub or Linear URL that could make a request reach beyond what it names is refused, never
read, with the reason (`RefusedReference`): a `.` or `..` path segment (plain, percent-encoded,
or a Unicode look-alike), an encoded slash or a backslash, text percent-encoded twice, control
characters, user information before the host, or an owner, repository, ref or Linear key outside
the vendor's own naming rules. What is admitted can only name a path inside its repository.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable
from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit

from bot.context.models import GitHubReference, LinearReference, Reference, RefusedReference
from bot.core.persona import SourceKind

# Slack markup `<url|label>` or `<url>`: a scheme, then no `|`, `>` or space.
_SLACK_LINK = re.compile(r"<(?P<url>[A-Za-z][A-Za-z0-9+.-]*:[^|>\s]+)(?:\|[^>]*)?>")
_URL = re.compile(r"https?://[^\s<>\"'`|]+")
_LINEAR_KEY = re.compile(r"\b[A-Z][A-Z0-9]{1,9}-[0-9]{1,7}\b")

# Prefixes of `ABC-123`-shaped tokens that name standards, algorithms and versions, not tickets
# (UTF-8, SHA-256, RFC-9110, CVE-2024-…, GPT-4, X86-64).
_NOT_LINEAR_TEAMS = frozenset(
    {"UTF", "UCS", "SHA", "MD", "ISO", "RFC", "HTTP", "TLS", "SSL", "CVE", "CWE", "ECMA", "ES"}
    | {"PEP", "GPT", "AES", "RSA", "FIPS", "SOC", "X86", "ARM", "COVID"}
)

# First path segments on a GitHub host that are pages of the site, not an owner's repositories.
_NOT_OWNERS = frozenset(
    {"about", "account", "api", "apps", "codespaces", "collections", "contact", "copilot"}
    | {"customer-stories", "dashboard", "enterprise", "enterprises", "events", "explore"}
    | {"features", "issues", "join", "login", "logout", "marketplace", "new", "notifications"}
    | {"organizations", "orgs", "pricing", "pulls", "readme", "search", "security", "sessions"}
    | {"settings", "signup", "site", "sponsors", "stars", "team", "topics", "trending", "users"}
)

LINEAR_HOST = "linear.app"
_DEFAULT_PORTS = {"http": 80, "https": 443}

# GitHub's naming rules: an owner is letters, digits and single hyphens, neither first nor last,
# at most 39 characters; a repository is letters, digits, `.`, `-` and `_`, at most 100.
_OWNER = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9])*")
_MAX_OWNER = 39
_REPOSITORY = re.compile(r"[A-Za-z0-9._-]{1,100}")
# `git check-ref-format`, for the one URL segment taken as a ref: no `..`, `@{`, space, control
# character or any of ``~^:?*[\``, not starting with `.` or `-`, not ending in `.` or `.lock`.
_GIT_REF = re.compile(r"(?![.-])(?!.*\.\.)(?!.*@\{)(?!.*\.lock$)[^\s~^:?*\[\\]{1,255}(?<!\.)")
_SHA = re.compile(r"[0-9a-fA-F]{7,40}")
_NUMBER = re.compile(r"[0-9]{1,10}")
_LINEAR_ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9]{0,9}-[0-9]{1,7}")
_LINEAR_TEAM_KEY = re.compile(r"[A-Z][A-Z0-9]{0,9}")
_LINEAR_WORKSPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# `#L10`, `#L10-L40`, `#L10-40`, and GitHub's column form `#L10C5-L40C2`.
_LINES = re.compile(r"L([0-9]{1,9})(?:C[0-9]+)?(?:-L?([0-9]{1,9})(?:C[0-9]+)?)?")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_TRAILING_PUNCTUATION = ".,;:!?*_~"
_CLOSERS = {")": "(", "]": "[", "}": "{"}

_MAX_URL = 2048
_MAX_SEGMENT = 255
_SHOWN_URL = 160

# Why a URL is refused, said to the user in `missingContext` after "Did not read <url>: ".
DOT_SEGMENT = "its path has a `.` or `..` segment, which could lead outside what it names"
SLASH = "its path has an encoded slash or a backslash (`%2F`, `%5C` or `\\`)"
DOUBLE_ENCODED = "its path is percent-encoded twice"
NOT_UTF8 = "its path has percent-escapes that are not UTF-8 text"
CONTROL = "it contains control characters"
LOOK_ALIKE = "its path has Unicode look-alikes of `.`, `/`, `\\` or `%`"
USERINFO = "it has user information before the host (`name@`)"
BAD_HOST = "its host or port is not well-formed"
TOO_LONG = f"it is longer than {_MAX_URL:,} characters"
LONG_SEGMENT = f"a path segment is longer than {_MAX_SEGMENT} characters"
OTHER_GITHUB = "it is on another GitHub than the one this oi reads (GITHUB_API_URL)"


class Found(NamedTuple):
    """What a message refers to: references to read, and URLs refused with the reason."""

    references: list[Reference]
    refused: list[RefusedReference]


def unwrap_slack_links(text: str) -> str:
    """Turn Slack's `<url|label>` and `<url>` into the bare URL, which is what references name.

    Mentions (`<@U123>`), channels (`<#C123|name>`) and specials (`<!here>`) are not links and
    stay as they are. Slack escapes `&` as `&amp;`; inside a link it is unescaped back.
    """
    return _SLACK_LINK.sub(lambda match: match["url"].replace("&amp;", "&"), text)


def scan_references(text: str, *, github_hosts: Collection[str]) -> Found:
    """Every GitHub and Linear reference in `text`, in order of appearance, each once, and the
    GitHub and Linear URLs refused, each once.

    `text` may be raw Slack text. `github_hosts` are the hosts (with a port when not the default)
    whose URLs are GitHub's: `github.com`, a GitHub Enterprise host. A Linear key written bare and
    again as a URL is one reference, at its first place, with the URL.
    """
    text = unwrap_slack_links(text)
    hosts = {host.lower() for host in github_hosts}
    found: list[tuple[int, Reference]] = []
    refused: dict[str, RefusedReference] = {}
    for match in _URL.finditer(text):
        parsed = _parse_url(_strip_trailing(match[0]), hosts)
        if isinstance(parsed, RefusedReference):
            refused.setdefault(parsed.url, parsed)
        elif parsed is not None:
            found.append((match.start(), parsed))
    outside_urls = _URL.sub(lambda match: " " * len(match[0]), text)
    for match in _LINEAR_KEY.finditer(outside_urls):
        if match[0].split("-", 1)[0] not in _NOT_LINEAR_TEAMS:
            found.append((match.start(), LinearReference("issue", match[0])))
    found.sort(key=lambda pair: pair[0])
    return Found(_dedupe(reference for _, reference in found), list(refused.values()))


def repository_problem(full_name: str) -> str | None:
    """Why `owner/repo` is not a GitHub repository's name, or None when it is one."""
    owner, slash, repo = full_name.partition("/")
    if not slash:
        return f"`{_shown(full_name)}` is not written as owner/repo"
    return _owner_problem(owner) or _repo_problem(repo)


def github_reference_problem(reference: GitHubReference) -> str | None:
    """Why a reference could make a request outside its repository, or None when it cannot.

    Checked again where requests are built, whatever made the reference (a URL, a channel's link).
    """
    problem = repository_problem(reference.full_name)
    if problem is None and reference.ref is not None:
        problem = _ref_problem(reference.ref, commit=reference.kind == "commit")
    if problem is None and reference.path is not None:
        segments = reference.path.split("/")
        problem = next(filter(None, map(_decoded_segment_problem, segments)), None)
    return problem


def linear_key_problem(key: str, *, team: bool = False) -> str | None:
    """Why `key` is not a Linear issue key (`PAY-123`), or with `team`, a team key (`PAY`)."""
    if team:
        if _LINEAR_TEAM_KEY.fullmatch(key):
            return None
        return f"`{_shown(key)}` is not a Linear team key (like PAY)"
    if _LINEAR_ISSUE_KEY.fullmatch(key):
        return None
    return f"`{_shown(key)}` is not a Linear issue key (like PAY-123)"


def _strip_trailing(url: str) -> str:
    """Drop what ends a sentence around a URL: `.`, `,`, an unbalanced `)`, Slack's `*bold*`.

    A last segment `..` is a path segment, not punctuation, so it is kept (and refused); a
    single `.` after a slash is taken as the sentence's end. Brackets are counted once, so a URL
    followed by thousands of `)` costs linear time.
    """
    opened = {closer: url.count(opener) for closer, opener in _CLOSERS.items()}
    closed = {closer: url.count(closer) for closer in _CLOSERS}
    end = len(url)
    while end and not url.endswith("/..", 0, end):
        last = url[end - 1]
        if last in _CLOSERS:
            if closed[last] <= opened[last]:
                break
            closed[last] -= 1
        elif last not in _TRAILING_PUNCTUATION:
            break
        end -= 1
    return url[:end]


def _parse_url(url: str, github_hosts: Collection[str]) -> Reference | RefusedReference | None:
    """A reference, a refusal for a GitHub or Linear URL that may not be read, or None for a URL
    of any other site."""
    known = {*github_hosts, LINEAR_HOST}
    try:
        parts = urlsplit(url)
        host = _host(parts)
    except ValueError:  # a port that is no number, a bracket left open, look-alikes of `/`, `@`
        return _refused(url, BAD_HOST, known) if _mentions(url, known) else None
    if "@" in parts.netloc or "\\" in parts.netloc or _has_control(parts.netloc):
        reason = USERINFO if "@" in parts.netloc else BAD_HOST
        return _refused(url, reason, known) if _mentions(parts.netloc, known) else None
    if host not in known:
        if _another_github(host, parts.path):
            return RefusedReference("github", _shown(url), OTHER_GITHUB)
        return None
    source: SourceKind = "linear" if host == LINEAR_HOST else "github"
    if len(url) > _MAX_URL:
        return RefusedReference(source, _shown(url), TOO_LONG)
    raw = [segment for segment in parts.path.split("/") if segment]
    problem = next(filter(None, map(_segment_problem, raw)), None)
    if problem is None:
        segments = [unquote(segment) for segment in raw]
        if source == "linear":
            return _linear_reference(url, segments)
        return _github_reference(host, raw, segments, parts.fragment)
    return RefusedReference(source, _shown(url), problem)


def _another_github(host: str, path: str) -> bool:
    """A repository's link on a GitHub that is not the one read: github.com while an Enterprise
    server is configured, or a host named like one (`github.acme.com`) while github.com is.
    Look-alikes (`github.com.evil.example`, `github.com:8080`) are other sites, not GitHubs."""
    names_a_repository = len([segment for segment in path.split("/") if segment]) >= 2
    enterprise_like = host.startswith("github.") and not host.startswith("github.com")
    return names_a_repository and (host in ("github.com", "www.github.com") or enterprise_like)


def _host(parts: SplitResult) -> str:
    """`host`, or `host:port` when the port is not the scheme's default; ValueError if malformed."""
    host, port = parts.hostname or "", parts.port
    if port is None or port == _DEFAULT_PORTS.get(parts.scheme.lower()):
        return host
    return f"{host}:{port}"


def _mentions(text: str, hosts: Collection[str]) -> bool:
    """Whether `text` names one of `hosts`, even through case or Unicode look-alikes."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return any(host.split(":")[0] in folded for host in hosts)


def _refused(url: str, reason: str, known: Collection[str]) -> RefusedReference:
    source: SourceKind = "linear" if _mentions(url, {LINEAR_HOST}) else "github"
    return RefusedReference(source, _shown(url), reason)


def _segment_problem(raw: str) -> str | None:
    """Why one path segment of a URL, as written, could change the path's structure."""
    try:
        return _decoded_segment_problem(unquote(raw, errors="strict"))
    except UnicodeDecodeError:
        return NOT_UTF8


def _decoded_segment_problem(segment: str) -> str | None:
    """Why one decoded segment (a name, a ref, a folder, a file) could change a request's path,
    or None when it cannot: it is then one segment, whatever encoding it is given."""
    if _has_control(segment):
        return CONTROL
    if segment in (".", ".."):
        return DOT_SEGMENT
    if "/" in segment or "\\" in segment:
        return SLASH
    if _PERCENT_ESCAPE.search(segment):
        return DOUBLE_ENCODED
    folded = unicodedata.normalize("NFKC", segment)
    if folded != segment and (
        folded in (".", "..") or "/" in folded or "\\" in folded or _PERCENT_ESCAPE.search(folded)
    ):
        return LOOK_ALIKE
    if len(segment) > _MAX_SEGMENT:
        return LONG_SEGMENT
    return None


def _has_control(text: str) -> bool:
    """Control, format (bidi overrides, zero-width) and separator characters other than space."""
    return any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in text)


def _owner_problem(owner: str) -> str | None:
    if len(owner) <= _MAX_OWNER and _OWNER.fullmatch(owner):
        return None
    return (
        f"`{_shown(owner)}` is not a GitHub owner name "
        f"(letters, digits and single hyphens, at most {_MAX_OWNER})"
    )


def _repo_problem(repo: str) -> str | None:
    if _REPOSITORY.fullmatch(repo) and repo not in (".", ".."):
        return None
    return (
        f"`{_shown(repo)}` is not a GitHub repository name "
        "(letters, digits, `.`, `-` and `_`, at most 100)"
    )


def _ref_problem(ref: str, *, commit: bool) -> str | None:
    if commit:
        return None if _SHA.fullmatch(ref) else f"`{_shown(ref)}` is not a commit sha"
    if _decoded_segment_problem(ref) is None and _GIT_REF.fullmatch(ref) and ref != "@":
        return None
    return f"`{_shown(ref)}` is not a git branch, tag or commit name"


def _shown(text: str) -> str:
    """`text` safe to show: invisible and control characters percent-encoded, then shortened."""
    visible = "".join(
        "".join(f"%{byte:02X}" for byte in char.encode())
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Zs", "Cs", "Co", "Cn")
        else char
        for char in text[: _SHOWN_URL * 2]
    )
    return visible if len(visible) <= _SHOWN_URL else f"{visible[:_SHOWN_URL]}…"


def _github_reference(
    host: str, raw: list[str], segments: list[str], fragment: str
) -> GitHubReference | RefusedReference | None:
    """A reference from a GitHub web URL's path, a refusal for names GitHub does not allow, or
    None for a page that is not in a repository."""
    if len(segments) < 2 or segments[0].lower() in _NOT_OWNERS:
        return None
    reference = _github_page(host, raw, segments, fragment)
    problem = github_reference_problem(reference)
    if problem is not None:
        return RefusedReference("github", _shown(f"https://{host}/{'/'.join(raw)}"), problem)
    return reference


def _github_page(host: str, raw: list[str], segments: list[str], fragment: str) -> GitHubReference:
    """What the path names inside a repository.

    In `/blob/<ref>/<path>` and `/tree/<ref>/<path>` the ref is the first segment: a branch named
    `release/v2` cannot be told from a path in the URL alone, so `release` is taken as the ref.
    Any other page inside a repository (`/actions`, `/releases`) refers to the repository.
    """
    owner, repo = segments[0], segments[1].removesuffix(".git")
    base = f"https://{host}/{owner}/{repo}"
    here = f"{base}/{'/'.join(raw[2:])}"
    match segments[2:]:
        case ["pull" | "pulls", number, *_] if _NUMBER.fullmatch(number):
            return GitHubReference("pull", owner, repo, f"{base}/pull/{number}", number=int(number))
        case ["issues", number, *_] if _NUMBER.fullmatch(number):
            url = f"{base}/issues/{number}"
            return GitHubReference("issue", owner, repo, url, number=int(number))
        case ["blob", ref, *path] if path:
            lines = _lines(fragment)
            url = here if lines is None else f"{here}#{_line_fragment(lines)}"
            return GitHubReference(
                "file", owner, repo, url, path="/".join(path), ref=ref, lines=lines
            )
        case ["tree", ref, *path]:
            return GitHubReference("tree", owner, repo, here, path="/".join(path) or None, ref=ref)
        case ["commit" | "commits", sha, *_] if _SHA.fullmatch(sha):
            return GitHubReference("commit", owner, repo, f"{base}/commit/{sha}", ref=sha)
        case _:
            return GitHubReference("repo", owner, repo, base)


def _lines(fragment: str) -> tuple[int, int] | None:
    match = _LINES.fullmatch(fragment)
    if match is None:
        return None
    first, last = int(match[1]), int(match[2] or match[1])
    return min(first, last), max(first, last)


def _line_fragment(lines: tuple[int, int]) -> str:
    first, last = lines
    return f"L{first}" if first == last else f"L{first}-L{last}"


def _linear_reference(url: str, segments: list[str]) -> LinearReference | RefusedReference | None:
    """`linear.app/<workspace>/issue/<KEY>/<slug>`: the issue, cited without its slug."""
    match segments:
        case [workspace, "issue", key, *_]:
            key = key.upper()
            problem = linear_key_problem(key)
            if not _LINEAR_WORKSPACE.fullmatch(workspace):
                problem = f"`{_shown(workspace)}` is not a Linear workspace name"
            if problem is not None:
                return RefusedReference("linear", _shown(url), problem)
            return LinearReference("issue", key, f"https://{LINEAR_HOST}/{workspace}/issue/{key}")
        case _:
            return None


def _dedupe(references: Iterable[Reference]) -> list[Reference]:
    """Each reference once, at its first place; a bare Linear key takes a later URL for itself."""
    unique: dict[object, Reference] = {}
    for reference in references:
        identity = (
            (reference.kind, reference.key) if isinstance(reference, LinearReference) else reference
        )
        if identity not in unique or unique[identity].url is None:
            unique[identity] = reference
    return list(unique.values())
