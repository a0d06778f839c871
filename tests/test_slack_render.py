"""The Slack renderer: Block Kit that slack_sdk's validators accept, never too big, never a ping."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jiter
import pytest
from slack_sdk.models.blocks import Block

from bot.core.answer import Answer, Citation, NextAction, Reply, Usage
from bot.core.persona import Persona, UnknownPersonaError, load_personas
from bot.core.progress import Step, writing_step
from bot.slack.inert import escape
from bot.slack.markdown import is_cut, render_draft
from bot.slack.render import (
    FEEDBACK_ACTION,
    RETRY_ACTION,
    RenderedReply,
    SlackMessage,
    feedback_vote,
    render_failure,
    render_personas,
    render_progress,
    render_question,
    render_reply,
    render_step_status,
    render_unknown_persona,
    render_usage,
)
from tests.fakes.openai_api import VALID_ANSWER
from tests.security.test_model_output import FAKE_MARKERS, INJECTION, PHISH

BLOCKKIT = Path(__file__).parent / "vendor" / "slack" / "blockkit"
# A line with every ping and an ampersand, as a model (or a README it quotes) might write it.
HOSTILE = "Tell <!channel> and <!here>, ask <@U123ABC> & @everyone (also @here, @channel)."
QUESTION = "review the retry design for POST /charges"
PR_URL = "https://github.com/acme/payments/pull/42"
FEEDBACK = {
    "type": "context_actions",
    "elements": [
        {
            "type": "feedback_buttons",
            "action_id": FEEDBACK_ACTION,
            "positive_button": {
                "text": {"type": "plain_text", "text": "👍", "emoji": True},
                "accessibility_label": "Helpful",
                "value": "up:req-42",
            },
            "negative_button": {
                "text": {"type": "plain_text", "text": "👎", "emoji": True},
                "accessibility_label": "Not helpful",
                "value": "down:req-42",
            },
        }
    ],
}


@pytest.fixture
def persona() -> Persona:
    return load_personas().get("backend-engineer")


def _reply(answer: Answer) -> Reply:
    usage = Usage(prompt_tokens=603, completion_tokens=126)
    return Reply(answer=answer, model="gpt-4o-mini", usage=usage, latency_seconds=2.1, attempts=1)


def _cited(answer: Answer) -> Reply:
    return _reply(answer).model_copy(
        update={"citations": [Citation(title="acme/payments#42", url=PR_URL)]}
    )


def _render(persona: Persona, reply: Reply, **options) -> RenderedReply:
    return render_reply(
        persona=persona,
        reply=reply,
        request_id=options.pop("request_id", "req-42"),
        question=options.pop("question", QUESTION),
        **options,
    )


def _one(persona: Persona, reply: Reply) -> SlackMessage:
    """The answer's only message (and no file)."""
    rendered = _render(persona, reply)
    assert rendered.attachment is None
    [message] = rendered.messages
    return message


def _small_answer() -> Answer:
    return Answer(
        summary="Retrying POST /charges on timeout can charge a customer twice.",
        recommendation="Add an idempotency key to POST /charges before enabling retries.",
        rationale=["A timeout does not mean the charge failed.", "Retries replay the write."],
        risks=["Duplicate charges during provider brownouts."],
        next_actions=[
            NextAction(
                title="Add idempotency keys to POST /charges",
                owner="payments team",
                outcome="Retries become safe to enable.",
            )
        ],
        missing_context=["Whether the payment provider deduplicates requests itself."],
    )


def _huge_text(kind: str) -> str:
    """About 10 KB: paragraphs, one word too long for a section, and a run of `&` entities."""
    paragraphs = [f"{kind} paragraph {n}: {HOSTILE} " + "word " * 60 for n in range(20)]
    return "\n\n".join([*paragraphs, f"{kind}-" + "x" * 3500, "y" + "&" * 1000])


def _huge_answer() -> Answer:
    actions = [
        NextAction(title=f"ACTION-{n}-TITLE {HOSTILE}", owner=f"OWNER-{n}", outcome=f"OUTCOME-{n}")
        for n in range(30)
    ]
    actions[7] = NextAction(
        title="ACTION-7-TITLE", owner=_huge_text("OWNER-7"), outcome=_huge_text("OUTCOME-7")
    )
    return Answer(
        summary=_huge_text("SUMMARY"),
        recommendation=_huge_text("RECOMMENDATION"),
        rationale=[f"RATIONALE-{n}-MARK {HOSTILE}" for n in range(60)],
        risks=[f"RISK-{n}-MARK {HOSTILE}" for n in range(40)],
        next_actions=actions,
        missing_context=[f"MISSING-{n}-MARK {HOSTILE}" for n in range(5)],
    )


