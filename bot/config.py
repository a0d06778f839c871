"""The one configuration object: every variable from DESIGN.md, read once at start-up.

The rest of the code receives a `Settings` (or values taken from it), never the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

# Our own validation errors whose messages read on after the variable's name ("OPENAI_API_KEY
# contains …"), where pydantic's own read after a colon.
_NOT_A_HEADER_VALUE = "not_a_header_value"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "OFF")


# How the model is held to the Answer schema: see `bot.llm` and README's Configuration.
StructuredOutput = Literal["auto", "json_schema", "json_object", "prompt"]


class ConfigError(Exception):
    """A required variable is missing or a value is malformed; the message names the variable."""


class Settings(BaseSettings):
    """Environment variables (and an optional `.env`) with the conventional vendor names."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    oi_structured_output: StructuredOutput = Field(
        default="auto",
        description="json_schema, falling back to json_object, then the schema in the prompt.",
    )

    github_token: SecretStr | None = None
    github_api_url: str = "https://api.github.com"

    linear_api_key: SecretStr | None = None
    linear_api_url: str = "https://api.linear.app/graphql"

    database_url: str = "sqlite:///data/oi.sqlite3"
    port: int = Field(default=3000, ge=0, le=65535, description="0 picks a free port.")
    oi_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve /metrics and /readyz only on this port (0: a free one); unset: PORT.",
    )
    oi_metrics_team_ids: bool = Field(
        default=False, description="Label metrics with raw Slack team IDs, not pseudonyms."
    )

    log_level: str | None = None
    oi_slack_streaming: Literal["on", "off"] = Field(
        default="on",
        description="Stream the steps and the answer (chat.startStream); off: a placeholder.",
    )
    oi_show_usage: bool = Field(
        default=False, description="Token counts in each answer's footer (always in /metrics)."
    )
    log_format: Literal["json", "console", "auto"] = "auto"

    oi_personas_dir: str | None = Field(
        default=None, description="Extra persona folders, separated like PATH entries."
    )
    oi_default_persona: str = Field(
        default="backend-engineer", description="Who answers a mention that names no persona."
    )
    oi_shutdown_grace_seconds: float = Field(
        default=20.0, ge=0, description="How long SIGTERM waits for answers in flight."
    )
    oi_context_token_budget: int = Field(
        default=12000, ge=500, description="Tokens of GitHub and Linear context in one prompt."
    )
    oi_context_timeout_seconds: float = Field(
        default=15.0, gt=0, description="Per source (one repository, one ticket) read."
    )
    oi_github_allowed_orgs: str = Field(
        default="", description="Comma-separated owners whose repositories may be read; empty: any."
    )
    oi_linear_allowed_teams: str = Field(
        default="", description="Comma-separated Linear team keys that may be read; empty: any."
    )
    oi_admin_users: str = Field(
        default="", description="Comma-separated Slack user IDs who may link, besides admins."
    )
    oi_link_policy: Literal["admins", "anyone"] = Field(
        default="admins", description="Who may /oi link, unlink and default."
    )
    oi_external_users: Literal["public-only", "deny", "full"] = Field(
        default="public-only", description="What people from other organisations may read."
    )
    oi_lease_seconds: float = Field(
        default=60.0, gt=0, description="A request not renewed for this long is resumed elsewhere."
    )
    oi_max_attempts: int = Field(
        default=3,
        ge=1,
        description="Tries (crashes while working on the request included) before it fails.",
    )
    oi_request_deadline_seconds: float = Field(
        default=300.0, gt=0, description="A whole request, context and LLM included."
    )
    oi_max_concurrency: int = Field(default=20, ge=1, description="LLM calls at once.")
    oi_queue_limit: int = Field(default=100, ge=0, description="Questions waiting for an LLM slot.")
    oi_user_rate_per_minute: int = Field(default=10, ge=1, description="Questions per person.")
    oi_user_max_in_flight: int = Field(
        default=3, ge=1, description="Questions one person may have being answered at once."
    )
    oi_max_question_chars: int = Field(default=8000, ge=1, description="Longest question taken.")
    oi_daily_token_budget: int = Field(
        default=0, ge=0, description="Tokens a workspace may use per UTC day; 0: no budget."
    )
    oi_history_token_budget: int = Field(
        default=6000, ge=0, description="Tokens of a thread's earlier turns sent with a follow-up."
    )
    oi_llm_timeout_seconds: float = Field(default=60.0, gt=0, description="Per HTTP attempt.")
    oi_llm_max_retries: int = Field(default=2, ge=0, le=10, description="On 429, 5xx, timeouts.")
    oi_llm_deadline_seconds: float = Field(
        default=180.0, gt=0, description="Whole LLM call, retries and repair included."
    )

    @field_validator(
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "openai_api_key",
        "github_token",
        "linear_api_key",
    )
    @classmethod
    def _fits_in_a_header(cls, value: SecretStr | None) -> SecretStr | None:
        """Tokens travel in HTTP headers (the signing secret in an HMAC), where only printable
        ASCII goes: a placeholder pasted from a README (`sk-…`) fails here in one line, not as
        a traceback at the first request. Only the offending characters are shown, never the
        value."""
        if value is None:
            return None
        text = value.get_secret_value()
        foreign = "".join(dict.fromkeys(c for c in text if not c.isascii()))
        if foreign:
            raise PydanticCustomError(
                _NOT_A_HEADER_VALUE,
                "contains non-ASCII characters ({characters}): paste the value itself, "
                "not a placeholder",
                {"characters": " ".join(foreign)},
            )
        if any(not c.isprintable() for c in text):
            raise PydanticCustomError(
                _NOT_A_HEADER_VALUE,
                "contains a control character (a line break or a tab?): paste the value alone",
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("oi_metrics_port")
    @classmethod
    def _metrics_port_is_not_port(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and value == info.data.get("port"):
            raise ValueError("must differ from PORT (or be unset to serve metrics on PORT)")
        return value

    @property
    def extra_persona_dirs(self) -> list[Path]:
        if not self.oi_personas_dir:
            return []
        return [Path(part) for part in self.oi_personas_dir.split(os.pathsep) if part]

    @property
    def allowed_github_orgs(self) -> list[str]:
        return _comma_separated(self.oi_github_allowed_orgs)

    @property
    def allowed_linear_teams(self) -> list[str]:
        return _comma_separated(self.oi_linear_allowed_teams)

    @property
    def admin_users(self) -> list[str]:
        return _comma_separated(self.oi_admin_users)

    def secret_values(self) -> list[str]:
        """Every configured secret, so the log pipeline can scrub them wherever they appear."""
        secrets = (
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.openai_api_key,
            self.github_token,
            self.linear_api_key,
        )
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]


def _comma_separated(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def load_settings() -> Settings:
    """Read the settings, turning pydantic's report into one line per bad variable."""
    try:
        return Settings()
    except ValidationError as error:
        raise ConfigError("; ".join(map(_problem, error.errors(include_input=False)))) from None


def _problem(error: ErrorDetails) -> str:
    """`PORT: Input should be a valid integer…`, or `OPENAI_API_KEY contains …` for our own."""
    name = str(error["loc"][0]).upper()
    separator = " " if error["type"] == _NOT_A_HEADER_VALUE else ": "
    return f"{name}{separator}{error['msg']}"
