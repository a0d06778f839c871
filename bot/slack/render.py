"""A Reply rendered for Slack as Block Kit messages, built with `slack_sdk.models.blocks`.

Slack rejects a message that breaks one of its limits, so the renderer never lets one happen:
long text is split over several section blocks, and blocks over up to three messages in the
thread, rather than cut; an answer longer still goes whole into a Markdown file (its content
rendered by `bot.slack.markdown`). Model text goes through `bot.slack.inert`: `inert()` (mrkdwn),
`unformatted()` (text Slack shows as it is) or `notification()` (a message's `text`).
https://docs.slack.dev/reference/block-kit/blocks
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
    ContextActionsBlock,
    ContextBlock,
    DividerBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
    HeaderBlock,
    MarkdownTextObject,
    RawTextObject,
    RichTextBlock,
    RichTextElementParts,
    RichTextListElement,
    RichTextSectionElement,
    SectionBlock,
    TableBlock,
    TableBlockColumnSettings,
)

from bot.context.references import unwrap_slack_links
from bot.core.answer import Answer, Citation, NextAction, Reply
from bot.core.commands import SLACK_USAGE
from bot.core.persona import Persona, UnknownPersonaError
from bot.core.progress import Step
from bot.slack.directory import Conversation
from bot.slack.inert import (
    AllowedLinks,
    defuse_start,
    escape,
    inert,
    link_target,
    notification,
    on_one_line,
    unformatted,
)
from bot.slack.markdown import EMPTY_PART, render_answer_markdown
from bot.store import LinkRecord, Vote

RETRY_ACTION = "oi_retry"
# The native feedback buttons under an answer; each button's value names its vote and the request.
FEEDBACK_ACTION = "oi_feedback"
# The thumbs buttons of answers posted before the native ones, still clickable in Slack.
FEEDBACK_UP_ACTION = "oi_feedback_up"
FEEDBACK_DOWN_ACTION = "oi_feedback_down"
CONFIRM_LINK_ACTION = "oi_confirm_link"

_SECTION_TEXT_MAX = SectionBlock.text_max_length
_HEADER_TEXT_MAX = HeaderBlock.text_max_length
_BUTTON_TEXT_MAX = 75
_FIELD_TEXT_MAX = 2_000
_CONTEXT_TEXT_MAX = 2_000
_MESSAGE_TEXT_MAX = 40_000
# A message holds 50 blocks; the header, the footer and the feedback buttons take three.
_BODY_BLOCKS_MAX = 50 - 3
# More than this many messages and the answer goes whole into a file in the thread as well.
_MESSAGES_MAX = 3
# A table holds 100 rows (the column names take one); Slack takes one table a message, with
# about 10,000 characters in all its cells (more than a message carries here). A cell's own limit
# is not documented, so no cell is longer than a section's field.
# https://docs.slack.dev/reference/block-kit/blocks/table-block
_TABLE_ROWS_MAX = 100
_CELL_TEXT_MAX = _FIELD_TEXT_MAX
_SOURCES_PER_BLOCK = 20
_SOURCE_TITLE_MAX = 200
# Slack documents no limit for an assistant thread's status; it is one short line.
_STATUS_MAX = 100
# Slack also refuses a message whose blocks hold about 12,000 characters in all
# (`msg_blocks_too_long`, undocumented), so a message carries well under that.
_BODY_TEXT_MAX = 8_000
# Where text is best split: between paragraphs, then lines, then words.
_BOUNDARIES = ("\n\n", "\n", " ")
_QUOTE = "> "
_VOTES: dict[str, Vote] = {"up": "up", "down": "down"}


@dataclass(frozen=True)
class SlackMessage:
    """One chat.postMessage: Block Kit blocks and the plain `text` notifications show."""

    text: str
    blocks: list[dict[str, Any]]


@dataclass(frozen=True)
class MarkdownFile:
    """A file for the thread (files_upload_v2): the whole answer, when three messages cannot
    hold it."""

    filename: str
    title: str
    content: str


@dataclass(frozen=True)
class RenderedReply:
    """An answer's messages (at most three) and, when they cannot hold it all, the file that
    does."""

    messages: list[SlackMessage]
    attachment: MarkdownFile | None = None


def render_reply(
    *, persona: Persona, reply: Reply, request_id: str, question: str, show_usage: bool = False
) -> RenderedReply:
    """The answer as one message, or several in a row when it is too big for one; past three,
    the third says so and a Markdown file holds the whole answer.

    Its parts (sources last) stand between dividers, under a header naming the persona and the
    question; the last message ends with the model, the time taken (and the tokens, with
    `show_usage`) and Slack's feedback buttons.
    """
    links = AllowedLinks.of(persona, reply.citations)
    parts = [*_body(reply.answer, links), _sources(reply.citations, links)]
    pages = _paginate(_divided(parts))
    attachment = None
    if len(pages) > _MESSAGES_MAX:
        attachment = _answer_file(persona, reply, links, request_id=request_id, question=question)
        last = _ending_with(pages[_MESSAGES_MAX - 1], _overflow_note(attachment))
        pages = [*pages[: _MESSAGES_MAX - 1], last]
    topic = _topic(persona, question)
    messages = []
    for number, page in enumerate(pages, start=1):
        # Only the topic is shortened, so that a "continued" suffix always shows.
        suffix = f" (continued, {number}/{len(pages)})" if number > 1 else ""
        header = _truncate(topic, _HEADER_TEXT_MAX - len(suffix)) + suffix
        if number == 1:
            text = f"{escape(persona.title)}: {notification(reply.answer.summary, links)}"
        else:
            text = escape(header)
        blocks: list[Block] = [HeaderBlock(text=header), *page]
        if number == len(pages):
            blocks += [_footer(reply, show_usage=show_usage), _feedback(request_id)]
        messages.append(_message(text, blocks))
    return RenderedReply(messages=messages, attachment=attachment)


def render_progress(*, persona: Persona, step: Step | None = None) -> SlackMessage:
    """The placeholder posted at once, replaced by the answer (chat.update) when it is ready;
    where the reply cannot stream, it shows the step under way ("Reading acme/payments#42…")."""
    who = f":hourglass_flowing_sand: {escape(persona.title)}"
    if step is None:
        text = f"{who} is thinking…"
        return _message(text, [_section(text)])
    title = _truncate(escape(on_one_line(step.title)), _SOURCE_TITLE_MAX)
    after = "…" if step.state in ("pending", "in_progress") else _step_detail(step)
    shown = f"<{link_target(step.url)}|{title}>" if step.url else title
    return _message(f"{who}: {title}{after}", [_section(f"{who}: {shown}{after}")])


def render_step_status(step: Step) -> str:
    """An assistant thread's status for the step under way, which Slack shows after the app's
    name: "is reading acme/payments#42…"."""
    title = on_one_line(step.title)
    if title[1:2].islower():
        title = title[0].lower() + title[1:]
    return _truncate(f"is {escape(title)}…", _STATUS_MAX)


def feedback_vote(value: str) -> tuple[Vote, str] | None:
    """The vote and the request a feedback button's value names; None for a value not ours."""
    name, _, request_id = value.partition(":")
    vote = _VOTES.get(name)
    return (vote, request_id) if vote and request_id else None


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