def _long_answer() -> Answer:
    """Too long for one message, short enough for three: a 10 KB summary."""
    return _small_answer().model_copy(update={"summary": _huge_text("SUMMARY")})


def _validated(message: SlackMessage) -> list[Block]:
    """The blocks as slack_sdk parses them; `to_dict()` raises when a limit is broken."""
    blocks = Block.parse_all(message.blocks)
    assert [block.to_dict() for block in blocks] == message.blocks
    assert len(blocks) <= 50
    return blocks


def _texts(message: SlackMessage) -> list[str]:
    """Every mrkdwn and plain text in the blocks, in order: the header, section texts and
    fields, context texts (not the table's cells nor the sources' links)."""
    found: list[str] = []
    for block in message.blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        found += [field["text"] for field in block.get("fields", [])]
        if block["type"] == "context":
            found += [element["text"] for element in block["elements"]]
    return found


def _types(message: SlackMessage) -> list[str]:
    return [block["type"] for block in message.blocks]


def _table(message: SlackMessage) -> list[list[str]]:
    [table] = [block for block in message.blocks if block["type"] == "table"]
    assert all(cell["type"] == "raw_text" for row in table["rows"] for cell in row)
    return [[cell["text"] for cell in row] for row in table["rows"]]


def _sources(message: SlackMessage) -> list[tuple[str, str]]:
    """(title, url) of each source listed, in order."""
    return [
        (link["text"], link["url"])
        for block in message.blocks
        if block["type"] == "rich_text"
        for element in block["elements"]
        if element["type"] == "rich_text_list"
        for item in element["elements"]
        for link in item["elements"]
    ]


def _feedback(message: SlackMessage) -> list[dict]:
    return [block for block in message.blocks if block["type"] in ("actions", "context_actions")]


def _unsplit(messages: list[SlackMessage]) -> str:
    """The messages' text below their headers as one string, without whitespace and quote marks."""
    joined = "".join(text for message in messages for text in _texts(message)[1:])
    return re.sub(r"[\s>]", "", joined)


def _lines(message: SlackMessage) -> list[str]:
    return [line for text in _texts(message)[1:] for line in text.splitlines()]


def test_a_normal_reply_is_one_message_with_every_part_between_dividers(persona):
    message = _one(persona, _reply(_small_answer()))

    _validated(message)
    assert _types(message) == [
        "header",
        *["section", "divider"] * 4,  # summary, recommendation, rationale, risks
        *["section", "table", "divider"],  # next actions
        "section",  # missing context
        "context",  # the footer
        "context_actions",  # feedback
    ]
    assert message.blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": f"Backend Engineer · {QUESTION}", "emoji": True},
    }
    texts = _texts(message)
    assert "*Summary*\nRetrying POST /charges on timeout can charge a customer twice." in texts
    assert (
        "*Recommendation*\n> Add an idempotency key to POST /charges before enabling retries."
        in texts
    )
    assert (
        "*Rationale*\n• A timeout does not mean the charge failed.\n• Retries replay the write."
        in texts
    )
    assert "*Risks*\n• Duplicate charges during provider brownouts." in texts
    assert "*Next actions*" in texts
    assert (
        "*Missing context*\n• Whether the payment provider deduplicates requests itself." in texts
    )
    assert _table(message) == [
        ["Title", "Owner", "Outcome"],
        [
            "Add idempotency keys to POST /charges",
            "payments team",
            "Retries become safe to enable.",
        ],
    ]
    assert message.blocks[-2] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "gpt-4o-mini · 2.1s", "verbatim": True}],
    }
    assert message.blocks[-1] == FEEDBACK
    assert message.text == (
        "Backend Engineer: Retrying POST /charges on timeout can charge a customer twice."
    )


def test_token_counts_show_in_the_footer_only_when_asked(persona):
    [message] = _render(persona, _reply(_small_answer()), show_usage=True).messages

    assert message.blocks[-2]["elements"][0]["text"] == (
        "gpt-4o-mini · 729 tokens (603 in, 126 out) · 2.1s"
    )
    assert "tokens" not in json.dumps(_one(persona, _reply(_small_answer())).blocks)


def test_the_header_names_the_question_on_one_line_and_shortened(persona):
    asked = f"review <{PR_URL}|this PR>\n\u202eand\u200b   tell me <!here> " + "why " * 60
    [message] = _render(persona, _reply(_small_answer()), question=asked).messages

    header = message.blocks[0]["text"]["text"]
    assert header.startswith(f"Backend Engineer · review {PR_URL} and tell me <!here> why why")
    assert header.endswith("…") and len(header) <= 150
    assert _render(persona, _reply(_small_answer()), question=" ").messages[0].blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Backend Engineer", "emoji": True},
    }


