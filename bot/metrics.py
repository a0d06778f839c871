"""Prometheus metrics, one registry per process, served at `GET /metrics`."""

from __future__ import annotations

import hashlib
import hmac

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from bot.core.answer import Reply

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Requests by kind and outcome; ack, context, LLM and end-to-end latency; tokens; feedback.

    `team_key`: workspaces are labelled with a keyed hash of their Slack team ID, so whoever
    scrapes `/metrics` does not learn which companies use the bot; the same key on every replica
    gives a workspace the same label everywhere. `None` labels them with the raw team ID.
    """

    def __init__(self, *, team_key: bytes | None) -> None:
        self._team_key = team_key
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "oi_requests",
            "Questions handled, by kind and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.ack_seconds = self._histogram(
            "oi_ack_seconds", "Time from a Slack request's arrival to our HTTP answer."
        )
        self.context_seconds = self._histogram(
            "oi_context_seconds", "Time spent gathering context for a question."
        )
        self.llm_seconds = self._histogram(
            "oi_llm_seconds", "Time the LLM took to answer, retries included."
        )
        self.end_to_end_seconds = self._histogram(
            "oi_end_to_end_seconds", "Time from claiming a question to its answer in Slack."
        )
        self.tokens = Counter(
            "oi_llm_tokens", "LLM tokens used, by direction.", ["direction"], registry=self.registry
        )
        self.workspace_tokens = Counter(
            "oi_workspace_tokens",
            "LLM tokens used, by Slack workspace (the daily budget counts these).",
            ["team"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "oi_feedback", "Feedback buttons pressed, by vote.", ["vote"], registry=self.registry
        )
        self.rejected_requests = Counter(
            "oi_slack_rejected_requests",
            "Requests to /slack/events refused before parsing: signature, malformed, too_large.",
            ["reason"],
            registry=self.registry,
        )

    def _histogram(self, name: str, documentation: str) -> Histogram:
        return Histogram(name, documentation, buckets=_LATENCY_BUCKETS, registry=self.registry)

    def observe_reply(self, reply: Reply, *, team_id: str) -> None:
        self.llm_seconds.observe(reply.latency_seconds)
        self.workspace_tokens.labels(self.team_label(team_id)).inc(reply.usage.total_tokens)
        self.tokens.labels("prompt").inc(reply.usage.prompt_tokens)
        self.tokens.labels("completion").inc(reply.usage.completion_tokens)

    def team_label(self, team_id: str) -> str:
        """The `team` label of a workspace's metrics: a pseudonym unless raw IDs were asked for."""
        if self._team_key is None:
            return team_id
        return hmac.new(self._team_key, team_id.encode(), hashlib.sha256).hexdigest()[:16]

    def render(self) -> bytes:
        return generate_latest(self.registry)
