"""What makes model and user text inert in Slack, whichever way Slack shows it.

An answer is written by a model from text anyone could have written (a README, an issue, a
comment), so no word of it may mention or ping anyone, link anywhere but to what was read for the
answer (or the persona card's `[links] allowed`), or pass for one of the answer's own labels. Each
way Slack shows text has its own rules, so each has its own function here: `inert()` for mrkdwn,
`markdown_inert()` for standard Markdown (a streamed draft, the answer's file), `notification()`
for a message's `text`, `unformatted()` for what Slack shows as it is.
https://docs.slack.dev/messaging/formatting-message-text#escaping
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.answer import Citation
from bot.core.persona import Persona

_BROADCAST = re.compile(r"@(?=channel|here|everyone)", re.IGNORECASE)
# Characters that show nothing but change how the text around them reads: zero-width spaces and
# joiners that would hide markup from `_LEADING_MARKUP`, and bidirectional overrides that reorder
# what is shown. ZWJ and ZWNJ stay: emoji and some scripts need them.
_INVISIBLE = re.compile(
    "[\u00ad\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_URL = re.compile(r"https?://[^\s<>|\"'`]+", re.IGNORECASE)
# Punctuation after a URL that ends the sentence rather than the URL.
_URL_END = ".,;:!?)]}*_~'\""
# What mrkdwn reads as markup at the start of a line (bold, italic, strike, code, quote), and our
# bullet, each with a look-alike that Slack shows as it is.
_LOOK_ALIKES = {
    "*": "\u2217",
    "_": "\uff3f",
    "~": "\u223c",
    "`": "\u02cb",
    "&gt;": "\u203a",
    "•": "\u25e6",
}
_MARK = re.compile("|".join(re.escape(mark) for mark in _LOOK_ALIKES))
_LEADING_MARKUP = re.compile(
    rf"^([^\S\n]*)((?:{_MARK.pattern})(?:[^\S\n]*(?:{_MARK.pattern}))*)", re.MULTILINE
)
# `<` and `>` in text Slack shows as it is (raw_text, rich_text), so that not even an inert
# `<!here>` reaches Slack.
_ANGLES = str.maketrans({"<": "\u2039", ">": "\u203a"})
# Standard Markdown (`markdown_text`, the file) makes links and images of brackets.
_MD_BRACKETS = str.maketrans({"[": "\uff3b", "]": "\uff3d"})
# What Markdown reads at the start of a line as a block of its own (heading, list, rule, setext
# underline, code fence, table) or as emphasis that could forge a label; quotes and HTML cannot
# start, their `>` and `<` being entities. The mark's look-alike is only text.
_MD_LOOK_ALIKES = {mark: _LOOK_ALIKES[mark] for mark in "*_~`"} | {
    "#": "\uff03",
    "+": "\uff0b",
    "=": "\uff1d",
    "|": "\uff5c",
    "-": "\u2010",
    ".": "\uff0e",
    ")": "\uff09",
}
_MD_BLOCK_MARK = re.compile(r"^(?:\d{1,9}[.)](?=\s|$)|[#*+=_~`|-])", re.MULTILINE)


def escape(text: str) -> str:
    """Make model text inert in Slack: no formatting as links or mentions, no pings.

    `&`, `<` and `>` are Slack's control characters (`<!channel>`, `<@U123>`); a word joiner
    after `@` keeps a plain `@channel`, `@here` or `@everyone` from notifying the channel.
    https://docs.slack.dev/messaging/formatting-message-text#escaping
    """
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u2060", escaped)


@dataclass(frozen=True)
class AllowedLinks:
    """Where links in an answer may point: the sources read for it (any anchor on their page),
    and the persona card's `[links] allowed` prefixes (each names a whole host, see the card)."""

    read: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, persona: Persona, sources: Sequence[Citation]) -> AllowedLinks:
        read = frozenset(_page(citation.url) for citation in sources)
        return cls(read=read, prefixes=tuple(persona.links.allowed))

    def allow(self, url: str) -> bool:
        return _page(url) in self.read or url.startswith(self.prefixes)


def _page(url: str) -> str:
    return url.split("#", 1)[0]


def inert(text: str, links: AllowedLinks, *, one_line: bool = False) -> str:
    """Model text for a `verbatim` mrkdwn text object: it pings no one, links only where
    allowed, and cannot pass for one of the answer's labels, quotes or bullets.

    - Invisible characters are dropped, so none can hide markup from the rules below.
    - `one_line` text (list items, next actions) loses its line breaks: it cannot start a line
      of its own under ours.
    - `escape()` turns Slack's control characters into entities and defuses @channel. The text
      object is `verbatim`, so Slack links no bare URL, domain or channel name in it; a URL of a
      source read for this answer, or under an allowed prefix, is made a link on purpose
      (`<url>`), and any other URL stays plain text.
    - At the start of every line, markup (`*` `_` `~` `` ` `` `>`) and our bullet `•` are swapped
      for look-alikes Slack does not format (∗ ＿ ∼ ˋ › ◦), so no line of model text opens bold,
      italic, struck, code or quoted, as our `*Recommendation*` label or quote does. Markup inside
      a line still formats as the model meant it; where the renderer cuts a line in two, it
      applies the same rule with `defuse_start()`.
    """
    text = _INVISIBLE.sub("", text)
    if one_line:
        text = " ".join(text.split())
    shown = "".join(
        f"<{link_target(piece)}>" if is_url and links.allow(piece) else escape(piece)
        for piece, is_url in _url_pieces(text)
    )
    return _defuse_line_starts(shown)