def test_empty_lists_show_none(persona):
    answer = _small_answer().model_copy(
        update={"rationale": [], "risks": [], "next_actions": [], "missing_context": []}
    )
    message = _one(persona, _reply(answer))
    texts = _texts(message)
    for label in ["Rationale", "Risks", "Next actions", "Missing context"]:
        assert f"*{label}*\n_none_" in texts
    assert "table" not in _types(message)


def test_a_long_answer_is_split_over_valid_messages_and_nothing_is_lost(persona):
    answer = _long_answer()
    rendered = _render(persona, _cited(answer))

    assert rendered.attachment is None
    messages = rendered.messages
    assert 1 < len(messages) <= 3
    for number, message in enumerate(messages, start=1):
        _validated(message)
        if number > 1:
            assert message.blocks[0]["text"]["text"] == (
                f"Backend Engineer · {QUESTION} (continued, {number}/{len(messages)})"
            )
        assert message.blocks[1]["type"] != "divider" and message.blocks[-1]["type"] != "divider"
    assert [bool(_feedback(message)) for message in messages] == [False] * (len(messages) - 1) + [
        True
    ]
    assert re.sub(r"\s", "", escape(answer.summary)) in _unsplit(messages)
    assert _sources(messages[-1]) == [("acme/payments#42", PR_URL)]
    assert _table(messages[-1])[1][0] == "Add idempotency keys to POST /charges"


def _many_actions() -> Answer:
    """9 blocks before the actions, then 38 actions fill the first message's 47 blocks, and 47
    more the second's: the divider after them would open the third. (Too much text for a table.)"""
    actions = [NextAction(title=f"T{n} " + "x" * 95, owner="o", outcome="x") for n in range(85)]
    return _small_answer().model_copy(update={"next_actions": actions})


def _page_of_summary() -> Answer:
    """A summary that leaves no room for the recommendation after it: the divider between them
    would end the first message."""
    update = {"summary": "word " * 1200, "recommendation": "word " * 500}
    return _small_answer().model_copy(update=update)


@pytest.mark.parametrize("answer", [_many_actions(), _page_of_summary(), _huge_answer()])
def test_a_divider_neither_ends_nor_starts_a_message(persona, answer):
    messages = _render(persona, _reply(answer)).messages

    assert len(messages) > 1
    for number, message in enumerate(messages, start=1):
        _validated(message)
        body = _types(message)[1 : -2 if number == len(messages) else None]
        assert body[0] != "divider" and body[-1] != "divider", body


def test_an_answer_too_long_for_three_messages_goes_whole_into_a_file(persona):
    answer = _huge_answer()
    reply = _cited(answer)
    rendered = _render(persona, reply, request_id="req-huge")

    messages = rendered.messages
    assert len(messages) == 3
    for message in messages:
        blocks = _validated(message)
        assert blocks[0].type == "header"
        for block in message.blocks:
            if block["type"] == "section":
                assert 0 < len(block["text"]["text"]) <= 3000
                assert all(len(field["text"]) <= 2000 for field in block.get("fields", []))
        assert sum(len(text) for text in _texts(message)) <= 12_000
        assert 0 < len(message.text) <= 40_000
        payload = json.dumps(message.blocks, ensure_ascii=False) + message.text
        assert "<!" not in payload and "<@" not in payload
        assert not re.search(r"@(everyone|here|channel)", payload)
        assert not re.search(r"&(?!amp;|lt;|gt;)", payload), "an entity was split"
    assert not _feedback(messages[0]) and not _feedback(messages[1])
    assert _types(messages[-1])[-3:] == ["section", "context", "context_actions"]
    assert _texts(messages[-1])[-2] == (
        ":page_facing_up: The rest of this answer is in the file *answer-req-huge.md* below, "
        "which holds all of it."
    )

    file = rendered.attachment
    assert file is not None and file.filename == "answer-req-huge.md"
    assert file.title.startswith(f"Backend Engineer · {QUESTION}")
    content = file.content
    assert content.startswith(f"# Backend Engineer · {QUESTION}\n\n**Summary**\n\nSUMMARY para")
    markers = [f"RATIONALE-{n}-MARK" for n in range(60)]
    markers += [f"RISK-{n}-MARK" for n in range(40)]
    markers += [f"ACTION-{n}-TITLE" for n in range(30)]
    markers += [f"OWNER-{n}" for n in range(30)] + [f"OUTCOME-{n}" for n in range(30)]
    markers += [f"MISSING-{n}-MARK" for n in range(5)]
    markers += ["**Recommendation**", "**Next actions**", "**Missing context**", "**Sources**"]
    assert [marker for marker in markers if marker not in content] == []
    assert content.endswith(f"**Sources**\n- [acme/payments#42](<{PR_URL}>)\n")
    assert "<!" not in content and "<@" not in content
    assert not re.search(r"@(everyone|here|channel)", content)
    assert "Tell &lt;!channel&gt; and &lt;!here&gt;, ask &lt;@U123ABC&gt; &amp; @\u2060every" in (
        content
    )


