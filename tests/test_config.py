"""The configuration object: DESIGN.md's variables, read once; secrets never printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings

DESIGN_VARIABLES = {
    "SLACK_BOT_TOKEN": "xoxb-1-secret",
    "SLACK_SIGNING_SECRET": "signing-secret",
    "SLACK_APP_TOKEN": "xapp-1-secret",
    "SLACK_API_URL": "http://127.0.0.1:1/api/",
    "OPENAI_API_KEY": "sk-secret",
    "OPENAI_BASE_URL": "http://127.0.0.1:2/v1",
    "OPENAI_MODEL": "some-model",
    "GITHUB_TOKEN": "ghp_secret",
    "GITHUB_API_URL": "http://127.0.0.1:3/api/v3",
    "LINEAR_API_KEY": "lin_api_secret",
    "LINEAR_API_URL": "http://127.0.0.1:4/graphql",
    "DATABASE_URL": "postgresql+asyncpg://127.0.0.1/test",
    "PORT": "8080",
    "LOG_LEVEL": "DEBUG",
    "LOG_FORMAT": "json",
}


def test_every_design_variable_is_read(monkeypatch):
    for name, value in DESIGN_VARIABLES.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    for name, value in DESIGN_VARIABLES.items():
        field = getattr(settings, name.lower())
        actual = field.get_secret_value() if hasattr(field, "get_secret_value") else field
        assert str(actual) == value, name


def test_secrets_are_hidden_when_printed(monkeypatch):
    for name, value in DESIGN_VARIABLES.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("xoxb-1-secret", "signing-secret", "sk-secret", "ghp_secret", "lin_api_secret"):
        assert secret not in shown
        assert secret in settings.secret_values()


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OPENAI_MODEL=from-dotenv\n")
    assert load_settings().openai_model == "from-dotenv"


def test_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("PORT", "not-a-port")
    with pytest.raises(ConfigError, match="PORT"):
        load_settings()


def test_extra_persona_dirs_split_like_path():
    settings = Settings(oi_personas_dir="/a:/b")
    assert [str(p) for p in settings.extra_persona_dirs] == ["/a", "/b"]


@pytest.mark.parametrize(
    "name",
    [
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "OPENAI_API_KEY",
        "GITHUB_TOKEN",
        "LINEAR_API_KEY",
    ],
)
def test_a_placeholder_pasted_as_a_secret_is_one_clear_line(name, monkeypatch):
    """`sk-…` copied from a README: its `…` cannot go in an HTTP header; said so, not shown."""
    monkeypatch.setenv(name, "abc-…-def")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        f"{name} contains non-ASCII characters (…): paste the value itself, not a placeholder"
    )


def test_a_line_break_in_a_secret_is_refused_without_showing_it(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_first\nghp_second")
    with pytest.raises(ConfigError, match="GITHUB_TOKEN contains a control character") as raised:
        load_settings()
    assert "ghp_" not in str(raised.value)


def test_an_unknown_log_level_names_the_levels(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match="LOG_LEVEL: .*DEBUG, INFO"):
        load_settings()
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"


ENV_EXAMPLE = Path(__file__).parents[1] / ".env.example"


def test_env_example_lists_exactly_the_variables_read():
    listed = re.findall(r"^# ([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    assert len(listed) == len(set(listed))
    assert set(listed) == {name.upper() for name in Settings.model_fields}


def test_env_example_copied_as_is_is_a_valid_configuration(tmp_path, monkeypatch):
    """Every line commented: a copy changes nothing until a value is set, and each value shown,
    uncommented, is valid (placeholders aside: they are the values to replace)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(ENV_EXAMPLE.read_text())
    assert load_settings() == Settings()
    uncommented = re.sub(r"^# ([A-Z][A-Z0-9_]*=)", r"\1", ENV_EXAMPLE.read_text(), flags=re.M)
    (tmp_path / ".env").write_text(uncommented)
    settings = load_settings()
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "<your key>"
