"""A Reply rendered for Slack as Block Kit messages, built with `slack_sdk.models.blocks`.

Slack rejects a message that breaks one of its limits, so the renderer never lets one happen:
long text is split over several section blocks, and blocks over several messages in the thread,
rather than cut. Model text goes through `_inert()`: it cannot mention or ping anyone, link
anywhere but to what was read for the answer (or the card's `[links] allowed`), or pass for one of
the answer's own labels. https://docs.slack.dev/reference/block-kit/blocks
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
    TextObject,
)

from bot.core.answer import Answer, Citation, NextAction, Reply
from bot.core.commands import SLACK_USAGE
from bot.core.persona import Persona, UnknownPersonaError
from bot.slack.directory import Conversation
from bot.store import LinkRecord

RETRY_ACTION = "oi_retry"
FEEDBACK_UP_ACTION = "oi_feedback_up"
FEEDBACK_DOWN_ACTION = "oi_feedback_down"
CONFIRM_LINK_ACTION = "oi_confirm_link"

_SECTION_TEXT_MAX = SectionBlock.text_max_length
_HEADER_TEXT_MAX = HeaderBlock.text_max_length
_BUTTON_TEXT_MAX = 75
_FIELD_TEXT_MAX = 2_000
_CONTEXT_TEXT_MAX = 2_000
_CONTEXT_ELEMENTS_MAX = 10
_MESSAGE_TEXT_MAX = 40_000
# A message holds 50 blocks; the header, the footer and the feedback buttons take three.
_BODY_BLOCKS_MAX = 50 - 3
# Slack also refuses a message whose blocks hold about 12,000 characters in all
# (`msg_blocks_too_long`, undocumented), so a message carries well under that.
_BODY_TEXT_MAX = 8_000
# Where text is best split: between paragraphs, then lines, then words.
_BOUNDARIES = ("\n\n", "\n", " ")
_QUOTE = "> "
_NONE = "_none_"
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


@dataclass(frozen=True)
class SlackMessage:
    """One chat.postMessage: Block Kit blocks and the plain `text` notifications show."""

    text: str
    blocks: list[dict[str, Any]]


def escape(text: str) -> str:
    """Make model text inert in Slack: no formatting as links or mentions, no pings.

    `&`, `<` and `>` are Slack's control characters (`<!channel>`, `<@U123>`); a word joiner
    after `@` keeps a plain `@channel`, `@here` or `@everyone` from notifying the channel.
    https://docs.slack.dev/messaging/formatting-message-text#escaping
    """
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u2060", escaped)


@dataclass(frozen=True)
class _AllowedLinks:
    """Where links in an answer may point: the sources read for it (any anchor on their page),
    and the persona card's `[links] allowed` prefixes (each names a whole host, see the card)."""

    read: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, persona: Persona, reply: Reply) -> _AllowedLinks:
        read = frozenset(_page(citation.url) for citation in reply.citations)
        return cls(read=read, prefixes=tuple(persona.links.allowed))

    def allow(self, url: str) -> bool:
        return _page(url) in self.read or url.startswith(self.prefixes)


def _page(url: str) -> str:
    return url.split("#", 1)[0]


def _inert(text: str, links: _AllowedLinks, *, one_line: bool = False) -> str:
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
      a line still formats as the model meant it; `_split` applies the same rule where it cuts
      a line in two.
    """
    text = _INVISIBLE.sub("", text)
    if one_line:
        text = " ".join(text.split())
    shown = "".join(
        f"<{_link_target(piece)}>" if is_url and links.allow(piece) else escape(piece)
        for piece, is_url in _url_pieces(text)
    )
    return _defuse_line_starts(shown)


def _notification(text: str, links: _AllowedLinks) -> str:
    """Model text for a message's `text`, which notifications, e-mails and screen readers show
    and which cannot be `verbatim`: a URL not allowed is defanged (`hxxps://evil[.]example/x`)."""
    text = " ".join(_INVISIBLE.sub("", text).split())
    return escape(
        "".join(
            _defanged(piece) if is_url and not links.allow(piece) else piece
            for piece, is_url in _url_pieces(text)
        )
    )


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


def _defuse_start(mrkdwn: str) -> str:
    """The first line's start only: the rest of the lines may be ours."""
    start = _LEADING_MARKUP.match(mrkdwn)
    return _look_alike(start) + mrkdwn[start.end() :] if start else mrkdwn