def test_the_file_is_as_inert_as_the_draft(persona):
    fooled = _huge_answer().model_copy(
        update={"summary": f"Log in at {PHISH} or [click]({PHISH}) <b>now</b>\n# Approved"}
    )
    content = _render(persona, _cited(fooled)).attachment.content

    summary = content.split("**Summary**\n\n", 1)[1].split("\n\n", 1)[0]
    assert summary == (
        "Log in at hxxps://evil［.］example/login or ［click］(hxxps://evil［.］example/login) "
        "&lt;b&gt;now&lt;/b&gt;\n＃ Approved"
    )


def test_a_long_owner_falls_back_from_the_table_and_fields_to_text(persona):
    action = NextAction(title="Split the service", owner="o " * 1500, outcome="done")
    answer = _small_answer().model_copy(update={"next_actions": [action]})
    message = _one(persona, _reply(answer))

    _validated(message)
    assert "table" not in _types(message)
    assert not any("fields" in block for block in message.blocks)
    assert "*1. Split the service*\n*Owner*\no o" in "\n".join(_texts(message))


@pytest.mark.parametrize(
    ("title", "count"),
    [("T{n}", 100), ("T{n} " + "x" * 95, 85)],
    ids=["more rows than a table holds", "more text than a message carries"],
)
def test_actions_too_many_for_a_table_show_as_sections(persona, title, count):
    actions = [NextAction(title=title.format(n=n), owner="o", outcome="x") for n in range(count)]
    rendered = _render(
        persona, _reply(_small_answer().model_copy(update={"next_actions": actions}))
    )

    assert not any("table" in _types(message) for message in rendered.messages)
    fields = [
        block["text"]["text"]
        for message in rendered.messages
        for block in message.blocks
        if "fields" in block
    ]
    assert fields == [f"*{n + 1}. {title.format(n=n)}*" for n in range(count)]


def test_the_third_message_makes_room_for_the_note(persona):
    actions = [NextAction(title=f"T{n}", owner="o", outcome="x") for n in range(200)]
    answer = _small_answer().model_copy(update={"next_actions": actions})
    rendered = _render(persona, _reply(answer))

    assert rendered.attachment is not None
    assert [len(message.blocks) for message in rendered.messages] == [48, 48, 50]
    for message in rendered.messages:
        _validated(message)
    assert _types(rendered.messages[-1])[-3:] == ["section", "context", "context_actions"]
    assert "*131. T130*" in rendered.messages[-1].blocks[-4]["text"]["text"]
    assert "\n200. **T199** — owner: o; outcome: x\n" in rendered.attachment.content


def test_the_table_holds_model_text_inert(persona):
    action = NextAction(
        title=f"Tell <!here> @channel\nnow {PHISH}", owner=f"see {PR_URL}", outcome=""
    )
    answer = _small_answer().model_copy(update={"next_actions": [action]})
    message = _one(persona, _cited(answer))

    assert _table(message)[1] == [
        "Tell ‹!here› @\u2060channel now hxxps://evil[.]example/login",
        f"see {PR_URL}",
        "—",
    ]


def test_a_long_persona_title_shortens_only_the_header(persona):
    long_persona = persona.model_copy(update={"title": "Principal " * 30})
    messages = _render(long_persona, _reply(_huge_answer())).messages

    for message in messages:
        _validated(message)
        header = message.blocks[0]["text"]["text"]
        assert len(header) <= 150
    assert messages[0].blocks[0]["text"]["text"].endswith("…")
    assert messages[1].blocks[0]["text"]["text"].endswith(f"… (continued, 2/{len(messages)})")


