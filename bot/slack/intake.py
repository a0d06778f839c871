"""Taking a question: the one path every way of asking in Slack goes through.

A slash command, a mention, a DM and a thread reply each arrive differently, but once they are a
`NewRequest` they are taken the same way: its size is checked, it is claimed within its asker's
quota (once, however often Slack delivers it), and its answer is started. A limit added here
holds for every way in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.slack.admission import too_long, too_often
from bot.slack.services import SlackServices
from bot.store import NewRequest, RateLimited


async def take_question(
    services: SlackServices,
    new: NewRequest,
    *,
    refuse: Callable[[str], Awaitable[object]],
    response_url: str | None = None,
) -> bool:
    """Claim and start answering `new`, or `refuse` it with the reason; False when refused.

    True also when Slack delivered it again and its first delivery is being answered.
    """
    refused = too_long(new.question, services.question_limits)
    if refused:
        await refuse(refused)
        return False
    try:
        request = await services.store.claim_request(new, quota=services.question_limits.quota)
    except RateLimited as limited:
        await refuse(too_often(limited, services.question_limits))
        return False
    if request is not None:
        services.tasks.spawn(
            services.responder.answer(request, response_url=response_url),
            name=f"request-{request.id}",
        )
    return True