def _look_alike(line: re.Match[str]) -> str:
    return line[1] + _MARK.sub(lambda mark: _LOOK_ALIKES[mark[0]], line[2])


def render_reply(*, persona: Persona, reply: Reply, request_id: str) -> list[SlackMessage]:
    """The answer as one message, or several in a row when it is too big for one."""
    links = _AllowedLinks.of(persona, reply)
    pages = _paginate([*_body(reply.answer, links), *_sources(reply.citations)])
    messages = []
    for number, page in enumerate(pages, start=1):
        if number == 1:
            header = _header(persona.title)
            text = f"{escape(persona.title)}: {_notification(reply.answer.summary, links)}"
        else:
            header = _header(persona.title, f" (continued, {number}/{len(pages)})")
            text = _plain(header.text)
        blocks: list[Block] = [header, *page]
        if number == len(pages):
            blocks += [_footer(reply), _feedback(request_id)]
        messages.append(_message(text, blocks))
    return messages


def render_progress(*, persona: Persona) -> SlackMessage:
    """The placeholder posted at once, replaced by the answer (chat.update) when it is ready."""
    text = f":hourglass_flowing_sand: {escape(persona.title)} is thinking…"
    return _message(text, [_section(text)])


def render_question(*, user_id: str, persona: Persona, question: str) -> SlackMessage:
    """The channel message a slash command posts, so that the answer can thread under it.

    A slash command leaves no message of its own to reply to. The question is the user's own
    text echoed back (the persona reads all of it), so a long one is shown shortened, with "…".
    """
    asked = f"<@{user_id}> asked *{escape(persona.title)}*:"
    quoted = _truncate(escape(question), _SECTION_TEXT_MAX)
    return _message(f"{asked} {quoted}", _quoted(asked, quoted, verbatim=False))


def render_failure(*, reason: str, request_id: str | None) -> SlackMessage:
    """A failure is an answer too: a short honest message, and a retry button when one can help."""
    text = f":warning: {escape(reason)}"
    blocks: list[Block] = [_section(_truncate(text, _SECTION_TEXT_MAX))]
    if request_id is not None:
        retry = ButtonElement(
            text="Try again", action_id=RETRY_ACTION, value=request_id, style="primary"
        )
        blocks.append(ActionsBlock(elements=[retry]))
    return _message(text, blocks)


def render_usage(problem: str | None = None) -> str:
    """The command grammar as Slack users type it, after the reason a command was not understood."""
    usage = re.sub(r"\boi ", "/oi ", SLACK_USAGE)
    lead = f"{escape(problem)}\n" if problem else ""
    return f"{lead}```{escape(usage)}```"


def render_personas(personas: list[Persona]) -> str:
    return "\n".join(f"*{persona.name}*: {escape(persona.description)}" for persona in personas)


def render_links(links: list[LinkRecord]) -> str:
    if not links:
        return "Nothing is linked in this channel. Try `/oi link github owner/repo`."
    lines = [f"• {link.kind} {escape(link.target)}" for link in links]
    return "\n".join(["Linked in this channel (read for its questions):", *lines])


def render_link_confirmation(
    *, link: LinkRecord, team_id: str, user_id: str, conversation: Conversation
) -> SlackMessage:
    """Asks before private content becomes readable by everyone who reads a public channel.

    The button's value names the link, the asker (only they may confirm) and the conversation.
    """
    target, where = escape(link.target), escape(conversation.label)
    if link.kind == "github":
        what = f"*{target}* is a private repository"
        visible = "its code, pull requests, issues and commits"
    else:
        what = f"Linear team *{target}* is private to your workspace's Linear"
        visible = "its tickets and their comments"
    text = (
        f"{what}, and {where} is a public channel: once linked, anyone in the workspace who "
        f"reads {where} can see what I read from it ({visible}) in my answers there. "
        "Link it anyway?"
    )
    asked = {"kind": link.kind, "target": link.target, "team": team_id, "user": user_id}
    value = json.dumps({**asked, "channel": conversation.channel_id})
    confirm = ButtonElement(
        text=_truncate(f"Link {link.target} to {conversation.label}", _BUTTON_TEXT_MAX),
        action_id=CONFIRM_LINK_ACTION,
        value=value,
        style="danger",
    )
    return _message(text, [_section(text), ActionsBlock(elements=[confirm])])