def test_a_recommendation_split_mid_line_stays_quoted(persona):
    answer = _small_answer().model_copy(update={"recommendation": "word " * 1000})
    message = _one(persona, _reply(answer))

    quoted = [text for text in _texts(message) if "word" in text]
    assert len(quoted) == 2
    assert quoted[0].startswith("*Recommendation*\n> word")
    assert quoted[1].startswith("> word")


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a & b", "a &amp; b"),
        ("<!channel> <!here>", "&lt;!channel&gt; &lt;!here&gt;"),
        ("hi <@U123ABC>", "hi &lt;@U123ABC&gt;"),
        ("<https://evil.example|click>", "&lt;https://evil.example|click&gt;"),
        ("@everyone @here @channel", "@\u2060everyone @\u2060here @\u2060channel"),
        ("@Everyone and @HERE", "@\u2060Everyone and @\u2060HERE"),
        ("&amp; is already escaped", "&amp;amp; is already escaped"),
        ("mail me@example.com, *bold* stays", "mail me@example.com, *bold* stays"),
    ],
)
def test_escape(text, escaped):
    assert escape(text) == escaped


def test_failure_with_a_retry_button():
    message = render_failure(reason="The model timed out <!here>.", request_id="req-7")

    _validated(message)
    assert message.text == ":warning: The model timed out &lt;!here&gt;."
    assert message.blocks[0]["text"]["text"] == message.text
    [actions] = _feedback(message)
    [button] = actions["elements"]
    assert (button["action_id"], button["value"], button["text"]["text"]) == (
        RETRY_ACTION,
        "req-7",
        "Try again",
    )


def test_failure_without_a_request_has_no_button():
    message = render_failure(reason="Unknown persona.", request_id=None)

    _validated(message)
    assert message.text == ":warning: Unknown persona."
    assert _feedback(message) == []


def test_question_mentions_the_asker_and_escapes_the_question(persona):
    message = render_question(
        user_id="U042ASKER", persona=persona, question="review this\n<!channel> & <@U123ABC>"
    )

    _validated(message)
    assert message.blocks[0]["text"]["text"] == (
        "<@U042ASKER> asked *Backend Engineer*:\n"
        "> review this\n"
        "> &lt;!channel&gt; &amp; &lt;@U123ABC&gt;"
    )
    assert message.text.startswith("<@U042ASKER> asked *Backend Engineer*: review this")
    assert "<!channel>" not in message.text


def test_a_long_question_is_shown_shortened(persona):
    message = render_question(user_id="U1", persona=persona, question="why " * 2000)

    for block in _validated(message):
        assert len(block.to_dict()["text"]["text"]) <= 3000
    assert _texts(message)[-1].endswith("…")


def test_progress(persona):
    message = render_progress(persona=persona)

    _validated(message)
    assert message.text == ":hourglass_flowing_sand: Backend Engineer is thinking…"
    assert message.blocks[0]["text"]["text"] == message.text


def test_progress_shows_the_step_under_way(persona):
    reading = Step("pr", "Reading acme/payments#42 <!here>", "in_progress", url=PR_URL)
    message = render_progress(persona=persona, step=reading)

    _validated(message)
    assert message.text == (
        ":hourglass_flowing_sand: Backend Engineer: Reading acme/payments#42 &lt;!here&gt;…"
    )
    assert message.blocks[0]["text"]["text"] == (
        f":hourglass_flowing_sand: Backend Engineer: <{PR_URL}|Reading acme/payments#42 "
        "&lt;!here&gt;>…"
    )
    writing = render_progress(persona=persona, step=writing_step("in_progress"))
    assert writing.text == ":hourglass_flowing_sand: Backend Engineer: Writing the answer…"
    refused = Step("x", "acme/secret", "error", detail="not linked to #general")
    assert render_progress(persona=persona, step=refused).text == (
        ":hourglass_flowing_sand: Backend Engineer: acme/secret: not linked to #general"
    )


def test_step_status():
    assert render_step_status(Step("pr", "Reading acme/payments#42", "in_progress")) == (
        "is reading acme/payments#42…"
    )
    assert render_step_status(writing_step("in_progress")) == "is writing the answer…"
    assert render_step_status(Step("k", "PAY-123 <!here>", "in_progress")) == (
        "is PAY-123 &lt;!here&gt;…"
    )
    assert len(render_step_status(Step("k", "Reading " + "x" * 500, "in_progress"))) <= 100


def test_slack_reference_blocks_round_trip():
    """The validation used above accepts Slack's own published blocks unchanged."""
    view = json.loads((BLOCKKIT / "view_home_001.json").read_text(encoding="utf-8"))
    blocks = Block.parse_all(view["blocks"])
    assert [block.to_dict() for block in blocks] == view["blocks"]


def test_usage_personas_and_typo_texts():
    assert "/oi &lt;persona&gt; &lt;question&gt;" in render_usage()
    assert render_usage("What should <b> answer?").startswith("What should &lt;b&gt; answer?\n")
    listed = render_personas(load_personas().all())
    assert listed.startswith("*backend-engineer*: Owns server-side")
    typo = render_unknown_persona(UnknownPersonaError("<!here>", ["backend-engineer"]))
    assert "&lt;!here&gt;" in typo and "backend-engineer" in typo


