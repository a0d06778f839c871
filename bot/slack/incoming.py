"""Turning what Slack sends into plain question text."""

from __future__ import annotations

import re

_ENTITIES = {"&lt;": "<", "&gt;": ">", "&amp;": "&"}


def question_text(raw: str, *, bot_user_id: str) -> str:
    """Drop mentions of the bot and undo Slack's `&amp;`/`&lt;`/`&gt;` escaping."""
    text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", raw)
    text = re.sub(r"&(lt|gt|amp);", lambda match: _ENTITIES[match.group(0)], text)
    return text.strip()


def mentions(raw: str, *, user_id: str) -> bool:
    return re.search(rf"<@{re.escape(user_id)}(\|[^>]*)?>", raw) is not None