def render_unknown_persona(error: UnknownPersonaError) -> str:
    """A typo costs no LLM call: the closest names, and where to see them all."""
    return f"{escape(str(error))} `/oi personas` lists them all."


def _body(answer: Answer, links: _AllowedLinks) -> list[SectionBlock]:
    return [
        *_sections(_labelled("Summary", [_inert(answer.summary, links)])),
        *_quoted("*Recommendation*", _inert(answer.recommendation, links)),
        *_sections(_bulleted("Rationale", answer.rationale, links)),
        *_sections(_bulleted("Risks", answer.risks, links)),
        *_next_actions(answer.next_actions, links),
        *_sections(_bulleted("Missing context", answer.missing_context, links)),
    ]


def _sources(citations: list[Citation]) -> list[Block]:
    """What the persona read, as links under the answer (ten to a context block, Slack's most)."""
    if not citations:
        return []
    links = [_link(citation) for citation in citations]
    elements = [_mrkdwn("*Sources*"), *links]
    return [
        ContextBlock(elements=elements[start : start + _CONTEXT_ELEMENTS_MAX])
        for start in range(0, len(elements), _CONTEXT_ELEMENTS_MAX)
    ]


def _link(citation: Citation) -> MarkdownTextObject:
    """`<url|title>`; the URL cannot close the link early, the title cannot ping."""
    url = _link_target(citation.url)
    title = _truncate(escape(citation.title), _CONTEXT_TEXT_MAX - len(url) - 3)
    return _mrkdwn(f"<{url}|{title}>")


def _link_target(url: str) -> str:
    """A URL as the target of a `<…>` link, which it can neither close nor label."""
    return url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")


def _labelled(label: str, lines: list[str]) -> str:
    return "\n".join([f"*{label}*", *(lines or [_NONE])])


def _bulleted(label: str, items: list[str], links: _AllowedLinks) -> str:
    return _labelled(label, [f"• {_inert(item, links, one_line=True)}" for item in items])


def _quoted(label: str, escaped: str, *, verbatim: bool = True) -> list[SectionBlock]:
    """A label over a block quote; a piece that starts mid-line is quoted again to stay quoted.

    Only the echo of a person's own question is not `verbatim`, so the links they typed work.
    """
    quoted = "\n".join(_QUOTE + line for line in escaped.splitlines() or [""])
    pieces = _split(f"{label}\n{quoted}", _SECTION_TEXT_MAX - len(_QUOTE))
    return [
        _section(
            piece if index == 0 or piece.startswith(_QUOTE.strip()) else _QUOTE + piece,
            verbatim=verbatim,
        )
        for index, piece in enumerate(pieces)
    ]


def _next_actions(actions: list[NextAction], links: _AllowedLinks) -> list[SectionBlock]:
    if not actions:
        return _sections(_labelled("Next actions", []))
    blocks = _sections("*Next actions*")
    for number, action in enumerate(actions, start=1):
        blocks += _next_action(number, action, links)
    return blocks


def _next_action(number: int, action: NextAction, links: _AllowedLinks) -> list[SectionBlock]:
    """Owner and outcome side by side as fields, or as plain text when a field is too long."""
    title = f"*{number}. {_inert(action.title, links, one_line=True)}*"
    owner, outcome = (_inert(text, links, one_line=True) for text in (action.owner, action.outcome))
    fields = [f"*Owner*\n{owner}", f"*Outcome*\n{outcome}"]
    if len(title) > _SECTION_TEXT_MAX or any(len(field) > _FIELD_TEXT_MAX for field in fields):
        return _sections("\n".join([title, *fields]))
    return [
        SectionBlock(
            text=_mrkdwn(title),
            fields=[_mrkdwn(field) for field in fields],
        )
    ]


def _header(title: str, suffix: str = "") -> HeaderBlock:
    """Only the persona's title is shortened, so that a "continued" suffix always shows."""
    return HeaderBlock(text=_truncate(title, _HEADER_TEXT_MAX - len(suffix)) + suffix)