def _body(answer: Answer, links: AllowedLinks) -> list[list[Block]]:
    """The answer's parts, each a run of blocks."""
    return [
        [*_sections(_labelled("Summary", [inert(answer.summary, links)]))],
        [*_quoted("*Recommendation*", inert(answer.recommendation, links))],
        [*_sections(_bulleted("Rationale", answer.rationale, links))],
        [*_sections(_bulleted("Risks", answer.risks, links))],
        _next_actions(answer.next_actions, links),
        [*_sections(_bulleted("Missing context", answer.missing_context, links))],
    ]


def _divided(parts: list[list[Block]]) -> list[Block]:
    """The parts one after the other, a divider between each two."""
    blocks: list[Block] = []
    for part in parts:
        if blocks and part:
            blocks.append(DividerBlock())
        blocks += part
    return blocks


def _sources(citations: Sequence[Citation], links: AllowedLinks) -> list[Block]:
    """What the persona read, as a list of links under the answer: the URLs are the bot's own,
    the titles fetched text shown as it is (`unformatted`)."""
    items = [
        RichTextSectionElement(elements=[_source_link(citation, links)]) for citation in citations
    ]
    label = RichTextSectionElement(
        elements=[
            RichTextElementParts.Text(
                text="Sources", style=RichTextElementParts.TextStyle(bold=True)
            )
        ]
    )
    return [
        RichTextBlock(
            elements=[
                *([label] if start == 0 else []),
                RichTextListElement(
                    style="bullet", elements=items[start : start + _SOURCES_PER_BLOCK]
                ),
            ]
        )
        for start in range(0, len(items), _SOURCES_PER_BLOCK)
    ]


