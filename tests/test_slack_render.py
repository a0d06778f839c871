"""The Slack renderer: Block Kit that slack_sdk's validators accept, never too big, never a ping."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from slack_sdk.models.blocks import Block

from bot.core.answer import Answer, Citation, NextAction, Reply, Usage
from bot.core.persona import Persona, UnknownPersonaError, load_personas
from bot.slack.render import (
    FEEDBACK_DOWN_ACTION,
    FEEDBACK_UP_ACTION,
    RETRY_ACTION,
    SlackMessage,
    escape,
    render_failure,
    render_personas,
    render_progress,
    render_question,
    render_reply,
    render_unknown_persona,
    render_usage,
)

BLOCKKIT = Path(__file__).parent / "vendor" / "slack" / "blockkit"
# A line with every ping and an ampersand, as a model (or a README it quotes) might write it.
HOSTILE = "Tell <!channel> and <!here>, ask <@U123ABC> & @everyone (also @here, @channel)."


@pytest.fixture
def persona() -> Persona:
    return load_personas().get("backend-engineer")


def _reply(answer: Answer) -> Reply:
    usage = Usage(prompt_tokens=603, completion_tokens=126)
    return Reply(answer=answer, model="gpt-4o-mini", usage=usage, latency_seconds=2.1, attempts=1)


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


def _validated(message: SlackMessage) -> list[Block]:
    """The blocks as slack_sdk parses them; `to_dict()` raises when a limit is broken."""
    blocks = Block.parse_all(message.blocks)
    assert [block.to_dict() for block in blocks] == message.blocks
    return blocks


def _texts(message: SlackMessage) -> list[str]:
    """Every mrkdwn and plain text in the blocks, in order: section texts, fields, context."""
    found: list[str] = []
    for block in message.blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        found += [field["text"] for field in block.get("fields", [])]
        elements = block.get("elements", [])
        found += [element["text"] for element in elements if element["type"] != "button"]
    return found


def _unsplit(messages: list[SlackMessage]) -> str:
    """The messages' text below their headers as one string, without whitespace and quote marks."""
    joined = "".join(text for message in messages for text in _texts(message)[1:])
    return re.sub(r"[\s>]", "", joined)


