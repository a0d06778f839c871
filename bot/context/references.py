"""The references in a message: GitHub URLs and Linear issues, found in the text alone.

No network and no knowledge of which repositories or Linear teams are connected: the caller
decides what to read. A bare key like `PAY-123` is a guess; the caller drops keys whose team it
does not know.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from urllib.parse import unquote, urlsplit

from bot.context.models import GitHubReference, LinearReference, Reference

# Slack markup `<url|label>` or `<url>`: a scheme, then no `|`, `>` or space.
_SLACK_LINK = re.compile(r"<(?P<url>[A-Za-z][A-Za-z0-9+.-]*:[^|>\s]+)(?:\|[^>]*)?>")
_URL = re.compile(r"https?://[^\s<>\"'`|]+")
_LINEAR_KEY = re.compile(r"\b[A-Z][A-Z0-9]{1,9}-\d{1,7}\b")

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

_NAME = re.compile(r"[\w.-]+")
_SHA = re.compile(r"[0-9a-fA-F]{7,40}")
_LINEAR_URL_KEY = re.compile(r"[A-Za-z][A-Za-z0-9]{0,9}-\d{1,7}")
# `#L10`, `#L10-L40`, `#L10-40`, and GitHub's column form `#L10C5-L40C2`.
_LINES = re.compile(r"L(\d+)(?:C\d+)?(?:-L?(\d+)(?:C\d+)?)?")
_TRAILING_PUNCTUATION = ".,;:!?*_~"
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def unwrap_slack_links(text: str) -> str:
    """Turn Slack's `<url|label>` and `<url>` into the bare URL, which is what references name.

    Mentions (`<@U123>`), channels (`<#C123|name>`) and specials (`<!here>`) are not links and
    stay as they are. Slack escapes `&` as `&amp;`; inside a link it is unescaped back.
    """
    return _SLACK_LINK.sub(lambda match: match["url"].replace("&amp;", "&"), text)


def find_references(text: str, *, github_hosts: Collection[str]) -> list[Reference]:
    """Every GitHub and Linear reference in `text`, in order of appearance, each once.

    `text` may be raw Slack text. `github_hosts` are the hosts (with a port when not the default)
    whose URLs are GitHub's: `github.com`, a GitHub Enterprise host. A Linear key written bare and
    again as a URL is one reference, at its first place, with the URL.
    """
    text = unwrap_slack_links(text)
    hosts = {host.lower() for host in github_hosts}
    found: list[tuple[int, Reference]] = []
    for match in _URL.finditer(text):
        reference = _parse_url(_strip_trailing(match[0]), hosts)
        if reference is not None:
            found.append((match.start(), reference))
    outside_urls = _URL.sub(lambda match: " " * len(match[0]), text)
    for match in _LINEAR_KEY.finditer(outside_urls):
        if match[0].split("-", 1)[0] not in _NOT_LINEAR_TEAMS:
            found.append((match.start(), LinearReference("issue", match[0])))
    found.sort(key=lambda pair: pair[0])
    return _dedupe(reference for _, reference in found)


def _strip_trailing(url: str) -> str:
    """Drop what ends a sentence around a URL: `.`, `,`, an unbalanced `)`, Slack's `*bold*`."""
    while url:
        last = url[-1]
        unbalanced = last in _CLOSERS and url.count(last) > url.count(_CLOSERS[last])
        if last not in _TRAILING_PUNCTUATION and not unbalanced:
            break
        url = url[:-1]
    return url


def _parse_url(url: str, github_hosts: Collection[str]) -> Reference | None:
    parts = urlsplit(url)
    host = parts.netloc.lower()
    raw = [segment for segment in parts.path.split("/") if segment]
    if host == "linear.app":
        return _linear_reference(raw)
    if host in github_hosts:
        return _github_reference(host, raw, parts.fragment)
    return None


def _github_reference(host: str, raw: list[str], fragment: str) -> GitHubReference | None:
    """A reference from a GitHub web URL's path, or None for a page that is not in a repository.

    In `/blob/<ref>/<path>` and `/tree/<ref>/<path>` the ref is the first segment: a branch named
    `release/v2` cannot be told from a path in the URL alone, so `release` is taken as the ref.
    Any other page inside a repository (`/actions`, `/releases`) refers to the repository.
    """
    segments = [unquote(segment) for segment in raw]
    if len(segments) < 2 or segments[0].lower() in _NOT_OWNERS:
        return None
    owner, repo = segments[0], segments[1].removesuffix(".git")
    if not (_NAME.fullmatch(owner) and _NAME.fullmatch(repo)):
        return None
    base = f"https://{host}/{owner}/{repo}"
    here = f"{base}/{'/'.join(raw[2:])}"
    match segments[2:]:
        case ["pull" | "pulls", number, *_] if number.isdigit():
            return GitHubReference("pull", owner, repo, f"{base}/pull/{number}", number=int(number))
        case ["issues", number, *_] if number.isdigit():
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


def _linear_reference(raw: list[str]) -> LinearReference | None:
    """`linear.app/<workspace>/issue/<KEY>/<slug>`: the issue, cited without its slug."""
    match raw:
        case [workspace, "issue", key, *_] if _LINEAR_URL_KEY.fullmatch(key):
            key = key.upper()
            return LinearReference("issue", key, f"https://linear.app/{workspace}/issue/{key}")
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
