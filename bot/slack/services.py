"""What the Slack listeners need, made once at start-up and handed to each of them."""

from __future__ import annotations

from dataclasses import dataclass

from bot.background import BackgroundTasks
from bot.context.gather import ContextGatherer
from bot.core.persona import PersonaRegistry
from bot.metrics import Metrics
from bot.slack.access import AccessPolicy
from bot.slack.admission import QuestionLimits
from bot.slack.directory import SlackDirectory
from bot.slack.responder import Responder
from bot.slack.thread import ThreadMessages
from bot.store import Store


@dataclass(frozen=True)
class SlackServices:
    store: Store
    gatherer: ContextGatherer
    personas: PersonaRegistry
    responder: Responder
    messages: ThreadMessages
    tasks: BackgroundTasks
    metrics: Metrics
    bot_user_id: str
    default_persona: str
    question_limits: QuestionLimits
    directory: SlackDirectory
    access: AccessPolicy
