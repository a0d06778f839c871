"""The token budget: most relevant first, cuts marked, nothing left out without saying so."""

from __future__ import annotations

import re

import pytest

from bot.context.budget import fit_to_budget
from bot.context.models import (
    PRIORITY_BACKGROUND,
    PRIORITY_DETAIL,
    PRIORITY_PRIMARY,
    PRIORITY_README,
    Fetched,
)
from bot.core.conversation import ContextItem, estimate_tokens


def _fetched(title: str, text: str, priority: int) -> Fetched:
    item = ContextItem(source=f"https://github.com/acme/payments#{title}", title=title, text=text)
    return Fetched(item=item, priority=priority, revision="r1")


def _lines(count: int, width: int = 79) -> str:
    return "\n".join(f"{n:04d} " + "x" * (width - 5) for n in range(count))


def _total_tokens(items: list[ContextItem]) -> int:
    """A lower bound of what the budget counts: text, source and title."""
    return sum(
        estimate_tokens(i.text) + estimate_tokens(i.source) + estimate_tokens(i.title)
        for i in items
    )


README = _fetched("acme/payments README", _lines(10), PRIORITY_README)
DIFF = _fetched("acme/payments#42 diff", _lines(10), PRIORITY_PRIMARY)
TREE = _fetched("acme/payments tree", _lines(10), PRIORITY_BACKGROUND)
FILE = _fetched("acme/payments retry.py", _lines(10), PRIORITY_DETAIL)
ISSUE = _fetched("acme/payments#7", _lines(10), PRIORITY_DETAIL)


def test_everything_that_fits_goes_in_priority_order_and_input_order_within_one():
    budgeted = fit_to_budget([README, TREE, FILE, DIFF, ISSUE], max_tokens=100_000)
    assert budgeted.items == [DIFF.item, FILE.item, ISSUE.item, TREE.item, README.item]
    assert budgeted.left_out == []


def test_nothing_fetched():
    assert fit_to_budget([], max_tokens=1000).items == []


def test_an_item_that_does_not_fit_whole_is_cut_on_a_line_with_a_marker():
    big = _fetched("acme/payments README", _lines(1000), PRIORITY_README)
    budgeted = fit_to_budget([DIFF, big], max_tokens=2000)
    diff, cut, note = budgeted.items
    assert diff == DIFF.item
    head, marker = cut.text.rsplit("\n", 1)
    assert big.item.text.startswith(head + "\n")
    missing = len(big.item.text) - len(head)
    assert marker == f"[… truncated: {missing:,} more characters not shown]"
    assert budgeted.left_out == [
        f"acme/payments README: truncated, {missing:,} of 79,999 characters left out"
    ]
    assert (note.source, note.title) == ("oi:budget", "Left out for space")
    assert budgeted.left_out[0] in note.text


def test_one_long_line_is_cut_mid_line():
    big = _fetched("minified.js", "x" * 50_000, PRIORITY_DETAIL)
    [cut, _] = fit_to_budget([big], max_tokens=1000).items
    assert re.fullmatch(r"x+\n\[… truncated: [\d,]+ more characters not shown\]", cut.text)


def test_too_little_room_left_means_left_out_and_smaller_later_items_still_fit():
    huge = _fetched("acme/payments tree", _lines(2000), PRIORITY_BACKGROUND)
    small = _fetched("acme/payments README", "# payments\n", PRIORITY_README)
    # Room for DIFF and the note, and under 200 tokens more: too little for a useful cut.
    budgeted = fit_to_budget([DIFF, huge, small], max_tokens=500)
    assert [i.title for i in budgeted.items] == [
        "acme/payments#42 diff",
        "acme/payments README",
        "Left out for space",
    ]
    assert budgeted.left_out == ["acme/payments tree: left out for space"]
    assert "acme/payments tree: left out for space" in budgeted.items[-1].text


def test_a_budget_too_small_even_for_the_note_sends_nothing_but_says_everything():
    budgeted = fit_to_budget([DIFF, README], max_tokens=10)
    assert budgeted.items == []
    assert budgeted.left_out == [
        "acme/payments#42 diff: left out for space",
        "acme/payments README: left out for space",
    ]


@pytest.mark.parametrize("max_tokens", [0, *range(1, 3000, 7), 5_000, 20_000])
def test_the_items_never_exceed_the_budget_and_nothing_is_lost_silently(max_tokens):
    fetched = [
        _fetched("acme/payments README", _lines(300, width=60), PRIORITY_README),
        _fetched("acme/payments#42 diff", _lines(120), PRIORITY_PRIMARY),
        _fetched("acme/payments tree", _lines(40, width=30), PRIORITY_BACKGROUND),
        _fetched("acme/payments retry.py#L1-L40", _lines(40), PRIORITY_DETAIL),
        _fetched("PAY-123", "Retries must be idempotent.\n" * 30, PRIORITY_PRIMARY),
    ]
    budgeted = fit_to_budget(fetched, max_tokens=max_tokens)
    assert _total_tokens(budgeted.items) <= max_tokens
    sent = {i.title for i in budgeted.items}
    for one in fetched:
        whole = one.item in budgeted.items
        said = [line for line in budgeted.left_out if line.startswith(f"{one.item.title}: ")]
        assert whole != bool(said), one.item.title
        if said and "truncated" in said[0]:
            assert one.item.title in sent
    if budgeted.left_out:
        assert budgeted.items == [] or budgeted.items[-1].title == "Left out for space"