def _footer(reply: Reply) -> ContextBlock:
    usage = reply.usage
    text = (
        f"{escape(reply.model)} · {usage.total_tokens} tokens "
        f"({usage.prompt_tokens} in, {usage.completion_tokens} out) · {reply.latency_seconds:.1f}s"
    )
    return ContextBlock(elements=[_mrkdwn(_truncate(text, _CONTEXT_TEXT_MAX))])


def _feedback(request_id: str) -> ActionsBlock:
    """Thumbs up and down; their value names the request, so the vote is stored against it."""
    return ActionsBlock(
        elements=[
            ButtonElement(
                text="👍",
                action_id=FEEDBACK_UP_ACTION,
                value=request_id,
                accessibility_label="Helpful",
            ),
            ButtonElement(
                text="👎",
                action_id=FEEDBACK_DOWN_ACTION,
                value=request_id,
                accessibility_label="Not helpful",
            ),
        ]
    )


def _paginate(blocks: list[Block]) -> list[list[Block]]:
    """Fill each message up to the block and text budgets, then start the next one."""
    pages: list[list[Block]] = [[]]
    size = 0
    for block in blocks:
        length = _text_length(block)
        if pages[-1] and (len(pages[-1]) == _BODY_BLOCKS_MAX or size + length > _BODY_TEXT_MAX):
            pages.append([])
            size = 0
        pages[-1].append(block)
        size += length
    return pages


def _text_length(block: Block) -> int:
    if isinstance(block, ContextBlock):
        return sum(len(_plain(element)) for element in block.elements)
    assert isinstance(block, SectionBlock)
    return len(_plain(block.text)) + sum(len(_plain(field)) for field in block.fields or [])


def _plain(part: object) -> str:
    """A text object's text; the SDK types a block's parts loosely (text or any element, or
    none), and the blocks built here only ever hold text."""
    return part.text if isinstance(part, TextObject) else ""


def _sections(text: str) -> list[SectionBlock]:
    return [_section(piece) for piece in _split(text, _SECTION_TEXT_MAX)]


def _section(text: str, *, verbatim: bool = True) -> SectionBlock:
    return SectionBlock(text=_mrkdwn(text, verbatim=verbatim))


def _mrkdwn(text: str, *, verbatim: bool = True) -> MarkdownTextObject:
    """mrkdwn that Slack does not link up by itself: `verbatim` leaves bare URLs, domains and
    channel names as text, so the only links are those written as `<…>` here.
    https://docs.slack.dev/reference/block-kit/composition-objects/text-object"""
    return MarkdownTextObject(text=text, verbatim=verbatim)


def _split(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters; the whitespace at a split is dropped, nothing else.

    A piece that starts mid-line gets that line start's markup defused (see `_inert`), since it
    now opens a block of its own.
    """
    pieces = []
    while len(text) > limit:
        cut = _cut_point(text, limit)
        pieces.append(text[:cut])
        mid_line = text[cut] != "\n"
        text = text[cut:].lstrip()
        if mid_line:
            text = _defuse_start(text)
    pieces.append(text)
    return [piece for piece in pieces if piece.strip()]


def _cut_point(text: str, limit: int) -> int:
    """Where to split: the widest boundary in the second half of `limit`, or else a hard cut.

    Looking only in the second half leaves no piece nearly empty (a label cut from its text);
    a hard cut moves back rather than split an entity such as `&amp;`.
    """
    window = text[: limit + 1]
    for boundary in _BOUNDARIES:
        cut = window.rfind(boundary, limit // 2)
        if cut > 0:
            return cut
    entity = text.rfind("&", limit - len("&amp;") + 1, limit)
    return entity if entity > 0 and ";" not in text[entity:limit] else limit


def _truncate(text: str, limit: int) -> str:
    """For titles, reasons, echoes and notifications; an answer's content is split, never cut."""
    if len(text) <= limit:
        return text
    return text[: _cut_point(text, limit - 1)].rstrip() + "…"


def _message(text: str, blocks: Sequence[Block]) -> SlackMessage:
    """`to_dict()` runs slack_sdk's validators, so a broken limit fails here, not at Slack."""
    return SlackMessage(
        text=_truncate(text, _MESSAGE_TEXT_MAX), blocks=[block.to_dict() for block in blocks]
    )