def _buttons(message: SlackMessage) -> list[tuple[str, str, str]]:
    """(action_id, value, label) of every button."""
    return [
        (element["action_id"], element["value"], element["text"]["text"])
        for block in message.blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def test_a_normal_reply_is_one_message_with_every_part(persona):
    messages = render_reply(persona=persona, reply=_reply(_small_answer()), request_id="req-42")

    assert len(messages) == 1
    message = messages[0]
    _validated(message)
    blocks = message.blocks
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Backend Engineer", "emoji": True},
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
    assert (
        "*Missing context*\n• Whether the payment provider deduplicates requests itself." in texts
    )
    action = next(block for block in blocks if "fields" in block)
    assert action["text"]["text"] == "*1. Add idempotency keys to POST /charges*"
    assert [field["text"] for field in action["fields"]] == [
        "*Owner*\npayments team",
        "*Outcome*\nRetries become safe to enable.",
    ]
    assert blocks[-2] == {
        "type": "context",
        "elements": [
            {
                "type": "mrkdwn",
                "text": "gpt-4o-mini · 729 tokens (603 in, 126 out) · 2.1s",
                "verbatim": True,
            }
        ],
    }
    assert _buttons(message) == [
        (FEEDBACK_UP_ACTION, "req-42", "👍"),
        (FEEDBACK_DOWN_ACTION, "req-42", "👎"),
    ]
    assert message.text == (
        "Backend Engineer: Retrying POST /charges on timeout can charge a customer twice."
    )


def test_empty_lists_show_none(persona):
    answer = _small_answer().model_copy(
        update={"rationale": [], "risks": [], "next_actions": [], "missing_context": []}
    )
    texts = _texts(render_reply(persona=persona, reply=_reply(answer), request_id="r")[0])
    for label in ["Rationale", "Risks", "Next actions", "Missing context"]:
        assert f"*{label}*\n_none_" in texts


def test_a_huge_answer_is_split_over_valid_messages_and_nothing_is_lost(persona):
    answer = _huge_answer()
    messages = render_reply(persona=persona, reply=_reply(answer), request_id="req-huge")

    assert len(messages) > 1
    for number, message in enumerate(messages, start=1):
        blocks = _validated(message)
        assert len(blocks) <= 50
        assert blocks[0].type == "header"
        assert len(message.blocks[0]["text"]["text"]) <= 150
        if number > 1:
            assert message.blocks[0]["text"]["text"] == (
                f"Backend Engineer (continued, {number}/{len(messages)})"
            )
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
    assert [bool(_buttons(message)) for message in messages[:-1]] == [False] * (len(messages) - 1)
    assert _buttons(messages[-1]) == [
        (FEEDBACK_UP_ACTION, "req-huge", "👍"),
        (FEEDBACK_DOWN_ACTION, "req-huge", "👎"),
    ]
    assert messages[-1].blocks[-2]["type"] == "context"

    everything = _unsplit(messages)
    long_action = answer.next_actions[7]
    for text in [answer.summary, answer.recommendation, long_action.owner, long_action.outcome]:
        assert re.sub(r"\s", "", escape(text)) in everything
    markers = [f"RATIONALE-{n}-MARK" for n in range(60)]
    markers += [f"RISK-{n}-MARK" for n in range(40)]
    markers += [f"ACTION-{n}-TITLE" for n in range(30)]
    markers += [f"OWNER-{n}" for n in range(30)] + [f"OUTCOME-{n}" for n in range(30)]
    markers += [f"MISSING-{n}-MARK" for n in range(5)]
    assert [marker for marker in markers if marker not in everything] == []


def test_a_long_owner_falls_back_from_fields_to_text(persona):
    action = NextAction(title="Split the service", owner="o " * 1500, outcome="done")
    answer = _small_answer().model_copy(update={"next_actions": [action]})
    message = render_reply(persona=persona, reply=_reply(answer), request_id="r")[0]

    _validated(message)
    assert not any("fields" in block for block in message.blocks)
    assert "*1. Split the service*\n*Owner*\no o" in "\n".join(_texts(message))


def test_a_long_persona_title_shortens_only_the_header(persona):
    long_persona = persona.model_copy(update={"title": "Principal " * 30})
    answer = _huge_answer()
    messages = render_reply(persona=long_persona, reply=_reply(answer), request_id="r")

    for message in messages:
        _validated(message)
        header = message.blocks[0]["text"]["text"]
        assert len(header) <= 150
    assert messages[0].blocks[0]["text"]["text"].endswith("…")
    assert messages[1].blocks[0]["text"]["text"].endswith(f"… (continued, 2/{len(messages)})")


def test_a_recommendation_split_mid_line_stays_quoted(persona):
    answer = _small_answer().model_copy(update={"recommendation": "word " * 1000})
    message = render_reply(persona=persona, reply=_reply(answer), request_id="r")[0]

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
    assert _buttons(message) == [(RETRY_ACTION, "req-7", "Try again")]


def test_failure_without_a_request_has_no_button():
    message = render_failure(reason="Unknown persona.", request_id=None)

    _validated(message)
    assert message.text == ":warning: Unknown persona."
    assert _buttons(message) == []


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


def test_sources_are_cited_as_links_under_the_answer(persona):
    citations = [
        Citation(title="acme/payments#42 <!here>", url="https://github.com/acme/payments/pull/42"),
        *(
            Citation(title=f"PAY-{n}", url=f"https://linear.app/acme/issue/PAY-{n}")
            for n in range(12)
        ),
    ]
    reply = _reply(_small_answer()).model_copy(update={"citations": citations})
    [message] = render_reply(persona=persona, reply=reply, request_id="r1")
    contexts = [b for b in message.blocks if b["type"] == "context"]
    texts = [e["text"] for b in contexts for e in b["elements"]]
    assert texts[0] == "*Sources*"
    assert "<https://github.com/acme/payments/pull/42|acme/payments#42 &lt;!here&gt;>" in texts
    assert all(f"|PAY-{n}>" in " ".join(texts) for n in range(12))
    assert all(len(b["elements"]) <= 10 for b in contexts)
    Block.parse_all(message.blocks)


PR_URL = "https://github.com/acme/payments/pull/42"
PHISH = "https://evil.example/login"
LABELS = [
    "*Summary*",
    "*Recommendation*",
    "*Rationale*",
    "*Risks*",
    "*Next actions*",
    "*Owner*",
    "*Outcome*",
    "*Missing context*",
]


def _cited(answer: Answer) -> Reply:
    return _reply(answer).model_copy(
        update={"citations": [Citation(title="acme/payments#42", url=PR_URL)]}
    )


def _lines(message: SlackMessage) -> list[str]:
    return [line for text in _texts(message) for line in text.splitlines()]


def test_every_text_but_the_header_is_verbatim_so_slack_links_nothing_by_itself(persona):
    [message] = render_reply(persona=persona, reply=_cited(_small_answer()), request_id="r")
    objects = [block["text"] for block in message.blocks if block["type"] == "section"]
    objects += [field for block in message.blocks for field in block.get("fields", [])]
    objects += [
        element
        for block in message.blocks
        if block["type"] == "context"
        for element in block["elements"]
    ]
    assert len(objects) > 8
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
    [message] = render_reply(persona=card, reply=_cited(answer), request_id="r")
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


def test_the_notification_text_defangs_links_it_may_not_show(persona):
    answer = _small_answer().model_copy(
        update={"summary": f"Log in at {PHISH}.\nSee {PR_URL} <!here>"}
    )
    [message] = render_reply(persona=persona, reply=_cited(answer), request_id="r")
    assert message.text == (
        f"Backend Engineer: Log in at hxxps://evil[.]example/login. See {PR_URL} &lt;!here&gt;"
    )


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
    [message] = render_reply(persona=persona, reply=_reply(answer), request_id="r")
    lines = _lines(message)
    # each of our labels once (Owner and Outcome once per action), nothing else like them
    assert [line for line in lines if line in LABELS] == LABELS
    for line in lines:
        if line in LABELS or line.startswith("*1. "):
            continue
        assert not re.match(r"\s*[*_~`]", line), line
        assert not line.startswith(("&gt;", "> &gt;", "> >")), line
        assert not line.startswith("•") or line.startswith("• ok"), line
    assert len([line for line in lines if line.startswith("*1. ")]) == 1
    assert "\u200b" not in json.dumps(message.blocks, ensure_ascii=False)


def test_single_line_fields_stay_on_one_line(persona):
    action = NextAction(title="a\nb", owner="c\n\nd", outcome="e\r\nf")
    answer = _small_answer().model_copy(
        update={"rationale": ["one\ntwo"], "next_actions": [action]}
    )
    [message] = render_reply(persona=persona, reply=_reply(answer), request_id="r")
    texts = _texts(message)
    assert "*Rationale*\n• one two" in texts
    assert "*1. a b*" in texts and "*Owner*\nc d" in texts and "*Outcome*\ne f" in texts


def test_markup_inside_a_line_still_formats(persona):
    answer = _small_answer().model_copy(update={"summary": "Do *not* retry `POST /charges`."})
    [message] = render_reply(persona=persona, reply=_reply(answer), request_id="r")
    assert "*Summary*\nDo *not* retry `POST /charges`." in _texts(message)


def test_a_forged_label_where_a_long_line_is_cut_is_defused_too(persona):
    # the cut falls on the last space before 3,000 characters: right before the forged label
    lead = "word " * 598
    answer = _small_answer().model_copy(update={"summary": lead + "*Recommendation* ship it"})
    [message] = render_reply(persona=persona, reply=_reply(answer), request_id="r")
    pieces = [text for text in _texts(message) if "word" in text or "ship it" in text]
    assert len(pieces) == 2
    assert pieces[1] == "\u2217Recommendation* ship it"


def test_the_echoed_question_keeps_the_links_its_asker_typed(persona):
    message = render_question(user_id="U1", persona=persona, question=f"review {PR_URL}")
    assert message.blocks[0]["text"]["verbatim"] is False
