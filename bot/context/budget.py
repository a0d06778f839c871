"""Fit fetched context into the model's token budget, most relevant first, saying what was cut.

The model is told what it did not get (a last "Left out for space" item), so it can name it in
`missingContext` instead of answering as if it had read everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.context.models import Fetched
from bot.core.conversation import ContextItem, estimate_tokens

# What the prompt wraps each item in besides its source and title: the BEGIN/END marker lines.
_FRAME_TOKENS = 20
# Less room than this for a truncated item is not worth a cut: the item is left out instead.
_MIN_USEFUL_TOKENS = 200


@dataclass(frozen=True)
class Budgeted:
    """What goes to the model, in priority order, and a line for each item cut or left out."""

    items: list[ContextItem]
    left_out: list[str]


def fit_to_budget(fetched: Sequence[Fetched], *, max_tokens: int) -> Budgeted:
    """The items that fit `max_tokens` (estimated), lower priority number first, input order kept.

    An item that does not fit whole is cut on a line boundary with a marker, or left out when too
    little room remains. When anything was cut or left out, the last item lists it; its tokens
    count within `max_tokens` too. With a budget too small even for that list, no item is sent and
    `left_out` still names every one.
    """
    ordered = [f.item for f in sorted(fetched, key=lambda f: f.priority)]
    reserve = 0
    while True:
        items, left_out = _fill(ordered, budget=max_tokens - reserve)
        if not left_out:
            return Budgeted(items, [])
        note = _left_out_item(left_out)
        cost = _tokens(note)
        if cost <= reserve:
            return Budgeted([*items, note], left_out)
        if cost > max_tokens:
            return Budgeted([], [_left_out_line(item) for item in ordered])
        reserve = cost  # grows each time round, so the loop ends


def _fill(ordered: Sequence[ContextItem], *, budget: int) -> tuple[list[ContextItem], list[str]]:
    """Whole items while they fit, then one cut item if the rest of the room is worth it."""
    items: list[ContextItem] = []
    left_out: list[str] = []
    for item in ordered:
        cost = _tokens(item)
        if cost <= budget:
            items.append(item)
            budget -= cost
            continue
        room = budget - _header_tokens(item)
        if room < _MIN_USEFUL_TOKENS:
            left_out.append(_left_out_line(item))
            continue
        cut, missing = _truncate(item, room=room)
        items.append(cut)
        budget -= _tokens(cut)
        left_out.append(
            f"{item.title}: truncated, {missing:,} of {len(item.text):,} characters left out"
        )
    return items, left_out


def _truncate(item: ContextItem, *, room: int) -> tuple[ContextItem, int]:
    """Cut the text to `room` tokens, marker included, at a line end when one is near.

    Returns the cut item and how many characters it lost.
    """
    # The marker for the largest count it could show is at least as long as the one shown.
    keep = (room - estimate_tokens(_marker(len(item.text))) - 1) * 4
    end = item.text.rfind("\n", 0, keep + 1)
    head = item.text[: end if end > keep // 2 else keep]
    missing = len(item.text) - len(head)
    return item.model_copy(update={"text": f"{head}\n{_marker(missing)}"}), missing


def _marker(missing: int) -> str:
    return f"[… truncated: {missing:,} more characters not shown]"


def _tokens(item: ContextItem) -> int:
    return estimate_tokens(item.text) + _header_tokens(item)


def _header_tokens(item: ContextItem) -> int:
    """An item's cost besides its text: its source and title, and the frame the prompt adds."""
    return estimate_tokens(f"source: {item.source}\ntitle: {item.title}") + _FRAME_TOKENS


def _left_out_line(item: ContextItem) -> str:
    return f"{item.title}: left out for space"


def _left_out_item(left_out: Sequence[str]) -> ContextItem:
    lines = "\n".join(f"- {line}" for line in left_out)
    return ContextItem(
        source="oi:budget",
        title="Left out for space",
        text=f"Not all the context fit; these were cut or left out:\n{lines}",
    )