def _source_link(citation: Citation, links: AllowedLinks) -> RichTextElementParts.Link:
    title = _truncate(unformatted(citation.title, links), _SOURCE_TITLE_MAX)
    return RichTextElementParts.Link(url=citation.url, text=title or citation.url)


def _labelled(label: str, lines: list[str]) -> str:
    return "\n".join([f"*{label}*", *(lines or [EMPTY_PART])])


def _bulleted(label: str, items: list[str], links: AllowedLinks) -> str:
    return _labelled(label, [f"• {inert(item, links, one_line=True)}" for item in items])


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


def _next_actions(actions: list[NextAction], links: AllowedLinks) -> list[Block]:
    """A table of the actions where one fits, else each action as a section."""
    if not actions:
        return [*_sections(_labelled("Next actions", []))]
    blocks: list[Block] = [*_sections("*Next actions*")]
    table = _actions_table(actions, links)
    if table is not None:
        return [*blocks, table]
    for number, action in enumerate(actions, start=1):
        blocks += _next_action(number, action, links)
    return blocks


def _actions_table(actions: list[NextAction], links: AllowedLinks) -> TableBlock | None:
    """Title, owner and outcome in columns of `raw_text` cells (text Slack shows as it is, so
    no link in it), or None where a table would break a limit. The only table of the answer, so
    no message holds two; it never holds more text than a message carries, below the table's
    own limit."""
    rows = [
        ["Title", "Owner", "Outcome"],
        *(
            [unformatted(text, links) for text in (action.title, action.owner, action.outcome)]
            for action in actions
        ),
    ]
    cells = [cell for row in rows for cell in row]
    if (
        len(rows) > _TABLE_ROWS_MAX
        or max(map(len, cells)) > _CELL_TEXT_MAX
        or sum(map(len, cells)) > _BODY_TEXT_MAX
    ):
        return None
    return TableBlock(
        rows=[[RawTextObject(text=cell or "—") for cell in row] for row in rows],
        column_settings=[TableBlockColumnSettings(is_wrapped=True) for _ in range(3)],
    )


def _next_action(number: int, action: NextAction, links: AllowedLinks) -> list[SectionBlock]:
    """Owner and outcome side by side as fields, or as plain text when a field is too long."""
    title = f"*{number}. {inert(action.title, links, one_line=True)}*"
    owner, outcome = (inert(text, links, one_line=True) for text in (action.owner, action.outcome))
    fields = [f"*Owner*\n{owner}", f"*Outcome*\n{outcome}"]
    if len(title) > _SECTION_TEXT_MAX or any(len(field) > _FIELD_TEXT_MAX for field in fields):
        return _sections("\n".join([title, *fields]))
    return [
        SectionBlock(
            text=_mrkdwn(title),
            fields=[_mrkdwn(field) for field in fields],
        )
    ]


def _topic(persona: Persona, question: str) -> str:
    """What an answer is about, for its header and its file: the persona and the question, the
    asker's own words as plain text on one line."""
    asked = on_one_line(unwrap_slack_links(question))
    return f"{persona.title} · {asked}" if asked else persona.title