def test_sources_are_a_list_of_links_under_the_answer(persona):
    citations = [
        Citation(title="acme/payments#42 <!here> @channel", url=PR_URL),
        *(
            Citation(title=f"PAY-{n}", url=f"https://linear.app/acme/issue/PAY-{n}")
            for n in range(30)
        ),
    ]
    reply = _reply(_small_answer()).model_copy(update={"citations": citations})
    message = _one(persona, reply)

    _validated(message)
    rich = [block for block in message.blocks if block["type"] == "rich_text"]
    assert len(rich) == 2 and _types(message).index("rich_text") > _types(message).index("table")
    assert rich[0]["elements"][0] == {
        "type": "rich_text_section",
        "elements": [{"type": "text", "text": "Sources", "style": {"bold": True}}],
    }
    assert all(
        element["type"] == "rich_text_list" and element["style"] == "bullet"
        for block in rich
        for element in block["elements"][-1:]
    )
    assert _sources(message) == [
        ("acme/payments#42 ‹!here› @\u2060channel", PR_URL),
        *((f"PAY-{n}", f"https://linear.app/acme/issue/PAY-{n}") for n in range(30)),
    ]


def test_every_text_but_the_header_is_verbatim_so_slack_links_nothing_by_itself(persona):
    answer = _small_answer().model_copy(
        update={"next_actions": [NextAction(title="t", owner="o " * 1500, outcome="x")]}
    )
    message = _one(persona, _cited(answer))
    objects = [block["text"] for block in message.blocks if block["type"] == "section"]
    objects += [field for block in message.blocks for field in block.get("fields", [])]
    objects += [
        element
        for block in message.blocks
        if block["type"] == "context"
        for element in block["elements"]
    ]
    assert len(objects) > 7
    assert all(obj["type"] == "mrkdwn" and obj["verbatim"] is True for obj in objects)


def test_only_links_to_what_was_read_or_the_card_allows_are_links(persona):
    card = persona.model_copy(
        update={"links": persona.links.model_copy(update={"allowed": ["https://docs.acme.dev/"]})}
    )
    answer = _small_answer().model_copy(
        update={
            "summary": (
                f"Log in at {PHISH}, or <https://evil.example/x|click here>, see {PR_URL}#diff-1 "
                f"and ({PR_URL}). Docs: https://docs.acme.dev/retries. Not "
                "https://docs.acme.dev.evil.example/retries nor evil.example."
            ),
            "rationale": [f"Compare {PR_URL}/files and https://github.com/acme/secret/pull/42"],
        }
    )
    message = _one(card, _cited(answer))
    summary = next(text for text in _texts(message) if text.startswith("*Summary*"))
    assert summary == (
        f"*Summary*\nLog in at {PHISH}, or &lt;https://evil.example/x|click here&gt;, "
        f"see <{PR_URL}#diff-1> and (<{PR_URL}>). Docs: <https://docs.acme.dev/retries>. Not "
        "https://docs.acme.dev.evil.example/retries nor evil.example."
    )
    rationale = next(text for text in _texts(message) if text.startswith("*Rationale*"))
    # a page under the source is not the source; another repository is not either
    assert "<" not in rationale
    links = re.findall(r"<([^>|]+)[>|]", json.dumps(message.blocks))
    assert set(links) == {f"{PR_URL}#diff-1", PR_URL, "https://docs.acme.dev/retries"}
    assert [url for _, url in _sources(message)] == [PR_URL]


def test_the_notification_text_defangs_links_it_may_not_show(persona):
    answer = _small_answer().model_copy(
        update={"summary": f"Log in at {PHISH}.\nSee {PR_URL} <!here>"}
    )
    message = _one(persona, _cited(answer))
    assert message.text == (
        f"Backend Engineer: Log in at hxxps://evil[.]example/login. See {PR_URL} &lt;!here&gt;"
    )


LABELS = ["*Summary*", "*Recommendation*", "*Rationale*", "*Risks*", "*Next actions*"]
LABELS += ["*Missing context*"]


