"""An answer rendered as standard Markdown: the draft streamed while it is written, and the file
that holds an answer too long for three messages.

Both are Markdown, not Block Kit: chat.appendStream takes `markdown_text`, and a file is read
anywhere. They share one rendering, so the file reads as the finished draft did. Model text goes
through `markdown_inert()`. https://docs.slack.dev/reference/methods/chat.appendStream
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.core.answer import Citation, Reply
from bot.core.persona import Persona
from bot.core.progress import Draft
from bot.slack.inert import AllowedLinks, defanged_line, link_target, markdown_inert, markdown_text

# What an empty part shows, alike in Markdown and in Slack's mrkdwn.
EMPTY_PART = "_none_"
# The Answer's parts as the draft names them (its wire names), with their labels.
_TEXT_PARTS = {"summary": "Summary", "recommendation": "Recommendation"}
_LIST_PARTS = {"rationale": "Rationale", "risks": "Risks", "missingContext": "Missing context"}
_ACTIONS_PART = "nextActions"
# The last word of a string still being written, which may be cut short.
_LAST_WORD = re.compile(r"\S*\Z")
_WORD_END = re.compile(r"\S(?=\s)")
_DRAFT_CUT = "…\n\n_The whole answer shows when it is finished._"


def render_draft(*, persona: Persona, draft: Draft, links_from: list[Citation], limit: int) -> str:
    """The answer so far as Markdown, for chat.appendStream's `markdown_text`: its parts in the
    order written, each under a bold label, lists as bullets, next actions numbered.

    A stream only appends, so a longer draft must render to a string that starts with the
    shorter one's. Of the string still being written (the draft's last), only whole words show,
    so nothing shown changes as it grows (a half-written URL is not yet known to be allowed);
    a next action shows once its title is whole, since the title's bold closes after it. Past
    `limit` characters the rendering is cut after a word, with a note, and stays so.
    """
    links = AllowedLinks.of(persona, links_from)
    return _capped(_markdown(draft, links, finished=False), limit)


def is_cut(draft: str) -> bool:
    """Whether a rendered draft reached its `limit`: it will not change again."""
    return draft.endswith(_DRAFT_CUT)


def render_answer_markdown(*, reply: Reply, links: AllowedLinks, topic: str) -> str:
    """The whole answer as Markdown under `topic`, as inert as a draft, its sources last: the
    content of the file that holds what three messages cannot."""
    parts = [
        f"# {markdown_text(topic)}",
        _markdown(reply.answer.model_dump(by_alias=True), links, finished=True),
    ]
    if reply.citations:
        sources = [
            f"- [{markdown_text(defanged_line(citation.title, links)) or citation.url}]"
            f"(<{link_target(citation.url)}>)"
            for citation in reply.citations
        ]
        parts.append("\n".join(["**Sources**", *sources]))
    return "\n\n".join(parts) + "\n"


def _markdown(answer: Mapping[str, Any], links: AllowedLinks, *, finished: bool) -> str:
    """The answer's parts as Markdown, in the order written; unless `finished`, the last one is
    still being written (see `render_draft`)."""
    writing = list(answer)[-1] if answer and not finished else None
    parts = [
        _markdown_part(key, value, links, writing=key == writing) for key, value in answer.items()
    ]
    return "\n\n".join(part for part in parts if part)


def _markdown_part(key: str, value: Any, links: AllowedLinks, *, writing: bool) -> str:
    if key in _TEXT_PARTS and isinstance(value, str):
        text = markdown_inert(_written(value, writing=writing), links).strip()
        return "\n\n".join([f"**{_TEXT_PARTS[key]}**", *([text] if text else [])])
    if key in _LIST_PARTS and isinstance(value, list):
        last = len(value) - 1
        items = [
            markdown_inert(_written(item, writing=writing and index == last), links, one_line=True)
            for index, item in enumerate(value)
            if isinstance(item, str)
        ]
        lines = [f"- {item}" for item in items if item]
        return _markdown_labelled(_LIST_PARTS[key], lines, writing=writing)
    if key == _ACTIONS_PART and isinstance(value, list):
        actions = [
            _markdown_action(number, action, links, writing=writing and number == len(value))
            for number, action in enumerate(value, start=1)
            if isinstance(action, Mapping)
        ]
        lines = [action for action in actions if action]
        return _markdown_labelled("Next actions", lines, writing=writing)
    return ""


def _markdown_labelled(label: str, lines: list[str], *, writing: bool) -> str:
    """A list under its label; an empty one says so once it is known to be finished."""
    return "\n".join([f"**{label}**", *(lines or ([] if writing else [EMPTY_PART]))])


def _markdown_action(
    number: int, action: Mapping[str, Any], links: AllowedLinks, *, writing: bool
) -> str:
    """`1. **title** — owner: …; outcome: …`, once the title is whole (empty until then)."""
    keys = list(action)
    being_written = keys[-1] if writing and keys else None
    title = action.get("title")
    if not isinstance(title, str) or being_written == "title":
        return ""
    shown = markdown_inert(title, links, one_line=True)
    line = f"{number}. **{shown}**" if shown else f"{number}."
    for key, label in (("owner", " — owner:"), ("outcome", "; outcome:")):
        value = action.get(key)
        if isinstance(value, str):
            text = markdown_inert(
                _written(value, writing=key == being_written), links, one_line=True
            )
            line += f"{label} {text}" if text else label
    return line


def _written(text: str, *, writing: bool) -> str:
    """All of a finished string; of one still being written, only its whole words."""
    return _LAST_WORD.sub("", text).rstrip() if writing else text


def _capped(markdown: str, limit: int) -> str:
    """`markdown` if it fits in `limit` characters, else cut after a word, with a note.

    The cut depends only on the first `limit` characters, so a growing draft, once cut, stays
    the same string; and it falls after the last word that fits, never before the end of a
    shorter rendering that fitted (which ends a word: what follows it in a longer one is
    whitespace), so what was shown stays a prefix.
    """
    room = limit - len(_DRAFT_CUT)
    if len(markdown) <= room:
        return markdown
    ends = [word.end() for word in _WORD_END.finditer(markdown, 0, room + 1)]
    return markdown[: ends[-1] if ends else room] + _DRAFT_CUT