def _step_detail(step: Step) -> str:
    """How a finished step went (": not linked to this channel"), if it says."""
    detail = _truncate(escape(on_one_line(step.detail)), _SOURCE_TITLE_MAX)
    return f": {detail}" if detail else ""


def _footer(reply: Reply, *, show_usage: bool) -> ContextBlock:
    usage = reply.usage
    tokens = (
        [f"{usage.total_tokens} tokens ({usage.prompt_tokens} in, {usage.completion_tokens} out)"]
        if show_usage
        else []
    )
    text = " · ".join([escape(reply.model), *tokens, f"{reply.latency_seconds:.1f}s"])
    return ContextBlock(elements=[_mrkdwn(_truncate(text, _CONTEXT_TEXT_MAX))])


def _feedback(request_id: str) -> ContextActionsBlock:
    """Slack's own thumbs up and down; each one's value names its vote and the request, so the
    vote is stored against it (`feedback_vote`).
    https://docs.slack.dev/reference/block-kit/block-elements/feedback-buttons-element"""
    return ContextActionsBlock(
        elements=[
            FeedbackButtonsElement(
                action_id=FEEDBACK_ACTION,
                positive_button=FeedbackButtonObject(
                    text="👍", accessibility_label="Helpful", value=f"up:{request_id}"
                ),
                negative_button=FeedbackButtonObject(
                    text="👎", accessibility_label="Not helpful", value=f"down:{request_id}"
                ),
            )
        ]
    )


def _paginate(blocks: list[Block]) -> list[list[Block]]:
    """Fill each message up to the block and text budgets, then start the next one; a divider
    neither ends nor starts a message."""
    pages: list[list[Block]] = [[]]
    size = 0
    for block in blocks:
        length = _text_length(block)
        if pages[-1] and (len(pages[-1]) == _BODY_BLOCKS_MAX or size + length > _BODY_TEXT_MAX):
            if isinstance(pages[-1][-1], DividerBlock):
                pages[-1].pop()
            pages.append([])
            size = 0
        if pages[-1] or not isinstance(block, DividerBlock):
            pages[-1].append(block)
            size += length
    return pages


def _ending_with(page: list[Block], note: Block) -> list[Block]:
    """`page` with `note` last, the blocks it has no room for left out (the file holds them)."""
    kept = list(page)
    room = _BODY_TEXT_MAX - _text_length(note)
    while kept and (len(kept) >= _BODY_BLOCKS_MAX or sum(map(_text_length, kept)) > room):
        kept.pop()
    return [*kept, note]


def _overflow_note(file: MarkdownFile) -> SectionBlock:
    return _section(
        f":page_facing_up: The rest of this answer is in the file *{escape(file.filename)}* "
        "below, which holds all of it."
    )


def _answer_file(
    persona: Persona, reply: Reply, links: AllowedLinks, *, request_id: str, question: str
) -> MarkdownFile:
    """The whole answer as a Markdown file for the thread: what three messages cannot hold."""
    topic = _topic(persona, question)
    return MarkdownFile(
        filename=f"answer-{request_id}.md",
        title=_truncate(topic, _HEADER_TEXT_MAX),
        content=render_answer_markdown(reply=reply, links=links, topic=topic),
    )


def _text_length(block: Block) -> int:
    """The characters a block holds in its texts and links."""
    return _characters(block.to_dict())


def _characters(part: object) -> int:
    if isinstance(part, dict):
        return sum(
            len(value) if key in ("text", "url") and isinstance(value, str) else _characters(value)
            for key, value in part.items()
        )
    if isinstance(part, list):
        return sum(_characters(item) for item in part)
    return 0


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

    A piece that starts mid-line gets that line start's markup defused (see `inert`), since it
    now opens a block of its own.
    """
    pieces = []
    while len(text) > limit:
        cut = _cut_point(text, limit)
        pieces.append(text[:cut])
        mid_line = text[cut] != "\n"
        text = text[cut:].lstrip()
        if mid_line:
            text = defuse_start(text)
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