@pytest.mark.parametrize(
    "forged",
    [
        "ok\n*Recommendation*\nship it",
        "ok\n  *Recommendation*\n> ship it",
        "ok\n\u200b*Risks*\n• none at all",
        "ok\n_*Next actions*_\n`run it`\n~gone~",
        "ok\n*1. Drop the table*",
        "ok\n\u202e*Owner*\u202c",
    ],
)
def test_model_text_cannot_forge_our_labels_quotes_or_bullets(persona, forged):
    answer = Answer(
        summary=forged,
        recommendation=forged,
        rationale=[forged],
        risks=[forged],
        next_actions=[NextAction(title=forged, owner=forged, outcome=forged)],
        missing_context=[forged],
    )
    message = _one(persona, _reply(answer))
    lines = _lines(message)
    # each of our labels once, nothing else like them
    assert [line for line in lines if line in LABELS] == LABELS
    for line in lines:
        if line in LABELS:
            continue
        assert not re.match(r"\s*[*_~`]", line), line
        assert not line.startswith(("&gt;", "> &gt;", "> >")), line
        assert not line.startswith("•") or line.startswith("• ok"), line
    assert all("\n" not in cell for cell in _table(message)[1])
    assert "\u200b" not in json.dumps(message.blocks, ensure_ascii=False)


def test_single_line_fields_stay_on_one_line(persona):
    action = NextAction(title="a\nb", owner="c\n\nd", outcome="e\r\nf")
    answer = _small_answer().model_copy(
        update={"rationale": ["one\ntwo"], "next_actions": [action]}
    )
    message = _one(persona, _reply(answer))
    assert "*Rationale*\n• one two" in _texts(message)
    assert _table(message)[1] == ["a b", "c d", "e f"]


def test_markup_inside_a_line_still_formats(persona):
    answer = _small_answer().model_copy(update={"summary": "Do *not* retry `POST /charges`."})
    assert "*Summary*\nDo *not* retry `POST /charges`." in _texts(_one(persona, _reply(answer)))


def test_a_forged_label_where_a_long_line_is_cut_is_defused_too(persona):
    # the cut falls on the last space before 3,000 characters: right before the forged label
    lead = "word " * 598
    answer = _small_answer().model_copy(update={"summary": lead + "*Recommendation* ship it"})
    message = _one(persona, _reply(answer))
    pieces = [text for text in _texts(message) if "word" in text or "ship it" in text]
    assert len(pieces) == 2
    assert pieces[1] == "\u2217Recommendation* ship it"


def test_the_echoed_question_keeps_the_links_its_asker_typed(persona):
    message = render_question(user_id="U1", persona=persona, question=f"review {PR_URL}")
    assert message.blocks[0]["text"]["verbatim"] is False


def test_feedback_values_name_the_vote_and_the_request():
    assert feedback_vote("up:req-42") == ("up", "req-42")
    assert feedback_vote("down:a:b") == ("down", "a:b")
    for value in ["sideways:req-42", "up:", "req-42", ""]:
        assert feedback_vote(value) is None


# -- the streamed draft: Markdown for chat.appendStream

# What a model writes to break out of its text: its own links, images and HTML, pings, labels,
# headings, quotes, lists, rules, code, tables, and the markers of fetched text.
MARKDOWN_HOSTILE = "\n".join(
    [
        f"See [the docs]({PHISH}) and ![x]({PHISH}) or <{PHISH}> <a href='{PHISH}'>here</a>",
        f"{HOSTILE} {INJECTION}",
        "**Recommendation**",
        "# Approved by security",
        "> quoted",
        "- listed",
        "+ listed",
        "* listed",
        "1. numbered",
        "2) numbered",
        "    indented code",
        "```",
        "~~~",
        "---",
        "===",
        "| a | b |",
        f"[ref]: {PHISH}",
        *FAKE_MARKERS,
    ]
)


def _draft_answer(text: str) -> dict:
    """An answer on the wire (camelCase, the schema's order), each part holding `text`."""
    return {
        "summary": f"Retrying charges: {text} Read {PR_URL}#files and the docs.",
        "recommendation": text,
        "rationale": [text, "A timeout is not a failure."],
        "risks": [],
        "nextActions": [
            {"title": text, "owner": text, "outcome": text},
            {"title": "Add keys", "owner": "payments team", "outcome": "safe retries"},
        ],
        "missingContext": [text, "The provider's own retry rules."],
    }


def _drafts(answer: dict) -> list[dict]:
    """Every draft a streamed answer goes through, one character at a time, as the LLM client
    parses them (jiter, trailing strings)."""
    streamed = json.dumps(answer).encode()
    drafts = []
    for end in range(1, len(streamed) + 1):
        try:
            drafts.append(jiter.from_json(streamed[:end], partial_mode="trailing-strings"))
        except ValueError:
            continue  # cut inside a character of several bytes
    return drafts


def _draft(persona: Persona, draft: dict, *, limit: int = 12_000) -> str:
    citations = [Citation(title="acme/payments#42", url=PR_URL)]
    return render_draft(persona=persona, draft=draft, links_from=citations, limit=limit)