def markdown_inert(text: str, links: AllowedLinks, *, one_line: bool = False) -> str:
    """Model text for standard Markdown (a streamed draft's `markdown_text`, the answer's file),
    with `inert()`'s guarantees in Markdown's terms.

    - `escape()` makes `&`, `<` and `>` entities (so no HTML, autolink or quote) and defuses
      @channel; brackets become look-alikes (［ ］), so the model makes no link or image.
    - A URL of a source read, or under an allowed prefix, is made a link on purpose (`<url>`);
      any other is defanged (`hxxps://evil［.］example/x`), so that no reader links it either.
    - Every line loses its indentation (no code block), and a mark that would start a heading,
      a list, a rule, a code fence, a table or emphasis at its start becomes a look-alike.

    Each rule looks no further than the word it changes, so the words of a longer text render as
    they did in a shorter one: a streamed draft only grows.
    """
    text = _INVISIBLE.sub("", text)
    if one_line:
        text = " ".join(text.split())
    shown = "".join(
        f"<{link_target(piece)}>"
        if is_url and links.allow(piece)
        else markdown_text(_defanged(piece) if is_url else piece)
        for piece, is_url in _url_pieces(text)
    )
    lines = "\n".join(line.strip() for line in shown.splitlines())
    return _MD_BLOCK_MARK.sub(lambda mark: mark[0][:-1] + _MD_LOOK_ALIKES[mark[0][-1]], lines)


def markdown_text(text: str) -> str:
    """Text that Markdown shows as it is, wherever in a line it stands."""
    return escape(text).translate(_MD_BRACKETS)


def notification(text: str, links: AllowedLinks) -> str:
    """Model text for a message's `text`, which notifications, e-mails and screen readers show
    and which cannot be `verbatim`: a URL not allowed is defanged (`hxxps://evil[.]example/x`)."""
    return escape(defanged_line(text, links))


def unformatted(text: str, links: AllowedLinks) -> str:
    """Model or fetched text for what Slack shows as it is (a table's `raw_text`, a `rich_text`
    element): nothing there is markup, but a URL not allowed is defanged in case Slack links it,
    and @channel is defused and `<`, `>` swapped for look-alikes so nothing like a ping is sent."""
    return _BROADCAST.sub("@\u2060", defanged_line(text, links)).translate(_ANGLES)


def defanged_line(text: str, links: AllowedLinks) -> str:
    """`text` on one line, each URL not allowed defanged; nothing else changed, so the caller
    makes it inert for where it goes."""
    return "".join(
        _defanged(piece) if is_url and not links.allow(piece) else piece
        for piece, is_url in _url_pieces(on_one_line(text))
    )


def on_one_line(text: str) -> str:
    """`text` without invisible characters, its whitespace (line breaks too) one space."""
    return " ".join(_INVISIBLE.sub("", text).split())


def link_target(url: str) -> str:
    """A URL as the target of a `<…>` link, which it can neither close nor label."""
    return url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")


def _url_pieces(text: str) -> list[tuple[str, bool]]:
    """`text` cut into its URLs and the text between them, each marked as URL or not."""
    pieces: list[tuple[str, bool]] = []
    start = 0
    for match in _URL.finditer(text):
        url = match.group().rstrip(_URL_END)
        pieces += [(text[start : match.start()], False), (url, True)]
        start = match.start() + len(url)
    pieces.append((text[start:], False))
    return pieces


def _defanged(url: str) -> str:
    scheme, rest = url.split("://", 1)
    host, slash, path = rest.partition("/")
    return f"hxxp{scheme[4:]}://{host.replace('.', '[.]')}{slash}{path}"


def _defuse_line_starts(mrkdwn: str) -> str:
    return _LEADING_MARKUP.sub(_look_alike, mrkdwn)


def defuse_start(mrkdwn: str) -> str:
    """`inert()`'s rule for line starts, on the first line only: for mrkdwn cut mid-line, whose
    other lines may be ours."""
    start = _LEADING_MARKUP.match(mrkdwn)
    return _look_alike(start) + mrkdwn[start.end() :] if start else mrkdwn


def _look_alike(line: re.Match[str]) -> str:
    return line[1] + _MARK.sub(lambda mark: _LOOK_ALIKES[mark[0]], line[2])