def test_a_draft_is_markdown_with_labels_bullets_and_numbered_actions(persona):
    assert _draft(persona, {}) == ""
    assert _draft(persona, {**VALID_ANSWER, "missingContext": ["The provider's own retry"]}) == (
        "**Summary**\n\n"
        "Retries without idempotency keys can double-charge.\n\n"
        "**Recommendation**\n\n"
        "Add an idempotency key to the charge endpoint before enabling retries.\n\n"
        "**Rationale**\n"
        "- Retries replay non-idempotent writes.\n"
        "- The PR retries on timeouts.\n\n"
        "**Risks**\n"
        "- Duplicate charges during provider brownouts.\n\n"
        "**Next actions**\n"
        "1. **Add idempotency keys to POST /charges** — owner: payments team; "
        "outcome: Retries become safe to enable.\n\n"
        "**Missing context**\n"
        "- The provider's own"  # the last word may be cut short: it waits
    )
    # a part known to be finished says it is empty; the one being written does not yet
    assert _draft(persona, {"risks": [], "nextActions": []}) == (
        "**Risks**\n_none_\n\n**Next actions**"
    )
    # an action shows once its title is whole, since its bold closes after it
    assert _draft(persona, {"nextActions": [{"title": "Add idempotency keys"}]}) == (
        "**Next actions**"
    )
    assert _draft(persona, {"nextActions": [{"title": "Add keys", "owner": "pay"}]}) == (
        "**Next actions**\n1. **Add keys** — owner:"
    )


@pytest.mark.parametrize(
    "text",
    [
        "Add an idempotency key, then enable retries with backoff.",
        MARKDOWN_HOSTILE,
        f"Log in at {PHISH}, mail @channel & <!here> about {PR_URL}/files\n\n\n  and [x]",
    ],
)
def test_a_streamed_draft_only_grows(persona, text):
    for limit in (12_000, 700):
        shown = ""
        for draft in _drafts(_draft_answer(text)):
            rendered = _draft(persona, draft, limit=limit)
            assert rendered.startswith(shown), (shown[-80:], rendered[len(shown) - 80 :])
            assert len(rendered) <= limit
            shown = rendered
        assert shown.count("**") >= 14 if limit == 12_000 else shown.endswith("finished._")


def test_a_draft_holds_model_text_inert_in_markdown(persona):
    card = persona.model_copy(
        update={"links": persona.links.model_copy(update={"allowed": ["https://docs.acme.dev/"]})}
    )
    answer = _draft_answer(MARKDOWN_HOSTILE + " Docs: https://docs.acme.dev/retries.")
    markdown = _draft(card, {**answer, "end": ""})

    assert "<!" not in markdown and "<@" not in markdown and "<a" not in markdown
    assert not re.search(r"@(everyone|here|channel)", markdown)
    assert "[" not in markdown.replace("[.]", "") and "]" not in markdown
    assert PHISH not in markdown and "hxxps://evil［.］example/login" in markdown
    # the only links: the source read and the card's allowed prefix, made links on purpose
    assert set(re.findall(r"<(https?://[^>]*)>", markdown)) == {
        f"{PR_URL}#files",
        "https://docs.acme.dev/retries",
    }
    lines = markdown.splitlines()
    ours = [line for line in lines if line.startswith("**")]
    assert ours == [
        f"**{label}**"
        for label in ["Summary", "Recommendation", "Rationale", "Risks", "Next actions"]
        + ["Missing context"]
    ]
    for line in lines:
        if line in ours or re.match(r"(- |[12]\. \*\*)\S", line) or line == "_none_":
            continue
        assert not re.match(r"\s|#|>|[-+*=_~`|]|\d+[.)]", line), line
    listed = [line for line in lines if re.match(r"- |\d+\. ", line)]
    assert len(listed) == 2 + 2 + 2  # rationale, next actions, missing context
    assert "&lt;a href='hxxps://evil［.］example/login'&gt;here&lt;/a&gt;" in markdown


def test_a_draft_past_its_limit_is_cut_at_a_word_and_stays_cut(persona):
    answer = _draft_answer("word " * 300)
    drafts = _drafts(answer)
    full = _draft(persona, drafts[-1])
    cut = _draft(persona, drafts[-1], limit=500)

    assert len(full) > 500 >= len(cut)
    assert cut.endswith("…\n\n_The whole answer shows when it is finished._")
    assert full.startswith(cut.split("…")[0]) and cut.split("…")[0].endswith("word")
    later = [
        _draft(persona, draft, limit=500) for draft in drafts if len(_draft(persona, draft)) > 500
    ]
    assert set(later) == {cut}
    assert is_cut(cut) and not is_cut(full)  # so the stream stops rendering the drafts after it
